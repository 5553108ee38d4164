"""``--engine`` and the ``--ray-*`` options shared by ``annotate`` and ``classify``."""

from __future__ import annotations

from typing import Annotated

import typer

from lrihar.errors import BadInputError

ENGINES = ("local", "ray")

EngineOpt = Annotated[str, typer.Option(
    help="Where the detector / encoder runs: local (this process) or ray (a Ray cluster's actor "
         "pool; pip install 'lrihar[ray]'; see docs/scaling.md).")]
RayAddressOpt = Annotated[str | None, typer.Option(
    help="Ray cluster to join (auto, HOST:6379, ray://HOST:10001); default: a local cluster for this run.")]
RayWorkersOpt = Annotated[int | None, typer.Option(
    help="Actors in the pool (default: one per GPU, else one per CPU).")]
RayBatchOpt = Annotated[int | None, typer.Option(
    help="Frames (annotate, default 16) or crops (classify, default 32) per actor call.")]
RayGpusOpt = Annotated[float | None, typer.Option(
    help="GPUs per actor, fractions share one (default: 1 where the cluster has GPUs, else 0).")]
RayShardOpt = Annotated[int, typer.Option(help="Decoded frames per shard of a long video.")]


def ray_options(engine: str, address: str | None, workers: int | None, batch_size: int | None,
                num_gpus: float | None, shard_frames: int = 1000):
    """The :class:`~lrihar.engines.ray_cluster.RayOptions` for ``--engine ray``, None for local.

    Raises:
        BadInputError: an unknown engine, or ``--ray-*`` options given with the local engine.
    """
    if engine not in ENGINES:
        raise BadInputError(f"--engine: {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "local":
        given = [name for name, value in (("--ray-address", address), ("--ray-workers", workers),
                                          ("--ray-batch-size", batch_size), ("--ray-num-gpus", num_gpus))
                 if value is not None]
        if given:
            raise BadInputError(f"{given[0]}: only used with --engine ray")
        return None
    from lrihar.engines.ray_cluster import RayOptions

    return RayOptions(address=address, workers=workers, batch_size=batch_size, num_gpus=num_gpus,
                      shard_frames=shard_frames)
