"""Crop classifiers by name, for training (pretrained weights in) and for loading a trained run.

Backbones:

- ``mobilenet-v2`` (offline default): torchvision MobileNetV2 with the packaged ImageNet weights
  (:func:`lrihar.models.encoders.mobilenet.packaged_weights`), a new linear head.
- a hub id or local directory of a transformers ViT (the paper's teacher:
  ``google/vit-large-patch16-224``), loaded with ``ViTForImageClassification.from_pretrained``
  and a new head; offline only from a local dir, the Hugging Face cache or ``LRIHAR_MODELS_DIR``.
- ``vit-small`` / ``vit-tiny``: a transformers ViT-S/16 or ViT-Ti/16 built from its config
  (random init: no weights can be downloaded here), for small deployment sizes (96-128 px).
- ``resnet18``: torchvision's ResNet-18 architecture, random init (no weights are packaged),
  the paper's CNN baseline.

Each model travels with a :class:`ClassifierSpec` (classes, input size, mean/std, architecture
config), written as ``classifier.json`` beside the weights, so a run rebuilds its network from
the spec and ``best.safetensors`` alone, without a hub and without peft.

Example:
    >>> model, spec = build_classifier("mobilenet-v2", ["a", "b"], input_size=128)  # doctest: +SKIP
    >>> model(torch.zeros(1, 3, 128, 128)).shape  # doctest: +SKIP
    torch.Size([1, 2])
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from lrihar.errors import BadInputError, ModelLoadError

DEFAULT_BACKBONE = "mobilenet-v2"
SPEC_FILE = "classifier.json"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ViT-S/16 and ViT-Ti/16 (DeiT sizes) as transformers configs; the image size is set per run.
VIT_SIZES = {"vit-small": {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6,
                           "intermediate_size": 1536},
             "vit-tiny": {"hidden_size": 192, "num_hidden_layers": 12, "num_attention_heads": 3,
                          "intermediate_size": 768}}
BUILTIN = ("mobilenet-v2", *VIT_SIZES, "resnet18")
# Native input sizes; a from-config ViT defaults to 112 px, a CPU deployment size (OFFLINE.md).
DEFAULT_SIZE = {"mobilenet-v2": 224, "resnet18": 224, "vit-small": 112, "vit-tiny": 112}


@dataclass
class ClassifierSpec:
    """What a trained classifier is: enough to rebuild it and to feed it.

    Attributes:
        backbone: the name or hub id / directory it was built from.
        arch: ``mobilenet-v2``, ``resnet18`` or ``vit`` (a transformers ViT).
        kind: ``cnn`` or ``transformer`` (INT8 export is for transformers only).
        classes: class names, index = output position.
        input_size: square input in pixels.
        mean, std: per-channel normalisation of 0-1 RGB pixels.
        init: where the starting weights came from (``ImageNet (packaged)``, ``random``, a hub id).
        hf_config: the transformers config (ViT only).
        interpolate_pos: a ViT run at another size than it was pretrained at.
    """

    backbone: str
    arch: str
    kind: str
    classes: list[str]
    input_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    init: str = "random"
    hf_config: dict[str, Any] | None = None
    interpolate_pos: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def save(self, folder: Path) -> Path:
        path = Path(folder) / SPEC_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: Path) -> ClassifierSpec:
        path = Path(folder) / SPEC_FILE
        try:
            doc = json.loads(path.read_text())
            doc["mean"], doc["std"] = tuple(doc["mean"]), tuple(doc["std"])
            return cls(**doc)
        except FileNotFoundError:
            raise BadInputError(f"{path}: missing; this folder holds no trained classifier") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise BadInputError(f"{path}: not a readable classifier description ({exc}); "
                                "retrain the run") from None


class Classifier(torch.nn.Module):
    """Pixels (N, 3, H, W, normalised) -> logits (N, classes), whatever the backbone."""

    def __init__(self, net, spec: ClassifierSpec) -> None:
        super().__init__()
        self.net = net
        self.spec = spec

    def forward(self, pixels):
        if self.spec.arch == "vit":
            kwargs = {"interpolate_pos_encoding": True} if self.spec.interpolate_pos else {}
            return self.net(pixel_values=pixels, **kwargs).logits
        return self.net(pixels)

    def head_names(self) -> list[str]:
        """Module names (inside ``net``) of the new classification head."""
        return head_names(self.spec.arch)


def head_names(arch: str) -> list[str]:
    return {"mobilenet-v2": ["classifier.1"], "resnet18": ["fc"], "vit": ["classifier"]}[arch]


def _is_hub_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(p and not p.startswith(".") for p in parts)


def check_backbone(backbone: str) -> None:
    """Refuse a backbone that is neither a built-in name, a local dir nor a hub id."""
    if backbone in BUILTIN or Path(backbone).expanduser().is_dir() or _is_hub_id(backbone):
        return
    raise BadInputError(f"--backbone: unknown backbone {backbone!r}; choose one of {', '.join(BUILTIN)}, "
                        "a local directory of a transformers ViT, or a hub id such as "
                        "google/vit-large-patch16-224")


def build_classifier(backbone: str, classes: list[str], input_size: int | None = None,
                     pretrained: bool = True) -> tuple[Classifier, ClassifierSpec]:
    """A classifier for ``classes`` on ``backbone`` with its pretrained weights (where it has any).

    Raises:
        BadInputError: unknown backbone name, bad input size.
        ModelLoadError: a hub id that is not available offline, or missing packaged weights.
    """
    check_backbone(backbone)
    if input_size is not None and input_size < 32:
        raise BadInputError(f"--image-size: {input_size} is too small (at least 32 px)")
    n = len(classes)
    if backbone == "mobilenet-v2":
        spec = ClassifierSpec(backbone, "mobilenet-v2", "cnn", classes, input_size or 224,
                              init="ImageNet (packaged MobileNetV2)" if pretrained else "random")
        return Classifier(_mobilenet(n, pretrained), spec), spec
    if backbone == "resnet18":
        import torchvision

        spec = ClassifierSpec(backbone, "resnet18", "cnn", classes, input_size or 224, init="random")
        return Classifier(torchvision.models.resnet18(weights=None, num_classes=n), spec), spec
    if backbone in VIT_SIZES:
        from transformers import ViTConfig, ViTForImageClassification

        size = input_size or DEFAULT_SIZE[backbone]
        if size % 16:
            raise BadInputError(f"--image-size: {size} is not a multiple of the ViT patch size 16")
        config = ViTConfig(image_size=size, patch_size=16, **VIT_SIZES[backbone],
                           id2label=dict(enumerate(classes)), label2id={c: i for i, c in enumerate(classes)})
        spec = ClassifierSpec(backbone, "vit", "transformer", classes, size, (0.5,) * 3, (0.5,) * 3,
                              init="random", hf_config=config.to_dict())
        return Classifier(ViTForImageClassification(config), spec), spec
    return _hub_vit(backbone, classes, input_size)


def _mobilenet(num_classes: int, pretrained: bool):
    import torchvision

    net = torchvision.models.mobilenet_v2(weights=None)
    if pretrained:
        from lrihar.models.encoders.mobilenet import packaged_weights

        weights = packaged_weights()
        try:
            net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        except (OSError, RuntimeError) as exc:
            raise ModelLoadError(f"{weights}: cannot load MobileNetV2 weights ({exc})") from None
    net.classifier[1] = torch.nn.Linear(net.last_channel, num_classes)
    return net


def _hub_vit(source: str, classes: list[str], input_size: int | None) -> tuple[Classifier, ClassifierSpec]:
    from transformers import ViTForImageClassification, ViTImageProcessor

    from lrihar.models.hf import load_pretrained

    labels = dict(enumerate(classes))
    # id2label alone sets the number of labels (num_labels beside it is refused as a conflict)
    net = load_pretrained(ViTForImageClassification, source, id2label=labels,
                          label2id={c: i for i, c in labels.items()}, ignore_mismatched_sizes=True)
    if net.config.model_type != "vit":
        raise ModelLoadError(f"--backbone {source}: a {net.config.model_type!r} model, not a ViT")
    try:
        proc = load_pretrained(ViTImageProcessor, source)
        mean, std = tuple(proc.image_mean), tuple(proc.image_std)
    except ModelLoadError:  # no preprocessor_config.json: transformers' ViT default
        mean, std = (0.5,) * 3, (0.5,) * 3
    native = int(net.config.image_size)
    size = input_size or native
    patch = int(net.config.patch_size)
    if size % patch:
        raise BadInputError(f"--image-size: {size} is not a multiple of the ViT patch size {patch}")
    spec = ClassifierSpec(source, "vit", "transformer", classes, size, mean, std, init=f"pretrained {source}",
                          hf_config=net.config.to_dict(), interpolate_pos=size != native)
    return Classifier(net, spec), spec


def rebuild(spec: ClassifierSpec) -> Classifier:
    """The network ``spec`` describes, with no weights loaded (they come from the checkpoint)."""
    n = len(spec.classes)
    if spec.arch == "mobilenet-v2":
        return Classifier(_mobilenet(n, pretrained=False), spec)
    if spec.arch == "resnet18":
        import torchvision

        return Classifier(torchvision.models.resnet18(weights=None, num_classes=n), spec)
    if spec.arch == "vit":
        from transformers import ViTConfig, ViTForImageClassification

        return Classifier(ViTForImageClassification(ViTConfig.from_dict(spec.hf_config or {})), spec)
    raise BadInputError(f"classifier architecture {spec.arch!r} is unknown to this lrihar")


def load_weights(model: Classifier, path: Path) -> Classifier:
    """Load a ``.safetensors`` state dict into ``model``; a damaged file is bad input."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
        model.net.load_state_dict(state)
    except FileNotFoundError:
        raise BadInputError(f"{path}: missing; the run has no checkpoint yet") from None
    except (SafetensorError, RuntimeError, OSError, ValueError) as exc:
        raise BadInputError(f"{path}: damaged or not this model's checkpoint "
                            f"({str(exc).splitlines()[0][:200]}); retrain the run or restore the file"
                            ) from None
    return model.eval()


def load_classifier(folder: Path, weights: str = "best.safetensors") -> Classifier:
    """A trained run's classifier: ``classifier.json`` + its weights file, in eval mode."""
    spec = ClassifierSpec.load(folder)
    return load_weights(rebuild(spec), Path(folder) / weights)
