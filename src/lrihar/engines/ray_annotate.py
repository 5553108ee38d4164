"""``lrihar annotate --engine ray``: decode and gate in Ray tasks, detect in an actor pool, store here.

The work is cut into shards: one per image folder, one per video, and frame ranges of
``shard_frames`` decoded frames for long videos. A Ray Data read task decodes a shard and runs the
gates; the detector runs in a pool of actors (built once per actor, GPU actors where asked);
the driver (this process) writes each finished shard into the project store in one transaction,
in source and frame order, through the same code as the local engine, so both engines store the
same rows.

Gates: the motion gate's only state is the previous sampled frame, so a frame-range shard decodes
from the start of its video (frame numbers are decode counts, as in the local engine) and shows
the gate the sampled frame just before its range. ``keepalive`` counts frames since the last pass
across the whole video, so with it every video is one shard (detection is still spread over the
pool). A stateful detector (MediaPipe ``tracking: true``) is refused: its boxes would depend on
which frames one actor saw before.

Idempotent: a shard's frames already in the store are not written again (resume works as in the
local engine, and a shard delivered twice counts once). A lost worker's shard is redone: read
tasks are retried, dead actors restarted and their batches retried (:data:`~.ray_cluster.RETRIES`).

Example:
    >>> summary = annotate_with_ray(Project.open("proj"), ["clips/"], RayOptions(workers=2))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np

from lrihar.annotate.pipeline import (
    AnnotateJob,
    AnnotateSummary,
    annotate,
    count_writes,
    frame_status,
    plan_source,
    record_errors,
)
from lrihar.annotate.sift import Cascade, build_gate
from lrihar.config import GateConfig, ProjectConfig, SamplingConfig, with_overrides
from lrihar.engines.ray_cluster import RayOptions, import_ray, ray_session, shard_dataset
from lrihar.errors import BadInputError
from lrihar.models.build import build_detector
from lrihar.models.detectors import Detector
from lrihar.project import Project
from lrihar.sources import SourceError, open_source
from lrihar.store import FrameRecord

DetectorFactory = Callable[[], Detector]
"""Builds the detector inside an actor; must pickle by reference (a module-level class or a
``functools.partial`` of one), as Ray ships it to every worker."""

DEFAULT_BATCH = 16  # frames per actor call: amortises Ray's per-call cost; the detector sub-batches


@dataclass(frozen=True)
class Shard:
    """Frames ``start`` (inclusive) to ``end`` (exclusive, None = to the end) of one source."""

    source: int  # position in the job's sources
    uri: str
    start: int = 0
    end: int | None = None
    skip: frozenset[int] = frozenset()  # frames already stored: decoded for the gate only
    first: bool = True  # reports the source's whole-file errors


@dataclass
class _SourceState:
    source_id: int
    again: set[int]
    shards_left: int
    errors: list[SourceError] = field(default_factory=list)
    frames_seen: int = 0


def annotate_with_ray(project: Project, uris: list[str] | None, options: RayOptions,
                      detector_factory: DetectorFactory | None = None, **kwargs: Any) -> AnnotateSummary:
    """:func:`~lrihar.annotate.pipeline.annotate` with the detector on a Ray actor pool.

    Args:
        project: the opened project.
        uris: inputs, as for ``annotate``.
        options: cluster and pool settings.
        detector_factory: builds the detector in each actor (default: from the project file, as
            the local engine does); the driver builds one too, to record what it is.
        **kwargs: ``annotate``'s other arguments (config, redo, post, recursive, reannotate,
            show_progress, detector).
    """
    import_ray()  # a clear message before anything runs when Ray is missing
    cfg = kwargs.pop("config", None) or project.config
    if detector_factory is not None and "detector" not in kwargs:
        kwargs["detector"] = detector_factory()
    return annotate(project, uris, config=cfg, engine=RayAnnotateEngine(options, detector_factory),
                    **kwargs)


class RayAnnotateEngine:
    """The :data:`~lrihar.annotate.pipeline.SourcesRunner` of ``--engine ray``."""

    def __init__(self, options: RayOptions, detector_factory: DetectorFactory | None = None) -> None:
        self.options = options
        self.detector_factory = detector_factory

    def __call__(self, job: AnnotateJob) -> None:
        if job.detector.describe().get("tracking"):
            raise BadInputError("detector.options.tracking: boxes in tracking mode depend on the frames "
                                "seen before, which a pool of workers splits up; set tracking: false "
                                "or run with --engine local")
        streams = [s.uri for s in job.sources if s.kind == "stream"]
        if streams:
            raise BadInputError(f"{streams[0]}: a live stream cannot be split across Ray workers; "
                                "annotate it with --engine local (or watch it with `lrihar run`)")
        shards, states = plan_shards(job, self.options.shard_frames)
        if not shards:
            return
        with ray_session(self.options) as pool:
            factory = self.detector_factory or partial(build_detector, _actor_config(job.cfg, pool),
                                                       job.frames_root.parent)
            ds = shard_dataset(len(shards)).map_batches(read_shards, batch_size=1, fn_kwargs=dict(
                shards=shards, sampling=job.cfg.sampling, gate=job.cfg.gate), **pool.read_args())
            ds = ds.map_batches(DetectActor, fn_constructor_args=(factory,),
                                batch_size=self.options.batch_size or DEFAULT_BATCH, **pool.actor_args())
            _write_in_order(job, shards, states, ds.iter_rows())


def _actor_config(cfg: ProjectConfig, pool) -> ProjectConfig:
    """The project config for actors: on GPU actors a ``cpu`` detector runs on its GPU."""
    if pool.gpus_per_actor and cfg.detector.device == "cpu":
        return with_overrides(cfg, "detector", device="cuda")
    return cfg


def plan_shards(job: AnnotateJob, shard_frames: int) -> tuple[list[Shard], list[_SourceState]]:
    """Shards of every source in order, and per source what the driver needs to write them
    (stored frames to annotate again; ``redo`` forgets stored frames here, as locally)."""
    shards: list[Shard] = []
    states = []
    whole = job.cfg.gate.keepalive > 0  # keepalive counts across the whole video
    for pos, source in enumerate(job.sources):
        source_id, stored, again = plan_source(job.store, source, job.post, job.redo, job.identity)
        skip = set(stored) - again
        total = source._frame_count() if source.kind == "video" and not whole else None
        cuts = list(range(0, total, shard_frames)) if total and total > shard_frames else [0]
        for k, start in enumerate(cuts):
            end = cuts[k + 1] if k + 1 < len(cuts) else None  # the last one reads to the real end
            mine = frozenset(i for i in skip if i >= start and (end is None or i < end))
            shards.append(Shard(pos, source.uri, start, end, mine, k == 0))
        states.append(_SourceState(source_id, again, len(cuts)))
    return shards, states


def read_shards(batch: dict[str, np.ndarray], *, shards: list[Shard], sampling: SamplingConfig,
                gate: GateConfig) -> Iterator[dict[str, np.ndarray]]:
    """Ray Data read stage: decode each shard of ``batch`` and gate its frames (one row per frame
    not stored yet, then one ``end`` row with the shard's counts, errors and gate statistics)."""
    for shard_id in batch["shard"]:
        yield from _read_shard(int(shard_id), shards[int(shard_id)], sampling, gate)


def _read_shard(shard_id: int, shard: Shard, sampling: SamplingConfig, gate_cfg: GateConfig,
                rows_per_batch: int = 8) -> Iterator[dict[str, np.ndarray]]:
    source = open_source(shard.uri, sampling.stride, sampling.fps, sampling.max_image_pixels)
    gate = build_gate(gate_cfg)
    rows: list[dict[str, Any]] = []
    read = resumed = emitted = 0
    before = None  # the last sampled frame before the range: the motion gate's state
    for frame in source:
        if frame.index < shard.start:
            before = frame
            continue
        if shard.end is not None and frame.index >= shard.end:
            break
        if before is not None:
            gate.observe(before.image)
            before = None
        read += 1
        if frame.index in shard.skip:
            gate.observe(frame.image)
            resumed += 1
            continue
        ok = gate.passes(frame.image)
        h, w = frame.image.shape[:2]
        rows.append(dict(shard=shard_id, kind="frame", index=frame.index, timestamp=frame.timestamp,
                         width=w, height=h, name=frame.name or "", passed=ok,
                         image=frame.image.tobytes() if ok else b"", info=""))
        emitted += 1
        if len(rows) >= rows_per_batch:
            yield _columns(rows)
            rows = []
    mine = [e for e in source.errors if (e.index is None and shard.first) or (
        e.index is not None and e.index >= shard.start and (shard.end is None or e.index < shard.end))]
    info = dict(rows=emitted, read=read, resumed=resumed, frames_seen=source.frames_seen,
                errors=[asdict(e) for e in mine],
                gate=[[g.seen, g.passed] for g in (gate, *gate.gates)])
    rows.append(dict(shard=shard_id, kind="end", index=-1, timestamp=0.0, width=0, height=0, name="",
                     passed=False, image=b"", info=json.dumps(info)))
    yield _columns(rows)


def _columns(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Rows as a Ray Data batch (bytes and text as object columns)."""
    return {key: np.array([r[key] for r in rows], dtype=object if key in ("image", "name", "kind", "info")
                          else None) for key in rows[0]}


class DetectActor:
    """Ray Data actor stage: runs the detector on the frames that passed the gate; the frames leave
    without their pixels and with their ``supervision.Detections`` pickled."""

    def __init__(self, factory: DetectorFactory) -> None:
        self.detector = factory()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        todo = [i for i, (kind, ok) in enumerate(zip(batch["kind"], batch["passed"], strict=True))
                if kind == "frame" and ok]
        images = [np.frombuffer(batch["image"][i], np.uint8).reshape(int(batch["height"][i]),
                                                                     int(batch["width"][i]), 3)
                  for i in todo]
        step = max(1, self.detector.batch_size)  # as the local engine calls it
        found = [d for k in range(0, len(images), step)
                 for d in self.detector.detect_batch(images[k:k + step])]
        dets = np.full(len(batch["kind"]), b"", dtype=object)
        for i, d in zip(todo, found, strict=True):
            dets[i] = pickle.dumps(d, protocol=pickle.HIGHEST_PROTOCOL)
        return {k: v for k, v in batch.items() if k != "image"} | {"dets": dets}


def _write_in_order(job: AnnotateJob, shards: list[Shard], states: list[_SourceState],
                    rows: Iterator[dict[str, Any]]) -> None:
    """Write shards as they complete, in shard order (so detection ids come out as the local
    engine's), each in one transaction; merge counts, errors and gate statistics."""
    frames: dict[int, dict[int, dict]] = {}  # shard -> frame index -> row (a repeat counts once)
    ends: dict[int, dict] = {}
    next_shard = 0
    for row in rows:
        shard_id = int(row["shard"])
        if row["kind"] == "end":
            ends[shard_id] = json.loads(row["info"])
        else:
            frames.setdefault(shard_id, {})[int(row["index"])] = row
        while next_shard in ends and len(frames.get(next_shard, {})) == ends[next_shard]["rows"]:
            _write_shard(job, shards[next_shard], states[shards[next_shard].source],
                         frames.pop(next_shard, {}), ends.pop(next_shard))
            next_shard += 1
    if next_shard != len(shards):
        raise RuntimeError(f"Ray returned {next_shard} of {len(shards)} shards complete")


def _write_shard(job: AnnotateJob, shard: Shard, state: _SourceState, rows: dict[int, dict],
                 info: dict) -> None:
    store, summary = job.store, job.summary
    done = store.done_frames(state.source_id)  # now, not when planned: written twice counts once
    batch, indices = [], []
    for index in sorted(rows):
        if index in done and index not in state.again:
            continue
        row = rows[index]
        dets = pickle.loads(row["dets"]) if row["passed"] else None
        record = FrameRecord(index, float(row["timestamp"]), int(row["width"]), int(row["height"]),
                             frame_status(bool(row["passed"]), dets), row["name"] or None)
        batch.append((record, dets))
        indices.append(index)
    if batch:
        written = store.write_frames(job.run_id, state.source_id, batch, job.detector.name,
                                     job.detector.thresholds, replace=bool(state.again))
        count_writes(summary, indices, written, state.again)
        state.again.difference_update(indices)
    summary.frames_read += info["read"]
    summary.frames_resumed += info["resumed"]
    _merge_gate_stats(job.gate, info["gate"])
    state.errors += [SourceError(**e) for e in info["errors"]]
    state.frames_seen = max(state.frames_seen, info["frames_seen"])
    state.shards_left -= 1
    if state.shards_left == 0:
        record_errors(store, job.run_id, summary, shard.uri, state.errors, state.frames_seen)
    job.bar.update(summary.frames_read, boxes=summary.boxes, sifted=summary.frames_sifted_out)


def _merge_gate_stats(gate: Cascade, stats: list[list[int]]) -> None:
    """Add a shard's frames seen and passed (the cascade's, then each gate's) to the run's gate."""
    for g, (seen, passed) in zip((gate, *gate.gates), stats, strict=True):
        g.seen += seen
        g.passed += passed
