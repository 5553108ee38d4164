"""An exported classifier (``lrihar export-runtime --classifier``) run in ONNX Runtime, batched.

The file carries its classes, input size and normalisation in its metadata, so nothing else is
needed to run it; crops go through the same preprocessing as in training
(:func:`~lrihar.models.classifiers.preprocess.to_pixels`). Imports no torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lrihar.errors import BadInputError, ModelLoadError
from lrihar.models.classifiers.preprocess import to_pixels


@dataclass
class ClassifierResult:
    """Per crop: best class index, its probability, the runner-up index and the margin between them."""

    label: np.ndarray
    score: np.ndarray
    runner_up: np.ndarray
    margin: np.ndarray
    probabilities: np.ndarray


class OnnxClassifier:
    """A classifier exported by lrihar, run on CPU.

    Args:
        path: the ``.onnx`` file.
        batch_size: crops per ONNX Runtime call.
        threads: intra-op threads (None: ONNX Runtime's default).
        spin: let idle ORT threads busy-wait between operators during a call (they stop when it
            returns; off by default, not measured for the classifier).
    """

    def __init__(self, path: str | Path, batch_size: int = 32, threads: int | None = None,
                 spin: bool = False) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise BadInputError(f"{self.path}: no such ONNX file")
        from lrihar.artifacts import check_recorded
        from lrihar.models.ort_session import session_options

        check_recorded(self.path)  # an exported file is the one its export record names

        try:
            self.session = ort.InferenceSession(str(self.path), session_options(threads, spin),
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # ONNX Runtime raises its own exception types for damaged files
            raise ModelLoadError(f"{self.path}: not a loadable ONNX model ({str(exc)[:200]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            self.classes: list[str] = json.loads(meta["lrihar.classes"])
            self.input_size = int(json.loads(meta["lrihar.input_size"]))
            self.mean = tuple(json.loads(meta["lrihar.mean"]))
            self.std = tuple(json.loads(meta["lrihar.std"]))
        except (KeyError, ValueError) as exc:
            raise ModelLoadError(f"{self.path}: not a classifier exported by `lrihar export-runtime "
                                 f"--classifier` (metadata {exc} missing)") from None
        self.precision = json.loads(meta.get("lrihar.precision", '"fp32"'))
        self.run = json.loads(meta.get("lrihar.run", '""'))
        self.batch_size = batch_size

    @property
    def name(self) -> str:
        return f"{self.run or self.path.stem} ({self.precision}, {self.input_size} px)"

    def logits(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Raw logits (N, classes) of RGB uint8 crops."""
        out = [self.session.run(None, {"pixels": to_pixels(crops[i:i + self.batch_size], self.input_size,
                                                           self.mean, self.std)})[0]
               for i in range(0, len(crops), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def classify(self, crops: Sequence[np.ndarray]) -> ClassifierResult:
        """Best class, probability, runner-up and margin per crop."""
        z = self.logits(crops).astype(np.float64)
        z -= z.max(1, keepdims=True) if len(z) else 0
        p = np.exp(z)
        p /= p.sum(1, keepdims=True) if len(p) else 1
        order = np.argsort(-p, axis=1)
        rows = np.arange(len(p))
        best = order[:, 0] if len(p) else np.zeros(0, int)
        second = order[:, 1] if p.shape[1] > 1 else best
        return ClassifierResult(best, p[rows, best], second, p[rows, best] - p[rows, second], p)
