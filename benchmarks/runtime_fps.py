"""End-to-end throughput, latency and memory of ``lrihar run`` against a naive sequential loop, on
a 1280×720, 30 fps clip with two hands per frame (issue 12, "Benchmark").

The clip is built from real footage: the hands-dev kneading clip (320×180, 10 fps, 50 frames, two
hands) upscaled to 1280×720, each frame shown three times (30 fps), looped to ``--seconds``, and
written to a temporary folder (never into the repository). One run, same machine and load, times:

- **deployed** (arm A): ``LinePipeline`` (decode thread, drop-oldest queue, ``yolo`` detector on an
  ONNX model at 320 px, crops, student ONNX through ``OnnxLabeller``, ByteTrack, smoothing, events
  to a JSONL sink), once per detector: the trained MobileNetV2-YOLO (``--detector-onnx``, real
  hands, so the classifier sees real crops) and a yolo11n built from its model yaml with random
  weights (timing only: its boxes are noise, so it keeps the 2 best boxes per frame at any score).
- **naive loop** (baseline): PyAV decode, ultralytics ``YOLO.predict`` at the same imgsz and
  thresholds, then the same student in PyTorch on each crop, one call per crop, no threads.
- **offline defaults** (arm B): ``mediapipe-hands`` + the template matcher (encoder ``auto``; 5
  templates per class cut from gloves_roboflow), through the same pipeline.

Each pipeline arm runs on the file (``live=False``: every frame, FPS = frames / wall) and on a
live source: ffmpeg serves the clip in real time (``-re``, 30 fps, looped) as MPEG-TS over local
HTTP, as a network camera would; the capture drops the oldest frame when inference falls behind,
so the sustained FPS is frames processed per second of wall time, with the drops counted.
Latency is the pipeline's own: from the frame queued by the capture to its events emitted (queue
wait included). Decode is timed in a separate decode-only pass (the pipeline times detect,
classify and track; decoding runs on the capture thread). The student is a MobileNetV2 at 128 px
with random weights (latency does not depend on the weights). Memory: the deployed stack (trained
detector when given) runs in a child process on the looping live source for ``--soak-minutes``;
RSS after the first minute (models loaded, queues full) vs at the end.

Targets on 2 CPU cores: ≥ 25 FPS sustained, p99 ≤ 150 ms, ≥ 2× the naive loop, RSS growth ≤ 5 %.

Usage: python benchmarks/runtime_fps.py [--seconds 20] [--live-seconds 20] [--soak-minutes 10]
           [--detector-onnx out/.../detector-320.onnx]
       -> benchmarks/results/runtime_fps.json (and a Markdown table on stdout)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import HANDS_DEV, REPO, write_result

THREADS = 2
FPS = 30
SIZE = (1280, 720)
IMGSZ = 320
CLIP = HANDS_DEV / "videos" / "mixkit_42467_baker_kneading_dough.mp4"
TRAINED = REPO.parent / "main/out/boot/arms/gt-100/run/export/detector-320.onnx"
CLASSES = [f"c{i}" for i in range(8)]
FFMPEG = shutil.which("ffmpeg")
FILE = "file (every frame)"
LIVE = "live 30 fps (drop-oldest)"


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values, q: float) -> float | None:
    return round(float(np.percentile(np.asarray(values) * 1000, q)), 2) if len(values) else None


# -- the clip --------------------------------------------------------------------------------------

def build_clip(folder: Path, seconds: float) -> Path:
    """The kneading clip at 1280×720, 30 fps, looped to ``seconds``."""
    import cv2

    from lrihar.sources import open_source
    from lrihar.videowriter import write_video

    small = [f.image for f in open_source(str(CLIP))]
    big = [cv2.resize(im, SIZE, interpolation=cv2.INTER_LINEAR) for im in small]
    repeat = max(round(FPS / 10), 1)
    n = int(seconds * FPS)
    return write_video(folder / "line-720p30.mp4", (big[(k // repeat) % len(big)] for k in range(n)), fps=FPS)


def decode_pass(clip: Path) -> dict:
    """Per-frame decode time (PyAV, threaded, to RGB), as the capture thread decodes."""
    import av

    times = []
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        t = time.perf_counter()
        for frame in container.decode(stream):
            frame.to_ndarray(format="rgb24")
            now = time.perf_counter()
            times.append(now - t)
            t = now
    return {"frames": len(times), "p50_ms": pct(times, 50), "p99_ms": pct(times, 99)}


class FfmpegCamera:
    """ffmpeg serving the clip in real time, looped, as MPEG-TS over local HTTP (one client)."""

    def __init__(self, clip: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/cam.ts"
        self.process = subprocess.Popen(
            [FFMPEG, "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip), "-c", "copy",
             "-f", "mpegts", "-flush_packets", "1", "-listen", "1", self.url], stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self._listening():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError(f"ffmpeg did not listen on port {self.port}")
            time.sleep(0.05)

    def _listening(self) -> bool:
        # Connecting to test would use up ffmpeg's one client: read the kernel's socket table.
        rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
        return any(r.split()[1].endswith(f":{self.port:04X}") and r.split()[3] == "0A" for r in rows)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def __enter__(self) -> FfmpegCamera:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- models ----------------------------------------------------------------------------------------

def export_models(folder: Path) -> dict:
    """yolo11n (random weights, yaml) at 320 px as ONNX and .pt; the student at 128 px as ONNX and
    PyTorch module."""
    import torch

    from classifier_latency import _export
    from detector_latency import one_class_yaml
    from lrihar.train.classifier_models import build_classifier
    from lrihar.train.offline import ultralytics_offline

    here = Path.cwd()
    os.chdir(folder)  # ultralytics writes a yaml-built model's export into the working folder
    try:
        with ultralytics_offline(folder / "state") as ul:
            model = ul.YOLO(str(one_class_yaml("yolo11n", folder)))
            onnx = Path(model.export(format="onnx", imgsz=IMGSZ, opset=18, simplify=True, batch=1,
                                     device="cpu", verbose=False))
            onnx = onnx.replace(folder / f"yolo11n-{IMGSZ}.onnx")
            pt = folder / "yolo11n.pt"
            model.save(str(pt))
    finally:
        os.chdir(here)
    torch.manual_seed(0)
    student, _ = build_classifier("mobilenet-v2", CLASSES, 128, pretrained=False)
    student.eval()
    return {"yolo11n_onnx": onnx, "yolo11n_pt": pt, "student": student,
            "student_onnx": _export(student, folder, False)}


class FirstCall:
    """Wraps a detector to note when it first gets a frame (a live source takes a moment to open)."""

    def __init__(self, inner) -> None:
        self.inner, self.first = inner, None

    def detect_batch(self, images):
        if self.first is None:
            self.first = time.perf_counter()
        return self.inner.detect_batch(images)


def calibrate_threshold(detector, clip: Path, frames: int = 20) -> float:
    """For a random-init YOLO: the median over frames of the third-best score after NMS, so that
    about two boxes per frame pass (a realistic crop count) and NMS sees a handful, not thousands."""
    from lrihar.sources import open_source

    third = []
    for k, frame in enumerate(open_source(str(clip))):
        if k >= frames:
            break
        dets = detector.detect_batch([frame.image])[0]
        third.append(float(dets.confidence[2]) if len(dets) > 2 else 0.0)
    return float(np.median(third))


class CountingLabeller:
    """Wraps a crop labeller to count the crops it sees."""

    def __init__(self, inner) -> None:
        self.inner, self.crops = inner, 0
        self.classes, self.name = inner.classes, inner.name

    def label(self, crops):
        self.crops += len(crops)
        return self.inner.label(crops)


# -- arms ------------------------------------------------------------------------------------------

def run_pipeline(source: str, live: bool, detector, labeller, folder: Path, duration_s: float | None,
                 on_stats=None, stats_every_s: float = 30.0, queue_size: int | None = None) -> dict:
    """One pass of ``LinePipeline`` over ``source``; the row for it."""
    from lrihar.config import RunConfig
    from lrihar.runtime.capture import Capture
    from lrihar.runtime.ids import IdCounter
    from lrihar.runtime.pipeline import LinePipeline
    from lrihar.runtime.sinks.files import JsonlSink

    ids = IdCounter()
    # queue_size given: that many frames held for this source, live or not; else the defaults
    # (run.live_queue_size for live sources, run.queue_size for files).
    cfg = RunConfig(stats_every_s=stats_every_s,
                    **({"queue_size": queue_size, "live_queue_size": queue_size} if queue_size else {}))
    counting, timed = CountingLabeller(labeller), FirstCall(detector)
    sink = JsonlSink(folder / f"events-{time.monotonic_ns()}.jsonl")
    capture = Capture.from_config(source, "post-1", ids, cfg, live=live)
    pipeline = LinePipeline([capture], timed, counting, cfg, ids, sinks=[sink], frame_rate=FPS)
    pipeline.on_stats = on_stats
    started = time.perf_counter()
    s = pipeline.run(duration_s)
    first = (timed.first or started) - started
    src = next(iter(s.sources.values()))
    t = s.timings
    return {"frames": s.frames, "seconds": round(s.seconds, 2), "fps": round(s.fps, 2),
            "queue_size": cfg.live_queue_size if live else cfg.queue_size, "first_frame_s": round(first, 2),
            "fps_after_first_frame": round((s.frames - 1) / max(s.seconds - first, 1e-9), 2),
            "frames_decoded": src["frames_decoded"], "frames_dropped": src["frames_dropped"],
            "crops_per_frame": round(counting.crops / max(s.frames, 1), 2), "events": s.events,
            "latency_p50_ms": t.get("latency", {}).get("p50_ms"),
            "latency_p99_ms": t.get("latency", {}).get("p99_ms"),
            "stage_p50_ms": {k: t[k]["p50_ms"] for k in ("detect", "classify", "track") if k in t}}


def naive_loop(clip: Path, weights: Path, student, conf: float, max_det: int) -> dict:
    """Decode, ultralytics predict, PyTorch student per crop: one frame at a time, one thread."""
    import av
    import torch

    from lrihar.models.classifiers.preprocess import to_pixels
    from lrihar.train.offline import ultralytics_offline

    spec = student.spec
    with ultralytics_offline(clip.parent / "state") as ul:
        yolo = ul.YOLO(str(weights))
        warm = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
        yolo.predict(warm, imgsz=IMGSZ, conf=conf, max_det=max_det, device="cpu", verbose=False)
        stages: dict[str, list[float]] = {"decode": [], "detect": [], "classify": []}
        latency, crops, frames = [], 0, 0
        started = time.perf_counter()
        with av.open(str(clip)) as container:
            it = container.decode(container.streams.video[0])
            while True:
                t0 = time.perf_counter()
                frame = next(it, None)
                if frame is None:
                    break
                image = frame.to_ndarray(format="rgb24")
                t1 = time.perf_counter()
                result = yolo.predict(image[..., ::-1], imgsz=IMGSZ, conf=conf, max_det=max_det,
                                      device="cpu", verbose=False)[0]
                t2 = time.perf_counter()
                for x1, y1, x2, y2 in result.boxes.xyxy.numpy().astype(int):
                    crop = image[max(y1, 0):max(y2, y1 + 1), max(x1, 0):max(x2, x1 + 1)]
                    with torch.inference_mode():
                        student(torch.from_numpy(to_pixels([crop], spec.input_size, spec.mean, spec.std)))
                    crops += 1
                t3 = time.perf_counter()
                for k, (a, b) in zip(stages, ((t0, t1), (t1, t2), (t2, t3)), strict=True):
                    stages[k].append(b - a)
                latency.append(t3 - t0)
                frames += 1
        wall = time.perf_counter() - started
    return {"frames": frames, "seconds": round(wall, 2), "fps": round(frames / wall, 2), "queue_size": None,
            "frames_decoded": frames, "frames_dropped": 0,
            "crops_per_frame": round(crops / max(frames, 1), 2),
            "latency_p50_ms": pct(latency, 50), "latency_p99_ms": pct(latency, 99),
            "stage_p50_ms": {k: pct(v, 50) for k, v in stages.items()}}


def offline_project(folder: Path):
    """A project with the offline defaults and 5 gloves_roboflow templates per class."""
    from PIL import Image

    from lrihar.project import Project

    src = HANDS_DEV / "gloves_roboflow"
    gt = json.loads((src / "gt.json").read_text())["images"]
    root = folder / "offline-project"
    classes = ("gloved_hand", "bare_hand")
    counts = dict.fromkeys(classes, 0)
    for k, im in enumerate(x for x in gt if x["hands"]):
        image = Image.open(src / im["file"]).convert("RGB")
        for box, cls in zip(im["hands"], im["hand_classes"], strict=True):
            if counts[cls] < 5:
                (root / "templates" / cls).mkdir(parents=True, exist_ok=True)
                image.crop([round(v) for v in box]).save(root / "templates" / cls / f"t{k}.jpg")
                counts[cls] += 1
    (root / "lrihar.yaml").write_text(json.dumps(
        {"classes": [{"name": c, "templates": f"templates/{c}"} for c in classes]}))
    return Project.open(root)


# -- soak (child process) --------------------------------------------------------------------------

def soak(args) -> None:
    """The deployed stack on the looping live source for ``--soak-minutes``; RSS as JSON on stdout."""
    from lrihar.models.detectors import create_detector
    from lrihar.runtime.labellers import OnnxLabeller

    detector = create_detector("yolo", model=args.soak_detector, threads=THREADS,
                               **json.loads(args.soak_detector_options))
    labeller = OnnxLabeller(args.soak_student, batch_size=16, threads=THREADS)
    samples: list[tuple[float, float]] = []
    started = time.monotonic()

    def on_stats(_summary) -> None:
        samples.append((round(time.monotonic() - started, 1), round(rss_mb(), 1)))

    with FfmpegCamera(Path(args.soak_clip)) as cam:
        row = run_pipeline(cam.url, True, detector, labeller, Path(args.soak_clip).parent,
                           args.soak_minutes * 60, on_stats=on_stats, stats_every_s=15.0)
    stopped = round(rss_mb(), 1)  # queues and capture freed: not the running figure
    samples = samples or [(round(time.monotonic() - started, 1), stopped)]
    after_warmup = next((rss for t, rss in samples if t >= 60), samples[0][1])
    print(json.dumps({"row": row, "rss_mb_series": samples, "rss_mb_start": after_warmup,
                      "rss_mb_end": samples[-1][1], "rss_mb_after_stop": stopped,
                      "growth_pct": round(100 * (samples[-1][1] - after_warmup) / after_warmup, 2)}))


def run_soak(args, clip: Path, detector: Path, options: dict, student_onnx: Path) -> dict:
    cmd = [sys.executable, __file__, "--soak-child", "--soak-minutes", str(args.soak_minutes),
           "--soak-clip", str(clip), "--soak-detector", str(detector),
           "--soak-detector-options", json.dumps(options), "--soak-student", str(student_onnx)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": str(THREADS)})
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- main ------------------------------------------------------------------------------------------

def row_line(r: dict) -> str:
    st = r["stage_p50_ms"]
    stages = " / ".join(f"{st.get(k, '-')}" for k in ("decode", "detect", "classify", "track"))
    fps = r.get("fps_after_first_frame") if r["mode"] != FILE else r["fps"]
    return (f"| {r['arm']} | {r['mode']} | {fps:.1f} | {r['latency_p50_ms']} / {r['latency_p99_ms']} | "
            f"{stages} | {r['frames']} / {r['frames_dropped']} | {r['crops_per_frame']} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the 720p clip")
    ap.add_argument("--live-seconds", type=float, default=20.0, help="wall time per live run")
    ap.add_argument("--soak-minutes", type=float, default=10.0, help="0: no soak")
    ap.add_argument("--detector-onnx", type=Path, default=TRAINED if TRAINED.is_file() else None,
                    help="the trained YOLO ONNX at 320 px (its weights/best.pt two folders up is the "
                         "naive loop's model)")
    ap.add_argument("--skip-offline", action="store_true", help="leave out arm B (mediapipe + templates)")
    for hidden in ("--soak-clip", "--soak-detector", "--soak-detector-options", "--soak-student"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    ap.add_argument("--soak-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(THREADS)
    if args.soak_child:
        soak(args)
        return
    if not CLIP.is_file():
        sys.exit(f"{CLIP}: the hands-dev clip is missing (only present in the lrihar workspace)")
    if FFMPEG is None:
        sys.exit("ffmpeg is not installed (Debian: apt-get install ffmpeg); it serves the live source")

    import torch

    from lrihar.models.detectors import create_detector
    from lrihar.runtime.labellers import OnnxLabeller

    torch.set_num_threads(THREADS)
    load_start, t_start = load_average(), time.time()
    folder = Path(tempfile.mkdtemp(prefix="lrihar-runtime-fps-"))
    rows: list[dict] = []
    try:
        clip = build_clip(folder, args.seconds)
        decode = decode_pass(clip)
        print(f"clip {clip} ({decode['frames']} frames); decode p50 {decode['p50_ms']} ms", flush=True)
        models = export_models(folder)
        labeller = OnnxLabeller(str(models["student_onnx"]), batch_size=16, threads=THREADS)
        detectors = []  # (name, onnx, .pt for the naive loop, detector options)
        if args.detector_onnx is not None:
            pt = args.detector_onnx.parent.parent / "weights" / "best.pt"
            detectors.append(("trained MobileNetV2-YOLO", args.detector_onnx, pt,
                              {"box_threshold": 0.25, "max_det": 300}))
        probe = create_detector("yolo", model=str(models["yolo11n_onnx"]), threads=THREADS, box_threshold=0.0,
                                max_det=3)
        noise_threshold = calibrate_threshold(probe, clip)
        detectors.append(("yolo11n random init, ≤ 2 boxes", models["yolo11n_onnx"], models["yolo11n_pt"],
                          {"box_threshold": noise_threshold, "max_det": 2}))

        def add(arm: str, mode: str, row: dict) -> None:
            row = {"arm": arm, "mode": mode, **row}
            row["stage_p50_ms"] = {"decode": decode["p50_ms"], **row["stage_p50_ms"]} \
                if "decode" not in row["stage_p50_ms"] else row["stage_p50_ms"]
            rows.append(row)
            print(row_line(row), flush=True)

        for k, (name, onnx, pt, options) in enumerate(detectors):
            det = create_detector("yolo", model=str(onnx), threads=THREADS, **options)
            add(f"deployed: {name} + student ONNX", FILE,
                run_pipeline(str(clip), False, det, labeller, folder, None))
            with FfmpegCamera(clip) as cam:
                add(f"deployed: {name} + student ONNX", LIVE,
                    run_pipeline(cam.url, True, det, labeller, folder, args.live_seconds))
            if k == 0:  # the headline again with the long queue files use (the live default until 2026-11-26)
                with FfmpegCamera(clip) as cam:
                    add(f"deployed: {name} + student ONNX", f"{LIVE}, queue 8",
                        run_pipeline(cam.url, True, det, labeller, folder, args.live_seconds, queue_size=8))
            if pt.is_file():
                add(f"naive loop: {name} (ultralytics) + student PyTorch", FILE,
                    naive_loop(clip, pt, models["student"], options["box_threshold"], options["max_det"]))
        if not args.skip_offline:
            from lrihar.runtime.labellers import resolve_labeller
            from lrihar.runtime.session import resolve_detector

            project = offline_project(folder)
            det = resolve_detector(project, "auto")
            templates = resolve_labeller(project, "auto")
            arm = f"offline: {det.name} + {templates.name}"
            add(arm, FILE, run_pipeline(str(clip), False, det, templates, folder, None))
            with FfmpegCamera(clip) as cam:
                add(arm, LIVE,
                    run_pipeline(cam.url, True, det, templates, folder, args.live_seconds))
        soak_result = None
        if args.soak_minutes > 0:
            name, onnx, _, options = detectors[0]
            print(f"soak: {args.soak_minutes} min on the live source ({name})", flush=True)
            soak_result = {"detector": name, "minutes": args.soak_minutes,
                           **run_soak(args, clip, onnx, options, models["student_onnx"])}
            print(f"RSS {soak_result['rss_mb_start']} -> {soak_result['rss_mb_end']} MB "
                  f"({soak_result['growth_pct']:+.2f} %)", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    def fps_of(arm_prefix: str, mode: str) -> float | None:
        return next((r["fps"] for r in rows if r["arm"].startswith(arm_prefix) and r["mode"] == mode), None)

    headline = detectors[0][0]
    live = next(r for r in rows if r["arm"].startswith(f"deployed: {headline}") and r["mode"] == LIVE)
    file_fps = fps_of(f"deployed: {headline}", FILE)
    naive_fps = fps_of(f"naive loop: {headline}", FILE)
    targets = {
        "headline": f"deployed: {headline}",
        "sustained_fps_live": live["fps_after_first_frame"], "fps_target": 25,
        "meets_fps": live["fps_after_first_frame"] >= 25,
        "p99_ms_live": live["latency_p99_ms"], "p99_target_ms": 150,
        "meets_p99": live["latency_p99_ms"] is not None and live["latency_p99_ms"] <= 150,
        "speedup_vs_naive_file": round(file_fps / naive_fps, 2) if file_fps and naive_fps else None,
        "meets_2x": bool(file_fps and naive_fps and file_fps / naive_fps >= 2),
        "rss_growth_pct": soak_result["growth_pct"] if soak_result else None,
        "meets_rss": soak_result["growth_pct"] <= 5 if soak_result else None,
    }
    lines = ["| arm | source | FPS | latency p50 / p99 ms | p50 ms decode / detect / classify / track "
             "| frames / dropped | crops per frame |", "|---|---|---|---|---|---|---|"]
    lines += [row_line(r) for r in rows]
    result = {
        "threads": THREADS,
        "clip": {"from": CLIP.name, "size": list(SIZE), "fps": FPS, "seconds": args.seconds,
                 "frames": decode["frames"]},
        "imgsz": IMGSZ, "live_seconds": args.live_seconds,
        "weights": "student MobileNetV2 128 px random init; yolo11n random init (yaml); trained "
                   f"detector: {args.detector_onnx}",
        "decode_pass": decode, "uptime_load": {"start": load_start, "end": load_average()},
        "wall_s": round(time.time() - t_start, 1), "rows": rows, "soak": soak_result, "targets": targets,
        "markdown": "\n".join(lines)}
    print(result["markdown"])
    print(json.dumps(targets))
    print("wrote", write_result("runtime_fps", result))


if __name__ == "__main__":
    main()
