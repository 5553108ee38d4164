"""Per-frame latency of the deployed detector (`yolo` backend: ONNX Runtime, numpy letterbox,
supervision NMS) against ultralytics' own PyTorch predict, same frames, same run.

Both paths are timed end to end per frame at batch 1 with 2 threads: an RGB frame in, boxes in
frame pixels out (letterbox, inference, decoding and NMS included), at the default thresholds
(confidence 0.25, NMS IoU 0.7), each frame through each path in turn so that load from other
processes falls on all alike. The backend runs with ORT's thread spinning off (its default) and
on (``spin: true``), and on the INT8 copy ``export-runtime --int8`` makes (calibrated on 16 of
the frames). Architectures: yolo11n, mobilenetv2-yolo (the default), efficientnet-lite0-yolo.
Frames are the real 640×640 photos of the gloves set. The models are built from their yaml
with random weights (the pretrained backbones keep their ImageNet features): latency does not
depend on the weights, except that an untrained model leaves almost no box for NMS, which
costs ~0.1 ms for the handful a trained one keeps.

Targets: ≤ 15 ms p50 at 320 px on 2 cores, and ≥ 2× ultralytics' predict at the same size.

Usage: python benchmarks/detector_latency.py [--frames 60]
       -> benchmarks/results/detector_latency.json
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import HANDS_DEV, write_result
from lrihar.sources import read_image

THREADS = 2
ARCHS = ("yolo11n", "mobilenetv2-yolo", "efficientnet-lite0-yolo")
SIZES = (320, 640)


def frames(n: int) -> list[np.ndarray]:
    folder = HANDS_DEV / "gloves_roboflow"
    paths = sorted(p for p in folder.glob("*.jpg"))[:n] if folder.is_dir() else []
    images = [read_image(p) for p in paths]
    if not images:  # without the dev set: random frames of the same size (said in the output)
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 255, (640, 640, 3), dtype=np.uint8) for _ in range(n)]
    return images


def one_class_yaml(arch: str, folder: Path) -> Path:
    """The architecture's model yaml with one class, copied where the export may write."""
    import yaml
    from ultralytics.nn.tasks import yaml_model_load

    from lrihar.train.detector import model_source

    doc = yaml_model_load(model_source(arch))
    doc["nc"] = 1
    path = folder / f"{arch}.yaml"
    doc["yaml_file"] = str(path)  # where ultralytics writes the export
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def percentiles(times: list[float]) -> dict[str, float]:
    ms = np.array(times) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p90_ms": round(float(np.percentile(ms, 90)), 2), "mean_ms": round(float(ms.mean()), 2)}


def time_interleaved(calls: dict, images: list[np.ndarray], warmup: int = 5) -> dict[str, dict]:
    """Each frame through every call in turn, so that load from other processes on a shared
    machine falls on all of them alike; percentiles per call."""
    for im in images[:warmup]:
        for call in calls.values():
            call(im)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for im in images:
        for name, call in calls.items():
            start = time.perf_counter()
            call(im)
            times[name].append(time.perf_counter() - start)
    return {name: percentiles(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=60)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(THREADS)
    images = frames(args.frames)
    rows = []
    load_before = os.getloadavg()
    here = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # ultralytics writes a yaml-built model's export into the working folder
        from lrihar.train.offline import ultralytics_offline

        with ultralytics_offline(Path(tmp) / "state") as ul:
            import torch

            torch.set_num_threads(THREADS)
            from lrihar.deploy.int8_detector import quantize_detector
            from lrihar.models.detectors import create_detector

            for arch in ARCHS:
                yaml_path = one_class_yaml(arch, Path(tmp))
                model = ul.YOLO(str(yaml_path))
                for size in SIZES:
                    onnx = Path(model.export(format="onnx", imgsz=size, opset=18, simplify=True,
                                             batch=1, device="cpu", verbose=False))
                    target = onnx.with_name(f"{arch}-{size}.onnx")
                    onnx.replace(target)
                    det = create_detector("yolo", model=str(target), threads=THREADS)
                    spinning = create_detector("yolo", model=str(target), threads=THREADS, spin=True)
                    int8 = target.with_name(f"{arch}-{size}-int8.onnx")
                    quantize_detector(target, int8, images[:16], size)  # export-runtime --int8's copy
                    quantised = create_detector("yolo", model=str(int8), threads=THREADS)

                    def predict(im, m=model, s=size):
                        return m.predict(im[..., ::-1], imgsz=s, conf=0.25, iou=0.7, device="cpu",
                                         verbose=False)

                    timed = time_interleaved({"onnxruntime": det, "onnxruntime_spin": spinning,
                                              "onnxruntime_int8": quantised, "ultralytics": predict}, images)
                    ort, pt = timed["onnxruntime"], timed["ultralytics"]
                    row = {"arch": arch, "imgsz": size, "onnxruntime": ort,
                           "onnxruntime_spin": timed["onnxruntime_spin"], "ultralytics_predict": pt,
                           "onnxruntime_int8": timed["onnxruntime_int8"],
                           "speedup_p50": round(pt["p50_ms"] / ort["p50_ms"], 2)}
                    rows.append(row)
                    spin, q = timed["onnxruntime_spin"]["p50_ms"], timed["onnxruntime_int8"]["p50_ms"]
                    print(f"{arch:23s} {size:4d}px  onnxruntime p50 {ort['p50_ms']:6.1f} ms "
                          f"p90 {ort['p90_ms']:6.1f} (spinning p50 {spin:6.1f}, int8 p50 {q:6.1f})"
                          f"  |  ultralytics p50 {pt['p50_ms']:6.1f} ms "
                          f"p90 {pt['p90_ms']:6.1f}  |  {row['speedup_p50']:.2f}×", flush=True)
    os.chdir(here)
    from importlib import metadata

    path = write_result("detector_latency", {
        "frames": len(images), "frame_size": list(images[0].shape[:2]), "threads": THREADS, "batch": 1,
        "real_frames": (HANDS_DEV / "gloves_roboflow").is_dir(), "weights": "random init (yaml)",
        "thresholds": {"confidence": 0.25, "nms_iou": 0.7},
        "versions": {k: metadata.version(k) for k in ("onnxruntime", "torch", "ultralytics")},
        "load_average_1min": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        "rows": rows,
        "targets": {"p50_ms_at_320": 15, "speedup_vs_ultralytics": 2},
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
