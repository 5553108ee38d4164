"""LoRA adapters through peft: the paper's teacher recipe (rank 16 on the attention projections,
new head trained jointly), and its merge back into plain weights for saving and export.

transformers 5 names a ViT's attention projections ``q_proj`` / ``k_proj`` / ``v_proj`` /
``o_proj`` (4.x called them ``query`` / ``value``: peft then finds nothing). On MobileNetV2 the
adapters go on every convolution with ``groups == 1`` (peft cannot adapt depthwise convolutions
at rank 16 and cannot merge them).

Example:
    >>> settings = LoraSettings(rank=16)
    >>> peft_net = apply_lora(model, settings)  # doctest: +SKIP
    >>> plain_state = merged_state(model)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from lrihar.errors import BadInputError, LriharError

VIT_TARGETS = ("q_proj", "v_proj")


@dataclass(frozen=True)
class LoraSettings:
    """LoRA hyper-parameters (paper: rank 16 on the query and value projections).

    Attributes:
        rank: adapter rank r.
        alpha: scaling numerator (the update is scaled by alpha / r).
        dropout: dropout on the adapter's input.
        targets: module names (or name suffixes) to adapt; None: ``q_proj``/``v_proj`` on a ViT,
            every non-depthwise convolution on a CNN. ``all-linear`` is passed on to peft.
    """

    rank: int = 16
    alpha: float = 16.0
    dropout: float = 0.1
    targets: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise BadInputError(f"--lora-rank: must be at least 1, not {self.rank}")
        if not 0 <= self.dropout < 1:
            raise BadInputError(f"--lora-dropout: must lie in [0, 1), not {self.dropout}")


def require_peft() -> None:
    import importlib.util

    if importlib.util.find_spec("peft") is None:
        raise LriharError("LoRA needs peft, which is not installed: pip install 'lrihar[train]'")


def default_targets(model) -> list[str]:
    """The modules LoRA adapts on ``model`` (a :class:`~lrihar.train.classifier_models.Classifier`)."""
    import torch

    if model.spec.arch == "vit":
        return list(VIT_TARGETS)
    head = tuple(model.head_names())
    return [name for name, m in model.net.named_modules()
            if isinstance(m, torch.nn.Conv2d) and m.groups == 1 and not name.startswith(head)]


def apply_lora(model, settings: LoraSettings):
    """Wrap ``model.net`` in a peft LoRA model in place: adapters on the targets, the new head
    fully trainable (``modules_to_save``), everything else frozen. Returns the peft model."""
    require_peft()
    from peft import LoraConfig, get_peft_model

    targets = list(settings.targets) if settings.targets else default_targets(model)
    target_arg = "all-linear" if targets == ["all-linear"] else targets
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=target_arg, modules_to_save=model.head_names())
    try:
        model.net = get_peft_model(model.net, config)
    except ValueError as exc:
        raise BadInputError(f"--lora-targets {','.join(targets)}: {str(exc).splitlines()[0][:300]} "
                            f"(a transformers 5 ViT names them {', '.join(VIT_TARGETS)}, k_proj, o_proj, "
                            "fc1, fc2)") from None
    return model.net


def is_lora(model) -> bool:
    return hasattr(model.net, "merge_and_unload")


def merged_state(model) -> dict:
    """The plain network's state dict, adapters merged in (the training model is left as it is)."""
    net = model.net
    if is_lora(model):
        net = copy.deepcopy(net).merge_and_unload()
    return {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}


def trainable_share(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
