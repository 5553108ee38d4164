"""Connecting to (or starting) a Ray cluster for ``--engine ray``, and the actor pool's sizing.

Ray is optional (``pip install 'lrihar[ray]'``); it is imported here only, when a Ray engine
runs. Without ``--ray-address`` a local cluster is started for the run and stopped after it.

Example:
    >>> with ray_session(RayOptions(workers=2)) as pool:  # doctest: +SKIP
    ...     ds.map_batches(Actor, **pool.actor_args())
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrihar.errors import BadInputError

INSTALL_HINT = "pip install 'lrihar[ray]'"
RETRIES = 3
"""A lost worker's work is redone up to this many times (actor restarts, task retries); finite,
so a detector that crashes on every frame fails the run instead of looping for ever."""


@dataclass(frozen=True)
class RayOptions:
    """How ``--engine ray`` runs.

    Attributes:
        address: an existing cluster (``auto``, ``HOST:6379`` or ``ray://HOST:10001``); None
            starts a local one for this run.
        workers: actors in the pool (detector / encoder copies); None: one per GPU when actors
            get GPUs, else one per CPU.
        batch_size: frames (annotate) or crops (classify) per actor call; None: 16 frames, or
            the encoder's batch size.
        num_gpus: GPUs per actor (fractions share one); None: 1 where the cluster has GPUs.
        shard_frames: decoded frames per shard of a long video.
        num_cpus: CPUs of a local cluster (None: all of this machine's).
        object_store_memory: bytes of a local cluster's object store.
    """

    address: str | None = None
    workers: int | None = None
    batch_size: int | None = None
    num_gpus: float | None = None
    shard_frames: int = 1000
    num_cpus: int | None = None
    object_store_memory: int = 1 << 30

    def __post_init__(self) -> None:
        for name in ("workers", "batch_size", "shard_frames"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise BadInputError(f"--ray-{name.replace('_', '-')}: {value}; give 1 or more")
        if self.num_gpus is not None and self.num_gpus < 0:
            raise BadInputError(f"--ray-num-gpus: {self.num_gpus}; give 0 or more")


@dataclass(frozen=True)
class ActorPool:
    """The resources one engine run asks of Ray."""

    workers: int
    cpus_per_actor: float
    gpus_per_actor: float
    cpus_per_read: float

    def actor_args(self) -> dict[str, Any]:
        """``map_batches`` arguments of the detector / encoder stage."""
        import ray

        return dict(compute=ray.data.ActorPoolStrategy(size=self.workers), num_cpus=self.cpus_per_actor,
                    num_gpus=self.gpus_per_actor, max_restarts=RETRIES, max_task_retries=RETRIES)

    def read_args(self) -> dict[str, Any]:
        """``map_batches`` arguments of the decode (annotate) or crop (classify) stage."""
        return dict(num_cpus=self.cpus_per_read, max_retries=RETRIES)


def shard_dataset(n: int):
    """A Ray dataset of ``n`` rows ``{"shard": i}``, one block each (one read task per shard)."""
    import ray

    return ray.data.from_items([{"shard": i} for i in range(n)], override_num_blocks=n)


def import_ray():
    """``ray`` with Ray Data, usage statistics off.

    Raises:
        BadInputError: Ray is not installed.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no phoning home from plants
    try:
        import ray
        import ray.data  # the [data] extra must be there too
    except ImportError as exc:
        raise BadInputError(f"--engine ray: Ray Data is not installed ({exc}); {INSTALL_HINT}, "
                            "or run with --engine local") from None
    return ray


def worker_pythonpath() -> str:
    """This process's import path outside the Python installation (e.g. a source checkout run
    with ``PYTHONPATH=src``), for a local cluster's workers to import the same lrihar."""
    prefixes = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    keep = []
    for entry in sys.path:
        path = Path(entry or ".").resolve()
        if path.is_dir() and not any(path.is_relative_to(p) for p in prefixes):
            keep.append(str(path))
    return os.pathsep.join(dict.fromkeys(keep))


@contextmanager
def ray_session(options: RayOptions) -> Iterator[ActorPool]:
    """Connect to ``options.address`` (or reuse a running session, or start a local cluster, which
    is shut down afterwards) and size the actor pool from the cluster's resources."""
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        if options.address:
            try:
                ray.init(address=options.address, logging_level="WARNING")
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise BadInputError(f"--ray-address {options.address}: cannot connect ({exc}); start the "
                                    "head with `ray start --head` or leave --ray-address out to run "
                                    "on a local cluster") from None
        else:
            env = {"PYTHONPATH": worker_pythonpath(), "RAY_USAGE_STATS_ENABLED": "0"}
            ray.init(num_cpus=options.num_cpus or os.cpu_count(), include_dashboard=False,
                     object_store_memory=options.object_store_memory, logging_level="WARNING",
                     runtime_env={"env_vars": env})
        started = True
    # Ray 2.60 takes retries (max_restarts, max_task_retries, max_retries) only as remote args,
    # which it marks deprecated for 2.64; the extra pins 2.60.*.
    warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated")
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the command draws its own
    ctx.print_on_execution_start = False
    try:
        yield size_pool(options, ray.cluster_resources())
    finally:
        if started:  # a local cluster stops; a remote one keeps running, this driver leaves it
            ray.shutdown()


def size_pool(options: RayOptions, resources: dict[str, float]) -> ActorPool:
    """The actor pool for a cluster with ``resources``.

    Actors take at most the CPUs left after one decode task, so that reading never waits for
    CPUs the actors hold (with 2 CPUs and whole-CPU actors Ray Data deadlocks; shared/OFFLINE.md).
    """
    cpus = float(resources.get("CPU", 1))
    gpus_here = float(resources.get("GPU", 0))
    gpus = options.num_gpus if options.num_gpus is not None else (1.0 if gpus_here else 0.0)
    if gpus > gpus_here:
        raise BadInputError(f"--ray-num-gpus {gpus:g}: the cluster has {gpus_here:g} GPUs; give less, or 0 "
                            "to run on CPUs")
    workers = options.workers or (max(1, int(gpus_here // gpus)) if gpus else max(1, int(cpus)))
    read = 0.5 if cpus <= 4 else 1.0
    per_actor = max(0.25, min(1.0, (cpus - read) / workers))
    if gpus:
        per_actor = min(per_actor, 1.0)
    return ActorPool(workers, round(per_actor, 3), gpus, read)
