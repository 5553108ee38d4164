"""``lrihar export-runtime --classifier``: a trained classifier as ONNX (fp32, and INT8 for
transformers), checked on the run's validation crops, hashed and recorded.

The run's ``best.safetensors`` (LoRA already merged) is exported with a dynamic batch axis to
``<run>/export/classifier-<size>.onnx``; what the runtime needs (classes, input size, mean/std)
is written into the file's metadata, so the ``.onnx`` alone is a deployable classifier
(:class:`lrihar.models.classifiers.OnnxClassifier`). For a transformer, dynamic INT8
quantisation (per-channel weights: same speed as per-tensor, about 3× lower output error)
writes ``classifier-<size>-int8.onnx``; CNNs are never quantised this way (ONNX Runtime ran a
dynamically quantised MobileNetV3 8-18× slower, shared/OFFLINE.md).

Parity on the validation crops: the fp32 file must agree with PyTorch (top-1 on every crop
but near-ties, logits within tolerance) or it is removed; the INT8 file reports its top-1
agreement and accuracy drop, and is the deployed file only when the drop stays within
``max_int8_drop``. ``export/classifier.json`` records both files' SHA-256, the parity figures
and which file is deployed; the store's runs table records the same.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from lrihar.artifacts import CLASSIFIER, CLASSIFIER_EXPORT, find_run, list_runs, read_record
from lrihar.errors import BadInputError, LriharError
from lrihar.paths import sha256_of
from lrihar.project import Project, recorded_run
from lrihar.versions import package_versions

OPSET = 17
_EXPORT_PACKAGES = ("onnx", "onnxruntime", "peft", "safetensors")  # versions in the record
META_KEYS = ("classes", "input_size", "mean", "std", "kind", "run", "precision")


@dataclass
class ClassifierParity:
    """How an ONNX file's answers compare with the PyTorch model's on the validation crops."""

    crops: int = 0
    top1_agreement: float = 0.0
    max_abs_diff: float = 0.0
    accuracy_torch: float = 0.0
    accuracy_onnx: float = 0.0
    accuracy_drop: float = 0.0
    disagreements: int = 0
    near_ties: int = 0
    ok: bool = False


@dataclass
class ExportedFile:
    path: str
    precision: str
    sha256: str
    bytes: int
    parity: ClassifierParity


@dataclass
class ClassifierExportSummary:
    """What :func:`export_classifier` wrote."""

    run: str
    deployed: str
    files: list[ExportedFile] = field(default_factory=list)
    record: str = ""
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_run(project: Project, run: str | None) -> Path:
    """``run`` by name, else the latest distilled student, else the latest finetuned teacher."""
    if run is not None:
        return find_run(CLASSIFIER, project, run)
    students = [p for p in list_runs(CLASSIFIER, project, "distill") if (p / CLASSIFIER.best).is_file()]
    return students[-1] if students else find_run(CLASSIFIER, project, None, command="finetune")


def _parity_crops(run_dir: Path, max_crops: int) -> tuple[list[np.ndarray], np.ndarray]:
    """The run's validation crops (else its training crops), spread evenly, and their labels."""
    from lrihar.train.classifier_data import class_folders, read_split
    from lrihar.train.classifier_models import ClassifierSpec

    spec = ClassifierSpec.load(run_dir)
    data = Path(read_record(run_dir).get("summary", {}).get("data") or run_dir / "data")
    if not (data / "train").is_dir():
        raise BadInputError(f"{data}: the run's crops are gone; the parity check needs them "
                            "(retrain the run)")
    folders = class_folders(data / "train")
    crops = read_split(data / "val", folders, 4 * spec.input_size, False) if (data / "val").is_dir() else None
    if crops is None or not len(crops):
        crops = read_split(data / "train", folders, 4 * spec.input_size, False)
    pick = np.unique(np.linspace(0, len(crops) - 1, min(max_crops, len(crops))).round().astype(int))
    return [crops.images[i] for i in pick], crops.labels[pick]


def _export_onnx(model, path: Path) -> None:
    import torch

    size = model.spec.input_size
    dummy = torch.zeros(2, 3, size, size)
    tmp = path.with_name(path.name + ".tmp")
    with torch.no_grad():
        torch.onnx.export(model.eval(), (dummy,), str(tmp), input_names=["pixels"], output_names=["logits"],
                          dynamic_axes={"pixels": {0: "n"}, "logits": {0: "n"}}, opset_version=OPSET,
                          dynamo=False)
    tmp.replace(path)


def _write_metadata(path: Path, spec, run: str, precision: str) -> None:
    """What the runtime needs, in the ONNX file itself (rewritten in place, atomically)."""
    import onnx

    model = onnx.load(str(path))
    values = {"classes": spec.classes, "input_size": spec.input_size, "mean": list(spec.mean),
              "std": list(spec.std), "kind": spec.kind, "run": run, "precision": precision}
    del model.metadata_props[:]
    for key in META_KEYS:
        entry = model.metadata_props.add()
        entry.key, entry.value = f"lrihar.{key}", json.dumps(values[key])
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(path)


def parity(torch_logits: np.ndarray, onnx_logits: np.ndarray, labels: np.ndarray,
           tie: float = 1e-3) -> ClassifierParity:
    """Top-1 agreement, largest logit difference and accuracies of two sets of logits.

    A crop whose top two PyTorch logits lie within ``tie`` of each other is a near tie: either
    answer is right, so it never counts as a disagreement.
    """
    t_top, o_top = torch_logits.argmax(1), onnx_logits.argmax(1)
    ordered = np.sort(torch_logits, axis=1)
    near = ((ordered[:, -1] - ordered[:, -2] < tie) if torch_logits.shape[1] > 1
            else np.zeros(len(t_top), bool))
    disagree = (t_top != o_top) & ~near
    acc_t, acc_o = float((t_top == labels).mean()), float((o_top == labels).mean())
    return ClassifierParity(crops=len(labels), top1_agreement=round(float((t_top == o_top).mean()), 5),
                            max_abs_diff=round(float(np.abs(torch_logits - onnx_logits).max()), 6),
                            accuracy_torch=round(acc_t, 5), accuracy_onnx=round(acc_o, 5),
                            accuracy_drop=round(acc_t - acc_o, 5), disagreements=int(disagree.sum()),
                            near_ties=int(near.sum()))


def export_classifier(project: Project, run: str | None = None, int8: bool | None = None,
                      parity_crops: int = 256, max_int8_drop: float = 0.01,
                      logit_tolerance: float = 1e-3) -> ClassifierExportSummary:
    """Export a trained classifier run (default: the latest student) to ONNX; see the module docstring.

    Args:
        project: the opened project.
        run: the run's name.
        int8: also write a dynamic INT8 file (None: for transformers; True on a CNN is refused).
        parity_crops: validation crops the parity check uses (spread over the split).
        max_int8_drop: largest accuracy drop (0-1) at which the INT8 file is the one deployed.
        logit_tolerance: largest fp32 logit difference from PyTorch (relative to the logit range).

    Raises:
        BadInputError: no trained run, INT8 asked for a CNN, a damaged checkpoint.
        LriharError: the fp32 file disagrees with PyTorch (it is removed; the record stays).
    """
    import torch

    from lrihar.models.classifiers.preprocess import to_pixels
    from lrihar.train.classifier_models import load_classifier

    run_dir = default_run(project, run)
    model = load_classifier(run_dir)
    spec = model.spec
    if int8 and spec.kind != "transformer":
        raise BadInputError(f"--int8: run {run_dir.name!r} is a CNN ({spec.arch}); dynamic INT8 makes CNNs "
                            "slower in ONNX Runtime, so only transformer students are quantised")
    make_int8 = spec.kind == "transformer" if int8 is None else int8
    crops, labels = _parity_crops(run_dir, parity_crops)
    pixels = to_pixels(crops, spec.input_size, spec.mean, spec.std)
    with torch.no_grad():
        torch_logits = np.concatenate([model(torch.from_numpy(pixels[i:i + 64])).numpy()
                                       for i in range(0, len(pixels), 64)])
    out_dir = run_dir / "export"
    out_dir.mkdir(exist_ok=True)
    fp32 = out_dir / f"classifier-{spec.input_size}.onnx"
    summary = ClassifierExportSummary(run=run_dir.name, deployed=str(fp32),
                                      record=str(out_dir / CLASSIFIER_EXPORT))
    config = {"run": run_dir.name, "int8": make_int8, "parity_crops": len(labels), "opset": OPSET,
              "max_int8_drop": max_int8_drop}
    with recorded_run(project.store, "export-runtime", config, lambda s: summary.as_dict() | {"seconds": s}):
        _export_onnx(model, fp32)
        _write_metadata(fp32, spec, run_dir.name, "fp32")
        p32 = parity(torch_logits, _run_onnx(fp32, pixels), labels)
        scale = max(1.0, float(np.abs(torch_logits).max()))
        p32.ok = p32.disagreements == 0 and p32.max_abs_diff <= logit_tolerance * scale
        summary.files.append(ExportedFile(str(fp32), "fp32", sha256_of(fp32), fp32.stat().st_size, p32))
        if not p32.ok:
            _write_record(out_dir, summary, spec)
            fp32.unlink()
            raise LriharError(f"{fp32.name}: ONNX disagrees with PyTorch on {p32.disagreements} of "
                              f"{p32.crops} validation crops (largest logit difference {p32.max_abs_diff}); "
                              f"the file was removed, the report is in {summary.record}")
        if make_int8:
            q8 = _quantize(fp32, spec, run_dir.name)
            p8 = parity(torch_logits, _run_onnx(q8, pixels), labels)
            p8.ok = p8.accuracy_drop <= max_int8_drop
            summary.files.append(ExportedFile(str(q8), "int8", sha256_of(q8), q8.stat().st_size, p8))
            if p8.ok:
                summary.deployed = str(q8)
            else:
                summary.notes.append(f"INT8 lost {p8.accuracy_drop:.1%} accuracy (more than "
                                     f"{max_int8_drop:.1%}): the fp32 file is deployed")
        _write_record(out_dir, summary, spec)
    return summary


def _quantize(fp32: Path, spec, run: str) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    q8 = fp32.with_name(fp32.stem + "-int8.onnx")
    tmp = q8.with_name(q8.name + ".tmp.onnx")
    quantize_dynamic(str(fp32), str(tmp), per_channel=True, weight_type=QuantType.QInt8)
    tmp.replace(q8)
    _write_metadata(q8, spec, run, "int8")
    return q8


def _run_onnx(path: Path, pixels: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"pixels": pixels[i:i + 64]})[0]
                           for i in range(0, len(pixels), 64)])


def _write_record(out_dir: Path, summary: ClassifierExportSummary, spec) -> None:
    doc = summary.as_dict() | {"classes": spec.classes, "input_size": spec.input_size, "kind": spec.kind,
                               "backbone": spec.backbone,
                               "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
                               "versions": package_versions(extra=_EXPORT_PACKAGES)}
    tmp = out_dir / (CLASSIFIER_EXPORT + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(out_dir / CLASSIFIER_EXPORT)
