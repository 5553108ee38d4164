"""``lrihar run``: real-time recognition on the line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lrihar.cli.app import LineOpt, ProjectOpt, app, echo_err


@app.command("run")
def run_command(
    sources: Annotated[list[str] | None, typer.Argument(
        help="Video files, folders, rtsp:// or http:// URLs, camera indices (0, 1, ...). "
             "Default: the project file's run.sources (post: [sources]).")] = None,
    project: ProjectOpt = Path("."),
    post: Annotated[str | None, typer.Option(help="Post the given sources film (default: the first "
                                                  "post); with no sources, run only this post's.")] = None,
    line: LineOpt = None,
    detector: Annotated[str | None, typer.Option(
        help="auto (the exported YOLO if any, else detector.backend), a backend name, or an .onnx.")] = None,
    classifier: Annotated[str | None, typer.Option(
        help="auto (the exported student if any, else templates), templates, student, teacher, "
             "a run name or an .onnx.")] = None,
    jsonl: Annotated[Path | None, typer.Option(help="Append every event, cycle, alert, gap here.")] = None,
    csv: Annotated[Path | None, typer.Option(help="Write events.csv, cycles.csv, alerts.csv here.")] = None,
    video: Annotated[Path | None, typer.Option(help="Annotated MP4 (a folder: one per source).")] = None,
    mqtt: Annotated[bool, typer.Option(help="Publish to the broker of run.mqtt (default 127.0.0.1:1883).")]
    = False,
    serve: Annotated[bool, typer.Option(help="Serve the live page.")] = False,
    host: Annotated[str, typer.Option(help="Live page address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Live page port.")] = 8765,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    live: Annotated[bool | None, typer.Option(
        "--live/--not-live", help="Treat the sources as live (drop frames rather than fall behind) "
                                  "or as files (never drop). Default: streams and cameras are live.")] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Read sub-folders too.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the run summary as JSON.")] = None,
) -> None:
    """Recognise hand actions live: events, work cycles against the procedure, alerts.

    Ctrl-C or SIGTERM stops cleanly: open events are ended and every sink is flushed. Rerunning
    goes on with new ids; events a crash left open are closed at start-up.
    """
    from lrihar.project import Project
    from lrihar.runtime.session import RunOptions, run_line

    proj = Project.open(project)
    opts = RunOptions(sources=list(sources or []), post=post, detector=detector, classifier=classifier,
                      jsonl=jsonl, csv=csv, video=video, mqtt=mqtt, serve=serve, host=host, port=port,
                      duration_s=duration, live=live, recursive=recursive, line=line)

    def show(summary) -> None:
        t = summary.timings
        line = "  ".join(f"{k} {v['p50_ms']:.1f}/{v['p99_ms']:.1f}" for k, v in t.items())
        echo_err(f"{summary.frames} frames, {summary.fps:.1f} fps, events {summary.events}, "
                 f"cycles {summary.cycles}, alerts {summary.alerts}  [p50/p99 ms: {line}]")

    def started(pipeline, sinks) -> None:
        for sink in sinks:
            if getattr(sink, "url", None):
                echo_err(f"live page: {sink.url}")

    summary = run_line(proj, opts, on_stats=show, on_start=started)
    show(summary)
    if summary.interrupted:
        echo_err("stopped: every event, cycle and alert so far is stored")
    if json_out is not None:
        json_out.write_text(json.dumps(summary.as_dict(), indent=2))
