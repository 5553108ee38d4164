"""Assembling a ``lrihar run`` from a project and options: sources per post, detector, labeller,
sinks, the store record; signals; the run itself.

Example:
    >>> opts = RunOptions(["clips/post01.mp4"], post="post-01", jsonl=Path("ev.jsonl"))  # doctest: +SKIP
    >>> summary = run_line(Project.open("proj"), opts)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lrihar.artifacts import exported_detector, packed_line_model
from lrihar.errors import BadInputError
from lrihar.models.detectors.base import Detector
from lrihar.project import Project, recorded_run
from lrihar.runtime.ids import IdCounter
from lrihar.runtime.pipeline import LinePipeline, RunSummary
from lrihar.sources import expand_sources

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    """What ``lrihar run`` was asked (None: the project file's ``run`` section decides)."""

    sources: list[str] = field(default_factory=list)
    post: str | None = None
    line: str | None = None
    detector: str | None = None
    classifier: str | None = None
    jsonl: Path | None = None
    csv: Path | None = None
    video: Path | None = None
    mqtt: bool = False
    serve: bool = False
    host: str = "127.0.0.1"
    port: int = 8765
    duration_s: float | None = None
    live: bool | None = None
    recursive: bool = False


def sources_by_post(project: Project, opts: RunOptions) -> list[tuple[str, str]]:
    """(uri, post) per source: the given sources at ``opts.post`` (default: the first post of
    ``opts.line``, or of the project), or the cameras of the posts ``opts.line`` / ``opts.post``
    select (all by default): ``run.sources``, or ``lines[].posts[].cameras``."""
    from lrihar.lines import project_layout

    layout = project_layout(project.config)
    selected = layout.select(opts.line, opts.post)  # an unknown line or post: the valid ones named
    if opts.sources:
        post = (selected or list(layout.posts))[0]
        return [(uri, post) for uri in expand_sources(opts.sources, opts.recursive).uris]
    pairs = [(uri, post) for post, uris in layout.cameras(selected)
             for uri in expand_sources(uris, opts.recursive).uris]
    if not pairs:
        raise BadInputError("no sources: give them on the command line (lrihar run VIDEO_OR_URL... "
                            "-p PROJECT) or under `run.sources` in lrihar.yaml (post: [sources]; with "
                            "`lines:`, each post's `cameras`)")
    return pairs


def resolve_detector(project: Project, spec: str, line: str | None = None) -> Detector:
    """``auto``: the project's exported YOLO when there is one, else the line's packed one in
    ``--models-dir`` / ``LRIHAR_MODELS_DIR`` (``line``: default the project's only line), else
    ``detector.backend``; an ``.onnx`` path: that YOLO model; any other name: that registered
    backend."""
    from lrihar.config import with_overrides
    from lrihar.errors import ModelLoadError
    from lrihar.lines import project_layout
    from lrihar.models.build import build_detector
    from lrihar.models.detectors import create_detector

    cfg = project.config
    if spec.endswith(".onnx"):
        return create_detector("yolo", model=spec)
    if spec == "auto":
        try:
            return create_detector("yolo", model=str(exported_detector(project.root)))
        except ModelLoadError:
            line = line or project_layout(cfg).line_of(None)
            packed = packed_line_model(line, "detector")  # `lrihar models pack -p` at the plant
            if packed is not None:
                return create_detector("yolo", model=str(packed))
            return build_detector(cfg, project.root)
    return build_detector(with_overrides(cfg, "detector", backend=spec), project.root)


def _sinks(project: Project, opts: RunOptions, run_id: int) -> tuple[list, list]:
    """(item sinks, frame observers) the options ask for; the store sink always."""
    from lrihar.runtime.sinks.files import CsvSink, JsonlSink
    from lrihar.runtime.sinks.store_sink import StoreSink

    sinks: list = [StoreSink(project.store, run_id)]
    observers: list = []
    if opts.jsonl is not None:
        sinks.append(JsonlSink(opts.jsonl))
    if opts.csv is not None:
        sinks.append(CsvSink(opts.csv))
    if opts.mqtt:
        from lrihar.runtime.sinks.mqtt import MqttSink

        mqtt = project.config.run.mqtt
        if mqtt is None:
            from lrihar.config import MqttConfig

            mqtt = MqttConfig()
        sinks.append(MqttSink(mqtt))
    if opts.video is not None:
        from lrihar.runtime.sinks.video import AnnotatedVideo

        video = AnnotatedVideo(opts.video)
        sinks.append(video)
        observers.append(video)
    if opts.serve:
        from lrihar.runtime.live import LivePage

        page = LivePage(opts.host, opts.port)
        page.start()
        sinks.append(page)
        observers.append(page)
    return sinks, observers


@contextmanager
def _stop_on_signals(stop: Callable[[], None]):
    """SIGINT / SIGTERM ask the pipeline to stop (it then flushes every sink); the main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum, frame) -> None:
        stop()

    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def build_pipeline(project: Project, opts: RunOptions, run_id: int, ids: IdCounter,
                   sinks: list, observers: list) -> LinePipeline:
    """The pipeline for ``opts`` (captures not started)."""
    from lrihar.lines import project_layout
    from lrihar.runtime.capture import Capture
    from lrihar.runtime.labellers import resolve_labeller

    cfg = project.config
    run = cfg.run
    layout = project_layout(cfg)
    pairs = sources_by_post(project, opts)
    posts = list(dict.fromkeys(post for _, post in pairs))
    detector = resolve_detector(project, opts.detector or run.detector, layout.line_of(posts[0]))
    captures = [Capture.from_config(uri, post, ids, run, live=opts.live) for uri, post in pairs]
    spec = opts.classifier or run.classifier
    groups = layout.groups(posts)
    if layout.uniform or len(groups) == 1:
        view = None if layout.uniform else layout.config_for(posts[0])
        labeller = resolve_labeller(project, spec, view, layout.line_of(posts[0]), batch_size=run.batch_size)
    else:  # posts with their own classes / templates / λ: a labeller per group of posts alike
        labeller = {}
        for group in groups:
            built = resolve_labeller(project, spec, layout.config_for(group[0]), layout.line_of(group[0]),
                                     batch_size=run.batch_size)
            labeller |= dict.fromkeys(group, built)
    procedures = {post: p.procedure for post, p in layout.posts.items()
                  if p.procedure is not None and post in posts}
    return LinePipeline(captures, detector, labeller, run, ids, procedures, sinks, observers,
                        padding=cfg.classify.padding)


def run_line(project: Project, opts: RunOptions,
             on_stats: Callable[[RunSummary], None] | None = None,
             on_start: Callable[[LinePipeline, list], None] | None = None) -> RunSummary:
    """Run the line until the sources end, ``opts.duration_s`` passes, or SIGINT / SIGTERM.

    Events left open by an earlier crash are closed first; ids go on from the store's highest.
    """
    store = project.store
    crash_open = [e.id for state in ("new", "update") for e in store.events(state=state)]
    closed = store.close_open_events(time.time())
    summary = RunSummary()
    config = {"options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(opts).items()},
              "run": project.config.run.model_dump(mode="json"), "closed_at_start": closed}

    def close(seconds: float) -> dict:
        return summary.as_dict()

    with recorded_run(store, "run", config, close) as run_id:
        ids = IdCounter(store.last_runtime_ids(), reserve=store.reserve_runtime_ids)
        sinks, observers = _sinks(project, opts, run_id)
        try:
            pipeline = build_pipeline(project, opts, run_id, ids, sinks, observers)
        except BaseException:
            for sink in sinks:
                sink.close()
            raise
        _send_crash_ends(store, crash_open, sinks[1:])
        pipeline.on_stats = on_stats
        if on_start is not None:
            on_start(pipeline, sinks)
        with _stop_on_signals(pipeline.stop):
            result = pipeline.run(opts.duration_s)
        summary.__dict__.update(result.__dict__)
        _refuse_unreadable_files(summary)
    return summary


def _refuse_unreadable_files(summary: RunSummary) -> None:
    """A file source that gave no frame at all is bad input (exit 2, the run recorded as failed),
    once the other sources have run: a silent "0 frames, done" hides a broken or wrong file."""
    unreadable = {uri: s.get("last_error") for uri, s in (summary.sources or {}).items()
                  if not s.get("live") and not s.get("frames_decoded") and s.get("errors")}
    if unreadable:
        raise BadInputError("; ".join(f"{uri}: no frame could be read ({why})"
                                      for uri, why in unreadable.items())
                            + "; check the file (ffprobe FILE), or remove it from the sources")


def _send_crash_ends(store, ids: list[int], sinks: list) -> None:
    """The ``end`` of each event a crashed run left open (ended in the store at start) goes to the
    other sinks too, so a JSONL reader or an MQTT subscriber sees it end; a sink that fails here
    is logged and the run goes on."""
    if not ids:
        return
    ended = store.events(ids=ids)
    for sink in sinks:
        try:
            for event in ended:
                sink.emit(event)
        except Exception as exc:
            log.warning("%s: could not send the end of %d crash-open events (%s)",
                        getattr(sink, "name", type(sink).__name__), len(ended), exc)
