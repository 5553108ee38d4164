"""``lrihar annotate``: decode → sift → detect → store, resumable at frame granularity.

Example:
    >>> from lrihar.project import Project
    >>> from lrihar.annotate.pipeline import annotate
    >>> summary = annotate(Project.open("proj"), ["clips/post01.mp4"])  # doctest: +SKIP
    >>> summary.boxes  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lrihar.annotate.sift import build_gate
from lrihar.config import ProjectConfig
from lrihar.errors import BadInputError
from lrihar.models.detectors import Detector, create_detector
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


@dataclass
class AnnotateSummary:
    """What one ``annotate`` run did."""

    run_id: int
    sources: int = 0
    frames_read: int = 0
    frames_resumed: int = 0
    frames_gated: int = 0
    frames_empty: int = 0
    frames_action: int = 0
    boxes: int = 0
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
        out["frames_sifted_out"] = self.frames_sifted_out
        out["frames_per_second"] = round(self.frames_read / self.seconds, 2) if self.seconds else 0
        return out


def build_detector(cfg: ProjectConfig) -> Detector:
    """The detector the project file's ``detector`` section describes."""
    d = cfg.detector
    kwargs: dict[str, Any] = dict(box_threshold=d.box_threshold, batch_size=d.batch_size)
    if d.backend != "mediapipe-hands":
        kwargs.update(model=d.model, prompt=d.prompt, text_threshold=d.text_threshold,
                      device=d.device)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}  # None = backend default
    return create_detector(d.backend, **kwargs | d.options)


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
             recursive: bool = False, show_progress: bool = False) -> AnnotateSummary:
    """Detect hand actions in ``uris`` and store frames and boxes in the project.

    Frames already in the store are skipped (resume) unless ``redo``. Each batch of frames is
    committed with its detections, so an interrupted run loses at most one batch of work. One
    annotate runs per project at a time (:meth:`Project.lock`).

    Args:
        project: the opened project.
        uris: inputs; defaults to the project file's ``sources``. A folder gives each of its
            videos as a source and its images as one more (see
            :func:`~lrihar.sources.expand_sources`); other files in it are skipped and listed.
        config: the resolved config (project file plus overrides); defaults to the project's.
        detector: a ready detector (else built from the config).
        redo: forget these sources' stored frames first and process them afresh.
        post: the inspection post these inputs film (one of the project's ``posts``).
        recursive: read the sub-folders of folders too (each folder of images one source).
        show_progress: draw a progress bar on stderr.
    """
    cfg = config or project.config
    if post is not None and post not in cfg.posts:
        raise BadInputError(f"--post: {post!r} is not one of the project's posts "
                            f"({', '.join(cfg.posts)}); add it to `posts` in the project file")
    sources, expanded = open_sources(list(uris or cfg.sources), cfg, recursive)
    with project.lock("annotate"):
        if not redo:
            check_image_lists(project.store, sources)
        return _annotate(project, cfg, sources, expanded, detector or build_detector(cfg), redo,
                         post, show_progress)


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


def _annotate(project: Project, cfg: ProjectConfig, sources: list[FrameSource], expanded: ExpandedInputs,
              detector: Detector, redo: bool, post: str | None, show_progress: bool) -> AnnotateSummary:
    """The work of :func:`annotate`, done under the project lock."""
    gate = build_gate(cfg.gate)
    store = project.store
    run_config = {"project": cfg.model_dump(mode="json", by_alias=True), "detector": detector.describe(),
                  "inputs": [s.uri for s in sources]}
    summary = AnnotateSummary(run_id=0, sources=len(sources), skipped_files=expanded.skipped,
                              folders_not_entered=expanded.not_entered)

    def close(seconds: float) -> dict:
        summary.seconds = seconds
        summary.gate = gate.stats()
        return summary.as_dict()

    with recorded_run(store, "annotate", run_config, close) as run_id:
        summary.run_id = run_id
        counts = [src.expected_frames() for src in sources] if show_progress else [None]
        total = None if None in counts else sum(counts)
        with progress_bar("annotate", enabled=show_progress, total=total) as bar:
            for source in sources:
                _annotate_source(source, store, run_id, detector, gate, summary, redo, post, bar,
                                 project.root / "frames")
    return summary


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
                     summary: AnnotateSummary, redo: bool, post: str | None, bar,
                     frames_root: Path) -> None:
    source_id = store.source_id(source.uri, source.kind, post)
    # Frames of live streams are kept on disk (only those with actions) so that crops, review
    # and export can read them again; files and folders are re-read from where they are.
    keep_dir = frames_root / f"source-{source_id}" if source.kind == "stream" else None
    if redo:
        store.forget_source(source_id)
    done = store.done_frames(source_id)
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
            status = "gated" if not ok else ("action" if len(dets) else "empty")
            h, w = frame.image.shape[:2]
            name = frame.name
            if keep_dir is not None and status == "action":
                name = keep_frame(keep_dir, frame)
            batch.append((FrameRecord(frame.index, frame.timestamp, w, h, status, name), dets))
            setattr(summary, f"frames_{status}", getattr(summary, f"frames_{status}") + 1)
            summary.boxes += 0 if dets is None else len(dets)
        store.write_frames(run_id, source_id, batch, detector.name, detector.thresholds)
        pending.clear()
        n_detect = 0

    errors_before = len(source.errors)
    for frame in prefetch(source):
        summary.frames_read += 1
        if frame.index in done:
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
    new_errors = source.errors[errors_before:]
    store.add_errors(run_id, new_errors)
    summary.errors.extend(new_errors)
    if any(e.index is None for e in new_errors) or (new_errors and source.frames_seen == 0):
        summary.failed_sources.append(source.uri)
