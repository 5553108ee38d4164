"""``lrihar annotate``: decode → sift → detect → store, resumable at frame granularity.

Frames already stored by the same detector (same settings) are skipped. Frames stored by
another detector, or the same one with other settings, are annotated again: the boxes a person
drew or fixed stay as they are and the rest are replaced (see
:meth:`~lrihar.store.frames.FramesMixin.write_frames`).

Example:
    >>> from lrihar.project import Project
    >>> from lrihar.annotate.pipeline import annotate
    >>> summary = annotate(Project.open("proj"), ["clips/post01.mp4"])  # doctest: +SKIP
    >>> summary.boxes  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lrihar.annotate.sift import Cascade, build_gate
from lrihar.config import ProjectConfig
from lrihar.errors import BadInputError
from lrihar.models.build import build_detector
from lrihar.models.detectors import Detector
from lrihar.progress import progress_bar
from lrihar.project import Project, recorded_run
from lrihar.sources import (
    ExpandedInputs,
    Frame,
    FrameSource,
    SourceError,
    expand_sources,
    open_source,
    prefetch,
)
from lrihar.store import FrameRecord, Store
from lrihar.store.frames import FrameWrite

# A source "gets boxes on almost none of its frames" when the detector saw at least
# FEW_BOXES_MIN_FRAMES of its frames and found a box on fewer than FEW_BOXES_SHARE of them: too
# few frames say nothing, and an operator's hands are on most frames of real footage, so a share
# this low means the detector does not see them (gloves, an odd view), not that nobody worked.
FEW_BOXES_MIN_FRAMES = 10
FEW_BOXES_SHARE = 0.10


@dataclass(frozen=True)
class SourceBoxes:
    """One source as stored after a run (frames of earlier runs included): ``frames`` stored,
    ``frames_gated`` of them dropped by the gate (never shown to the detector), ``frames_with_boxes``
    holding a box that is not rejected, ``boxes`` those boxes. A folder's images are one source."""

    uri: str
    kind: str
    frames: int
    frames_gated: int
    frames_with_boxes: int
    boxes: int

    @property
    def frames_detected(self) -> int:
        """Frames the detector saw (stored and not gated)."""
        return self.frames - self.frames_gated

    @property
    def few_boxes(self) -> bool:
        """Boxes on almost none of the frames the detector saw (see :data:`FEW_BOXES_SHARE`)."""
        seen = self.frames_detected
        return seen >= FEW_BOXES_MIN_FRAMES and self.frames_with_boxes < FEW_BOXES_SHARE * seen


def source_boxes(store: Store, sources: list[FrameSource]) -> list[SourceBoxes]:
    """Frames and boxes per source of a run, as the store now holds them."""
    out = []
    for source in dict.fromkeys(s.uri for s in sources):
        row = store.db.execute("SELECT id, kind FROM sources WHERE uri = ?", (source,)).fetchone()
        if row is None:
            continue
        frames, gated = store.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(status = 'gated'), 0) FROM frames WHERE source_id = ?",
            (row[0],)).fetchone()
        with_boxes, boxes = store.db.execute(
            "SELECT COUNT(DISTINCT frame_index), COUNT(*) FROM detections WHERE source_id = ?"
            " AND rejected = 0", (row[0],)).fetchone()
        out.append(SourceBoxes(source, row[1], frames, gated, with_boxes, boxes))
    return out


@dataclass
class AnnotateSummary:
    """What one ``annotate`` run did.

    ``boxes`` is the boxes it stored (on new and re-annotated frames). On re-annotated frames:
    ``boxes_kept`` a person's boxes kept as they were, ``boxes_replaced`` the earlier detector's
    boxes removed, ``boxes_left_out`` new boxes not stored because they lie on a person's box.
    """

    run_id: int
    sources: int = 0
    frames_read: int = 0
    frames_resumed: int = 0
    frames_gated: int = 0
    frames_empty: int = 0
    frames_action: int = 0
    frames_reannotated: int = 0
    boxes: int = 0
    boxes_kept: int = 0
    boxes_replaced: int = 0
    boxes_left_out: int = 0
    detector: str = ""
    per_source: list[SourceBoxes] = field(default_factory=list)
    errors: list[SourceError] = field(default_factory=list)
    failed_sources: list[str] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)
    folders_not_entered: list[str] = field(default_factory=list)
    gate: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def frames_sifted_out(self) -> int:
        """Frames dropped before reaching the stored action set (gated + no detection)."""
        return self.frames_gated + self.frames_empty

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["errors"] = [asdict(e) for e in self.errors]
        out["per_source"] = [{**asdict(p), "frames_detected": p.frames_detected, "few_boxes": p.few_boxes}
                             for p in self.per_source]
        out["frames_sifted_out"] = self.frames_sifted_out
        out["frames_per_second"] = round(self.frames_read / self.seconds, 2) if self.seconds else 0
        return out


# describe() keys that change how fast a detector runs, not which boxes it finds.
RUNTIME_SETTINGS = frozenset({"threads", "spin", "providers", "device", "batch_size"})


def detector_identity(described: Any) -> dict[str, Any] | None:
    """What decides a detector's boxes, from its ``describe()`` (as a run records it): every
    setting but the runtime ones; for a model file with a hash, the hash rather than the path,
    so a project moved to another folder is not annotated again. None if unknown."""
    if not isinstance(described, dict):
        return None
    out = {k: v for k, v in described.items() if k not in RUNTIME_SETTINGS}
    if out.get("sha256"):
        out.pop("model", None)
    return json.loads(json.dumps(out, default=str))  # as stored in the run's config


def same_detector(stored: Any, identity: dict[str, Any]) -> bool:
    """Whether the detector a run recorded (``describe()``) finds what ``identity`` finds: same
    backend and the same value for every setting both record (a setting an older lrihar did not
    record yet does not send every frame back to the detector after an upgrade)."""
    old = detector_identity(stored)
    if old is None or old.get("backend") != identity.get("backend"):
        return False
    return all(old[k] == identity[k] for k in old.keys() & identity.keys())


def open_sources(uris: list[str], cfg: ProjectConfig,
                 recursive: bool = False) -> tuple[list[FrameSource], ExpandedInputs]:
    """Expand folders into sources (:func:`~lrihar.sources.expand_sources`) and open every one up
    front, so that a mistyped path fails before anything runs."""
    if not uris:
        raise BadInputError(
            "no inputs: pass video files, folders of videos or images, or stream URLs, or list "
            "them under `sources:` in the project file"
        )
    expanded = expand_sources(uris, recursive)
    s = cfg.sampling
    return [open_source(u, s.stride, s.fps, s.max_image_pixels) for u in expanded.uris], expanded


def annotate(project: Project, uris: list[str] | None = None, *, config: ProjectConfig | None = None,
             detector: Detector | None = None, redo: bool = False, post: str | None = None,
             recursive: bool = False, reannotate: bool = True,
             show_progress: bool = False, engine: SourcesRunner | None = None) -> AnnotateSummary:
    """Detect hand actions in ``uris`` and store frames and boxes in the project.

    Frames already stored by this detector (same settings, see :func:`same_detector`) are
    skipped (resume). Frames stored by another detector are annotated again, keeping every box a
    person drew or fixed, unless ``reannotate`` is off. ``redo`` forgets the inputs' frames
    first. Each batch of frames is committed with its detections, so an interrupted run loses
    at most one batch of work. One annotate runs per project at a time (:meth:`Project.lock`).

    Args:
        project: the opened project.
        uris: inputs; defaults to the project file's ``sources``. A folder gives each of its
            videos as a source and its images as one more (see
            :func:`~lrihar.sources.expand_sources`); other files in it are skipped and listed.
        config: the resolved config (project file plus overrides); defaults to the project's.
        detector: a ready detector (else built from the config).
        redo: forget these sources' stored frames first and process them afresh (refused
            where a person drew or fixed boxes on them).
        post: the inspection post these inputs film (one of the project's posts, see
            :mod:`lrihar.lines`); its line follows from the project file.
        recursive: read the sub-folders of folders too (each folder of images one source).
        reannotate: annotate again the frames another detector stored (off: keep them as they
            are and only annotate frames not stored yet). Frames of live streams cannot be read
            again and are always kept.
        show_progress: draw a progress bar on stderr.
        engine: runs the per-source work of an :class:`AnnotateJob` (default
            :func:`annotate_locally`, in this process; see :mod:`lrihar.engines.ray_annotate`).
    """
    from lrihar.lines import project_layout

    cfg = config or project.config
    if post is not None:
        project_layout(cfg).post(post)  # an unknown post: the error names the project's posts
    sources, expanded = open_sources(list(uris or cfg.sources), cfg, recursive)
    with project.lock("annotate"):
        if not redo:
            check_image_lists(project.store, sources)
        return _annotate(project, cfg, sources, expanded, detector or build_detector(cfg, project.root),
                         redo, reannotate, post, show_progress, engine or annotate_locally)


def check_image_lists(store: Store, sources: list[FrameSource]) -> None:
    """Refuse to resume an image source whose files changed since they were stored.

    An image's frame index is its place in the folder's sorted file list, so a file added in
    the middle, removed or renamed would make resume skip or misname frames.

    Raises:
        BadInputError: a stored frame's file name is not the file now at its index.
    """
    for source in sources:
        if source.kind != "images":
            continue
        stored = store.db.execute("SELECT f.frame_index, f.name FROM frames f JOIN sources s ON"
                                  " s.id = f.source_id WHERE s.uri = ? ORDER BY f.frame_index",
                                  (source.uri,)).fetchall()
        if not stored:
            continue
        files = [str(p) for p in source.files()]
        for index, name in stored:
            now = files[index] if index < len(files) else "no file"
            if name != now:
                raise BadInputError(
                    f"{source.uri}: its images changed since they were annotated (frame {index} "
                    f"was {name}, now {now}); frames are numbered by sorted file name, so resuming "
                    "would mix them up. Restore the files, or pass --redo to annotate this input "
                    "afresh (nothing was changed)")


@dataclass
class AnnotateJob:
    """One annotate run's work, handed to an engine: annotate ``sources`` into ``store`` under
    ``run_id``, counting into ``summary`` and ``gate`` (whose stats the run records)."""

    store: Store
    run_id: int
    cfg: ProjectConfig
    sources: list[FrameSource]
    detector: Detector
    gate: Cascade
    summary: AnnotateSummary
    redo: bool
    identity: dict[str, Any] | None
    post: str | None
    bar: Any
    frames_root: Path


SourcesRunner = Callable[[AnnotateJob], None]
"""An annotate engine: does an :class:`AnnotateJob` (local: :func:`annotate_locally`)."""


def _annotate(project: Project, cfg: ProjectConfig, sources: list[FrameSource], expanded: ExpandedInputs,
              detector: Detector, redo: bool, reannotate: bool, post: str | None,
              show_progress: bool, engine: SourcesRunner) -> AnnotateSummary:
    """The work of :func:`annotate`, done under the project lock."""
    gate = build_gate(cfg.gate)
    store = project.store
    described = detector.describe()
    identity = detector_identity(described) if reannotate else None
    run_config = {"project": cfg.model_dump(mode="json", by_alias=True), "detector": described,
                  "inputs": [s.uri for s in sources], "reannotate": reannotate}
    summary = AnnotateSummary(run_id=0, sources=len(sources), detector=detector.name,
                              skipped_files=expanded.skipped, folders_not_entered=expanded.not_entered)

    def close(seconds: float) -> dict:
        summary.seconds = seconds
        summary.gate = gate.stats()
        return summary.as_dict()

    with recorded_run(store, "annotate", run_config, close) as run_id:
        summary.run_id = run_id
        counts = [src.expected_frames() for src in sources] if show_progress else [None]
        total = None if None in counts else sum(counts)
        with progress_bar("annotate", enabled=show_progress, total=total) as bar:
            engine(AnnotateJob(store, run_id, cfg, sources, detector, gate, summary, redo, identity,
                               post, bar, project.root / "frames"))
        summary.per_source = source_boxes(store, sources)
    return summary


def annotate_locally(job: AnnotateJob) -> None:
    """The local engine: every source in turn, in this process."""
    for source in job.sources:
        _annotate_source(source, job.store, job.run_id, job.detector, job.gate, job.summary, job.redo,
                         job.identity, job.post, job.bar, job.frames_root)


def keep_frame(folder: Path, frame: Frame) -> str:
    """Save a live frame that holds actions (a stream cannot be read again later); its path."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{frame.index:09d}.jpg"
    tmp = path.with_suffix(".tmp")
    Image.fromarray(frame.image).save(tmp, format="JPEG", quality=95)
    tmp.replace(path)  # never a half-written frame, even if killed here
    return str(path)


def _annotate_source(source: FrameSource, store: Store, run_id: int, detector: Detector, gate,
                     summary: AnnotateSummary, redo: bool, identity: dict[str, Any] | None,
                     post: str | None, bar, frames_root: Path) -> None:
    """Annotate one source; ``identity`` (None: keep stored frames) is the detector's, and stored
    frames whose detector differs from it are annotated again."""
    source_id, stored, again = plan_source(store, source, post, redo, identity)
    # Frames of live streams are kept on disk (only those with actions) so that crops, review
    # and export can read them again; files and folders are re-read from where they are.
    keep_dir = frames_root / f"source-{source_id}" if source.kind == "stream" else None
    detector.reset()
    gate.reset()
    pending: list[tuple[Frame, bool]] = []  # (frame, passed the gate) in decode order
    n_detect = 0

    def flush() -> None:
        nonlocal n_detect
        to_detect = [f.image for f, ok in pending if ok]
        results = iter(detector.detect_batch(to_detect)) if to_detect else iter(())
        batch = []
        for frame, ok in pending:
            dets = next(results) if ok else None
            status = frame_status(ok, dets)
            h, w = frame.image.shape[:2]
            name = frame.name
            if keep_dir is not None and status == "action":
                name = keep_frame(keep_dir, frame)
            batch.append((FrameRecord(frame.index, frame.timestamp, w, h, status, name), dets))
        written = store.write_frames(run_id, source_id, batch, detector.name, detector.thresholds,
                                     replace=bool(again))
        count_writes(summary, [frame.index for frame, _ in pending], written, again)
        pending.clear()
        n_detect = 0

    errors_before = len(source.errors)
    for frame in prefetch(source):
        summary.frames_read += 1
        if frame.index in stored and frame.index not in again:
            gate.observe(frame.image)
            summary.frames_resumed += 1
        else:
            ok = gate.passes(frame.image)
            pending.append((frame, ok))
            n_detect += ok
            if n_detect >= detector.batch_size or len(pending) >= 64:
                flush()
        bar.update(summary.frames_read, boxes=summary.boxes, sifted=summary.frames_sifted_out)
    if pending:
        flush()
    record_errors(store, run_id, summary, source.uri, source.errors[errors_before:], source.frames_seen)


def plan_source(store: Store, source: FrameSource, post: str | None, redo: bool,
                identity: dict[str, Any] | None) -> tuple[int, dict[int, Any], set[int]]:
    """(source id, stored frame index -> its detector, stored frames to annotate again) for one
    source; with ``redo`` its stored frames are forgotten first. ``identity`` None keeps every
    stored frame; a stream's frames cannot be read again, so they are always kept."""
    source_id = store.source_id(source.uri, source.kind, post)
    if redo:
        store.forget_source(source_id)
    stored = store.frame_detectors(source_id)
    again: set[int] = set()
    if identity is not None and source.kind != "stream":
        same: dict[int, bool] = {}  # by run: frames of one run share its recorded detector
        for index, described in stored.items():
            if id(described) not in same:
                same[id(described)] = same_detector(described, identity)
            if not same[id(described)]:
                again.add(index)
    return source_id, stored, again


def frame_status(passed: bool, dets: Any) -> str:
    """A frame's status before storing: ``gated`` (the gate dropped it), ``action`` or ``empty``."""
    return "gated" if not passed else ("action" if len(dets) else "empty")


def count_writes(summary: AnnotateSummary, indices: list[int], written: list[FrameWrite],
                 again: set[int]) -> None:
    """Add what :meth:`~lrihar.store.frames.FramesMixin.write_frames` did to ``summary``."""
    for index, result in zip(indices, written, strict=True):
        setattr(summary, f"frames_{result.status}", getattr(summary, f"frames_{result.status}") + 1)
        summary.frames_reannotated += index in again
        summary.boxes += result.added
        summary.boxes_kept += result.kept
        summary.boxes_replaced += result.replaced
        summary.boxes_left_out += result.left_out


def record_errors(store: Store, run_id: int, summary: AnnotateSummary, uri: str,
                  errors: list[SourceError], frames_seen: int) -> None:
    """Store a source's read errors; a source that could not be read at all counts as failed."""
    store.add_errors(run_id, errors)
    summary.errors.extend(errors)
    if any(e.index is None for e in errors) or (errors and frames_seen == 0):
        summary.failed_sources.append(uri)
