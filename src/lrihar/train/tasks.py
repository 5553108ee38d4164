"""Training objectives as task objects (timm's ``task`` style), so the loop stays generic.

A task takes a batch (``pixels``, ``label``: class index or ``-1`` for an unlabelled crop,
optionally ``teacher``: cached teacher logits) and returns the loss and the model's logits.

Distillation loss (Hinton et al.; timm's ``DistillationTask``)::

    loss = α · CE(student, labels) + (1 - α) · T² · KL(softmax(teacher / T_t) ‖ softmax(student / T))

The CE term is averaged over the labelled crops of the batch only; the KL term over every crop,
so unlabelled crops teach through the teacher's soft labels. ``T_t`` (the teacher's
temperature) is ``T`` unless given: the paper sharpens its teacher with 0.07.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lrihar.errors import BadInputError


@dataclass
class TaskOutput:
    loss: torch.Tensor
    logits: torch.Tensor


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
            alpha: float, temperature: float, teacher_temperature: float | None = None) -> torch.Tensor:
    """α·CE(labelled) + (1-α)·T²·KL(teacher ‖ student) at temperature T (see the module docstring).

    Example:
        >>> s, t = torch.tensor([[1.0, 0.0, -1.0]]), torch.tensor([[0.0, 2.0, 0.0]])
        >>> round(float(kd_loss(s, t, torch.tensor([0]), alpha=1.0, temperature=2.0)), 4)
        0.4076
    """
    s = student_logits.float()
    t_temp = teacher_temperature or temperature
    kl = F.kl_div(F.log_softmax(s / temperature, dim=-1), F.softmax(teacher_logits.float() / t_temp, dim=-1),
                  reduction="batchmean") * temperature**2
    labelled = labels >= 0
    ce = F.cross_entropy(s[labelled], labels[labelled]) if bool(labelled.any()) else s.sum() * 0.0
    return alpha * ce + (1 - alpha) * kl


class ClassificationTask:
    """Cross-entropy on labelled crops (the teacher's and the no-KD baselines' objective)."""

    def __init__(self, model: torch.nn.Module, label_smoothing: float = 0.0) -> None:
        self.model = model
        self.label_smoothing = label_smoothing

    def __call__(self, batch: dict) -> TaskOutput:
        logits = self.model(batch["pixels"])
        loss = F.cross_entropy(logits.float(), batch["label"], label_smoothing=self.label_smoothing,
                               ignore_index=-1)
        return TaskOutput(loss, logits)


class DistillationTask:
    """The student learns from labels and from cached teacher logits (``batch["teacher"]``).

    Args:
        student: the model being trained.
        alpha: weight of the label term (1: no distillation, 0: teacher only).
        temperature: T, softening both distributions in the KL term.
        teacher_temperature: T_t for the teacher's distribution (default T).
    """

    def __init__(self, student: torch.nn.Module, alpha: float = 0.5, temperature: float = 2.0,
                 teacher_temperature: float | None = None) -> None:
        if not 0 <= alpha <= 1:
            raise BadInputError(f"--alpha: must lie in [0, 1], not {alpha}")
        if temperature <= 0 or (teacher_temperature is not None and teacher_temperature <= 0):
            raise BadInputError("--temperature / --teacher-temperature: must be positive")
        self.model = student
        self.alpha, self.temperature, self.teacher_temperature = alpha, temperature, teacher_temperature

    def __call__(self, batch: dict) -> TaskOutput:
        logits = self.model(batch["pixels"])
        loss = kd_loss(logits, batch["teacher"], batch["label"], self.alpha, self.temperature,
                       self.teacher_temperature)
        return TaskOutput(loss, logits)
