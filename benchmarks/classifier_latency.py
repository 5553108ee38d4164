"""Per-crop call time of the classifiers (paper Table 4, speed side), 2 threads, batch 1 and 8.

One run times, on the same machine and load:

- the offline teacher (MobileNetV2, 224 px) and the deployed student (MobileNetV2, 128 px) in
  PyTorch, and the student as exported by ``export-runtime --classifier`` (ONNX fp32: CNNs are not
  quantised) through the runtime backend (``OnnxClassifier``: preprocessing included);
- a ViT-S/16 student (transformers config) at 112 px in PyTorch, ONNX fp32 and ONNX dynamic INT8
  (per-channel), and a PyTorch ViT-S/16 at 224 px (the reference of the ≥ 5× target);
- the paper's ViT-L/16 teacher architecture at 224 px in PyTorch (batch 1 only);
- the CNN baseline (ResNet-18, 128 px) in PyTorch and ONNX fp32.

Weights are random (latency does not depend on them; the trained runs have the same shapes).
A call is: crop (200×160 RGB) -> resize + normalise -> logits. Times are per crop: a batch of 8
is timed as one call and divided by 8. Median (p50) and p90 over ``--calls`` calls after warm-up.

Usage: python benchmarks/classifier_latency.py [--calls 200]
       -> benchmarks/results/classifier_latency.json (and a Markdown table on stdout)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import write_result

THREADS = 2
CLASSES = [f"c{i}" for i in range(26)]


def _times(fn, calls: int, per: int) -> dict:
    for _ in range(max(3, calls // 20)):  # warm-up
        fn()
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        out.append(1000 * (time.perf_counter() - t0) / per)
    return {"p50_ms": round(float(np.percentile(out, 50)), 3),
            "p90_ms": round(float(np.percentile(out, 90)), 3)}


def _torch_call(model, crops):
    import torch

    from lrihar.models.classifiers.preprocess import to_pixels

    s = model.spec

    def call():
        with torch.inference_mode():
            return model(torch.from_numpy(to_pixels(crops, s.input_size, s.mean, s.std)))

    return call


def _export(model, folder: Path, int8: bool) -> Path:
    from lrihar.deploy.onnx_classifier import _export_onnx, _quantize, _write_metadata

    path = folder / f"{model.spec.backbone}-{model.spec.input_size}.onnx"
    _export_onnx(model, path)
    _write_metadata(path, model.spec, "bench", "fp32")
    return _quantize(path, model.spec, "bench") if int8 else path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--skip-vit-large", action="store_true")
    args = ap.parse_args()

    import torch

    from lrihar.models.classifiers import OnnxClassifier
    from lrihar.train.classifier_models import build_classifier

    torch.set_num_threads(THREADS)
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 255, size=(200, 160, 3), dtype=np.uint8)
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="lrihar-latency-"))

    def add(name, runtime, model_fn, batches=(1, 8), calls=args.calls, note=""):
        row = {"classifier": name, "runtime": runtime, "note": note}
        for b in batches:
            row[f"batch{b}"] = _times(model_fn([crop] * b), calls, b)
        rows.append(row)
        print(f"{name:34s} {runtime:18s} " + "  ".join(
            f"b{b}: p50 {row[f'batch{b}']['p50_ms']:7.2f} ms p90 {row[f'batch{b}']['p90_ms']:7.2f}"
            for b in batches), flush=True)

    def onnx_fn(path):
        clf = OnnxClassifier(path, batch_size=8, threads=THREADS)
        return lambda crops: (lambda: clf.logits(crops))

    mnv2_224, _ = build_classifier("mobilenet-v2", CLASSES, 224, pretrained=False)
    add("teacher MobileNetV2 224 px", "PyTorch fp32", lambda c: _torch_call(mnv2_224.eval(), c))
    student, _ = build_classifier("mobilenet-v2", CLASSES, 128, pretrained=False)
    add("student MobileNetV2 128 px", "PyTorch fp32", lambda c: _torch_call(student.eval(), c))
    add("student MobileNetV2 128 px", "ONNX Runtime fp32", onnx_fn(_export(student.eval(), tmp, False)),
        note="deployed (CNNs are not quantised)")
    vit_s, _ = build_classifier("vit-small", CLASSES, 112)
    add("student ViT-S/16 112 px", "PyTorch fp32", lambda c: _torch_call(vit_s.eval(), c))
    add("student ViT-S/16 112 px", "ONNX Runtime fp32", onnx_fn(_export(vit_s.eval(), tmp, False)))
    add("student ViT-S/16 112 px", "ONNX Runtime INT8", onnx_fn(_export(vit_s.eval(), tmp, True)),
        note="dynamic, per-channel")
    vit_s224, _ = build_classifier("vit-small", CLASSES, 224)
    add("ViT-S/16 224 px (reference)", "PyTorch fp32", lambda c: _torch_call(vit_s224.eval(), c))
    resnet, _ = build_classifier("resnet18", CLASSES, 128)
    add("CNN baseline ResNet-18 128 px", "PyTorch fp32", lambda c: _torch_call(resnet.eval(), c))
    add("CNN baseline ResNet-18 128 px", "ONNX Runtime fp32", onnx_fn(_export(resnet.eval(), tmp, False)))
    if not args.skip_vit_large:
        from transformers import ViTConfig, ViTForImageClassification

        from lrihar.train.classifier_models import Classifier, ClassifierSpec

        config = ViTConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                           intermediate_size=4096, image_size=224, patch_size=16,
                           id2label=dict(enumerate(CLASSES)))
        spec = ClassifierSpec("vit-large", "vit", "transformer", CLASSES, 224, (0.5,) * 3, (0.5,) * 3)
        vit_l = Classifier(ViTForImageClassification(config), spec).eval()
        add("teacher ViT-L/16 224 px (paper)", "PyTorch fp32", lambda c: _torch_call(vit_l, c), batches=(1,),
            calls=max(10, args.calls // 20))

    def p50(name, runtime):
        return next(r["batch1"]["p50_ms"] for r in rows
                    if r["classifier"] == name and r["runtime"] == runtime)

    deployed = p50("student MobileNetV2 128 px", "ONNX Runtime fp32")
    reference = p50("ViT-S/16 224 px (reference)", "PyTorch fp32")
    targets = {"deployed_student_p50_ms": deployed, "target_p50_ms": 5.0, "meets_5ms": deployed <= 5.0,
               "speedup_vs_pytorch_vit_s_224": round(reference / deployed, 1),
               "meets_5x": reference / deployed >= 5.0}
    lines = ["| classifier | runtime | batch 1 p50 / p90 | batch 8 p50 / p90 (per crop) |",
             "|---|---|---|---|"]
    for r in rows:
        b8 = f"{r['batch8']['p50_ms']:.2f} / {r['batch8']['p90_ms']:.2f} ms" if "batch8" in r else "-"
        lines.append(f"| {r['classifier']} | {r['runtime']} | {r['batch1']['p50_ms']:.2f} / "
                     f"{r['batch1']['p90_ms']:.2f} ms | {b8} |")
    result = {"threads": THREADS, "crop": list(crop.shape), "calls": args.calls, "rows": rows,
              "targets": targets, "markdown": "\n".join(lines)}
    print(result["markdown"])
    print(targets)
    print("wrote", write_result("classifier_latency", result))


if __name__ == "__main__":
    main()
