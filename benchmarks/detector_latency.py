"""Per-frame latency of the deployed detector (`yolo` backend: ONNX Runtime, numpy letterbox,
supervision NMS) against ultralytics' own PyTorch predict, same frames, same run.

Both paths are timed end to end per frame at batch 1 with 2 threads: an RGB frame in, boxes in
frame pixels out (letterbox, inference, decoding and NMS included), at the default thresholds
(confidence 0.25, NMS IoU 0.7), each frame through every path of one size in turn (all models
and variants in one loop), so that load from other processes and this VM's drift fall on all
alike. The backend runs as deployed (the graph cut before its box decoding, the few candidates
decoded in numpy; ORT's threads not spinning), and, to show what each option brings, with ORT's
threads spinning during a call (``spin: true``), on the whole graph (decoding every anchor in
it: exports made before the cut), and on the INT8 copy ``export-runtime --int8`` makes
(calibrated on 16 of the frames). Architectures: yolo11n, mobilenetv2-yolo (the default),
efficientnet-lite0-yolo, built from their yaml with random weights (the pretrained backbones
keep their ImageNet features), and any trained ``--weights``: latency does not depend on the
weights, except that an untrained model leaves almost no box for NMS and decoding, which costs
~0.1 ms for the handful a trained one keeps. Frames are the real 640×640 photos of the gloves
set.

Targets: ≤ 15 ms p50 at 320 px on 2 cores, and ≥ 2× ultralytics' predict at the same size.

Usage: python benchmarks/detector_latency.py [--frames 60] [--sizes 320,640] [--weights RUN/weights/best.pt]
       -> benchmarks/results/detector_latency.json
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import HANDS_DEV, write_model_yaml, write_result
from lrihar.sources import read_image

THREADS = 2
ARCHS = ("yolo11n", "mobilenetv2-yolo", "efficientnet-lite0-yolo")
SIZES = (320, 640)


def frames(n: int) -> tuple[list[np.ndarray], bool]:
    """``n`` photos of the gloves set, and whether they are real (without the dev set: random
    frames of the same size)."""
    images = [read_image(p) for p in sorted((HANDS_DEV / "gloves_roboflow" / "images").glob("*.jpg"))[:n]]
    if images:
        return images, True
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (640, 640, 3), dtype=np.uint8) for _ in range(n)], False


def one_class_yaml(arch: str, folder: Path) -> Path:
    """The architecture's model yaml with one class, copied where the export may write."""
    return write_model_yaml(arch, folder / f"{arch}.yaml", {"nc": 1})


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


def variants(onnx: Path, arch: str, size: int, images: list[np.ndarray], strides: list[float]) -> dict:
    """The deployed configuration and the ones it is measured against, as ``yolo`` backends."""
    import shutil

    from lrihar.deploy.int8_detector import quantize_detector
    from lrihar.deploy.onnx_head import cut_before_decoding
    from lrihar.models.detectors import create_detector

    cut = Path(shutil.copy(onnx, onnx.with_name(f"{arch}-{size}-cut.onnx")))
    cut_before_decoding(cut, strides)  # what export-runtime --detector ships
    int8 = cut.with_name(f"{arch}-{size}-int8.onnx")
    quantize_detector(cut, int8, images[:16], size)  # export-runtime --int8's copy
    return {"onnxruntime": create_detector("yolo", model=str(cut), threads=THREADS),
            "spin": create_detector("yolo", model=str(cut), threads=THREADS, spin=True),
            # before the head cut: the decoding of every anchor in the graph
            "full_graph": create_detector("yolo", model=str(onnx), threads=THREADS),
            "int8": create_detector("yolo", model=str(int8), threads=THREADS)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--weights", type=Path, action="append", default=[],
                        help="a trained detector (best.pt) to time too, e.g. the bootstrap's arm")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(THREADS)
    images, real = frames(args.frames)
    sizes = [int(x) for x in args.sizes.split(",")]
    rows = []
    load_before = os.getloadavg()
    here = Path.cwd()
    weights = [w.resolve() for w in args.weights]
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # ultralytics writes a yaml-built model's export into the working folder
        from lrihar.train.offline import ultralytics_offline

        with ultralytics_offline(Path(tmp) / "state") as ul:
            import torch

            torch.set_num_threads(THREADS)
            sources = {arch: one_class_yaml(arch, Path(tmp)) for arch in ARCHS}
            # RUN/weights/best.pt -> "trained:<run's parent>/<run>" (a benchmark's runs are all "run")
            sources |= {f"trained:{w.parents[2].name}/{w.parents[1].name}": w for w in weights}
            models = {arch: ul.YOLO(str(source)) for arch, source in sources.items()}
            for size in sizes:
                # every model and variant at this size in one interleaved loop: this VM's speed
                # drifts over minutes, and rows timed one after the other would not compare
                calls: dict[tuple[str, str], object] = {}
                for arch, model in models.items():
                    onnx = Path(model.export(format="onnx", imgsz=size, opset=18, simplify=True,
                                             batch=1, device="cpu", verbose=False))
                    name = arch.replace(":", "-").replace("/", "-")
                    target = onnx.with_name(f"{name}-{size}.onnx")
                    onnx.replace(target)
                    strides = model.model.stride.tolist()
                    for variant, call in variants(target, name, size, images, strides).items():
                        calls[arch, variant] = call

                    def predict(im, m=model, s=size):
                        return m.predict(im[..., ::-1], imgsz=s, conf=0.25, iou=0.7, device="cpu",
                                         verbose=False)

                    calls[arch, "ultralytics_predict"] = predict
                timed = time_interleaved(calls, images)
                for arch in models:
                    t = {variant: v for (a, variant), v in timed.items() if a == arch}
                    ort, pt = t["onnxruntime"], t["ultralytics_predict"]
                    row = {"arch": arch, "imgsz": size, **t,
                           "speedup_p50": round(pt["p50_ms"] / ort["p50_ms"], 2)}
                    rows.append(row)
                    print(f"{arch:23s} {size:4d}px  deployed p50 {ort['p50_ms']:6.1f} ms "
                          f"p90 {ort['p90_ms']:6.1f} (spinning {t['spin']['p50_ms']:6.1f}, "
                          f"whole graph {t['full_graph']['p50_ms']:6.1f}, "
                          f"int8 {t['int8']['p50_ms']:6.1f})  |  ultralytics p50 {pt['p50_ms']:6.1f} ms"
                          f"  |  {row['speedup_p50']:.2f}×", flush=True)
    os.chdir(here)
    from importlib import metadata

    path = write_result("detector_latency", {
        "frames": len(images), "frame_size": list(images[0].shape[:2]), "threads": THREADS, "batch": 1,
        "real_frames": real, "weights": "random init (yaml), and the --weights given",
        "thresholds": {"confidence": 0.25, "nms_iou": 0.7},
        "versions": {k: metadata.version(k) for k in ("onnxruntime", "torch", "ultralytics")},
        "load_average_1min": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        "rows": rows,
        "targets": {"p50_ms_at_320": 15, "speedup_vs_ultralytics": 2},
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
