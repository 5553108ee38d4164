"""The training loop shared by ``finetune`` and ``distill``: AdamW, cosine schedule with warm-up,
mixed precision, gradient accumulation, per-epoch validation, best checkpoint, exact resume.

Each epoch ends by writing, atomically (a temporary file renamed over the old one, so ``kill -9``
at any moment leaves the previous epoch's files whole):

- ``best.safetensors``: the plain network (LoRA merged in) of the best validation accuracy so far;
- ``last.pt``: model, optimizer, scheduler, grad-scaler and RNG state, the history and the best
  epoch, from which :func:`fit` continues with the next epoch;
- ``history.csv`` and ``curve.png`` (the paper's Fig. 9: losses and validation accuracy per epoch).

Mixed precision: bf16 autocast on CPUs with bf16 support (2.5-3× faster training steps on
AVX-512/AMX, shared/OFFLINE.md); on CUDA bf16 where supported, else fp16 with a grad scaler.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lrihar.errors import BadInputError
from lrihar.progress import progress_bar

BEST = "best.safetensors"
LAST = "last.pt"
HISTORY = "history.csv"
CURVE = "curve.png"
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


@dataclass(frozen=True)
class LoopSettings:
    """Optimisation settings.

    Attributes:
        epochs: passes over the training crops.
        lr: peak learning rate (AdamW), reached after the warm-up, then cosine to 0.
        weight_decay: AdamW weight decay.
        warmup: warm-up length in epochs (fractions allowed).
        batch: crops per optimizer step (the paper's batch size).
        micro_batch: crops per forward pass; ``batch / micro_batch`` passes are accumulated.
        device: ``auto`` (CUDA if visible), ``cpu``, ``cuda``, ``cuda:N``.
        precision: ``auto`` (bf16 where supported), ``bf16``, ``fp16`` (CUDA), ``fp32``.
        seed: seeds initialisation-free randomness (dropout, sampling, augmentation).
        patience: stop after this many epochs without a better validation accuracy (None: never).
        clip_grad: gradient-norm clip (None: off).
    """

    epochs: int = 15
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: float = 1.0
    batch: int = 64
    micro_batch: int = 32
    device: str = "auto"
    precision: str = "auto"
    seed: int = 0
    patience: int | None = None
    clip_grad: float | None = 1.0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch", "micro_batch"):
            if getattr(self, name) < 1:
                raise BadInputError(f"--{name.replace('_', '-')}: must be at least 1, "
                                    f"not {getattr(self, name)}")
        if not self.lr > 0:
            raise BadInputError(f"--lr: must be positive, not {self.lr}")
        if self.precision not in PRECISIONS:
            raise BadInputError(f"--precision: {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.warmup < 0:
            raise BadInputError(f"--warmup: must not be negative, not {self.warmup}")

    @property
    def accumulate(self) -> int:
        return max(1, math.ceil(self.batch / self.micro_batch))


@dataclass
class FitResult:
    """What the loop did (also kept in ``last.pt``)."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_acc: float = -1.0
    epochs_done: int = 0
    step: int = 0
    stopped_early: bool = False
    device: str = "cpu"
    precision: str = "fp32"

    @property
    def seconds(self) -> float:
        return round(sum(r["seconds"] for r in self.history), 2)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"seconds": self.seconds}


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when visible, else CPU; a CUDA device that is not there is bad input."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(int(name) if name.isdigit() else name)
    except RuntimeError:
        raise BadInputError(f"--device {name}: not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BadInputError(f"--device {name}: no CUDA GPU is visible here; use --device cpu or auto")
    return device


def _cpu_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision actually used on ``device`` (``auto`` resolved; fp16 is CUDA only)."""
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if _cpu_bf16() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise BadInputError("--precision fp16: only on CUDA; use bf16 or fp32 on a CPU")
    return precision


def autocast(device: torch.device, precision: str):
    """The autocast context for a forward pass at ``precision``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def _atomic_save(write: Callable[[Path], None], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_best(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    _atomic_save(lambda p: save_file(state, str(p), metadata=metadata), path)


def load_last(path: Path) -> dict[str, Any]:
    """The resume state; a damaged file is bad input (nothing else in the run is touched)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BadInputError(f"{path}: missing; nothing to resume (start a new run)") from None
    except Exception as exc:  # torch raises RuntimeError, pickle/zip errors, EOFError on damage
        raise BadInputError(f"{path}: damaged resume state ({type(exc).__name__}: {str(exc)[:160]}); "
                            f"start a new run (the best checkpoint {BEST} beside it is a separate file)"
                            ) from None


@torch.no_grad()
def evaluate(model: torch.nn.Module, pixels: np.ndarray, labels: np.ndarray, device: torch.device,
             precision: str, batch: int = 64) -> tuple[float, float, np.ndarray]:
    """(mean cross-entropy, accuracy, predictions) of ``model`` on preprocessed ``pixels``."""
    model.eval()
    losses, preds = [], []
    for i in range(0, len(pixels), batch):
        x = torch.from_numpy(pixels[i:i + batch]).to(device)
        with autocast(device, precision):
            logits = model(x).float()
        y = torch.from_numpy(labels[i:i + batch]).to(device)
        losses.append(float(torch.nn.functional.cross_entropy(logits, y, reduction="sum")))
        preds.append(logits.argmax(-1).cpu().numpy())
    pred = np.concatenate(preds) if preds else np.zeros(0, np.int64)
    n = max(1, len(labels))
    return sum(losses) / n, float((pred == labels).mean()) if len(labels) else 0.0, pred


def write_history(run_dir: Path, history: list[dict[str, float]]) -> None:
    if not history:
        return

    def write(p: Path) -> None:
        with p.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(history[0]))
            w.writeheader()
            w.writerows(history)

    _atomic_save(write, run_dir / HISTORY)


def plot_curve(run_dir: Path, history: list[dict[str, float]], title: str) -> Path:
    """Fig. 9: training and validation loss (left axis) and validation accuracy (right) per epoch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(6, 3.6), dpi=100)  # no pyplot: no global state, cheap enough per epoch
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(epochs, [r["train_loss"] for r in history], "o-", label="train loss", color="tab:blue")
    ax.plot(epochs, [r["val_loss"] for r in history], "s--", label="val loss", color="tab:orange")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("loss")
    acc_ax = ax.twinx()
    acc_ax.plot(epochs, [100 * r["val_acc"] for r in history], "^-", label="val accuracy", color="tab:green")
    acc_ax.set_ylabel("val accuracy (%)")
    acc_ax.set_ylim(0, 100)
    lines = ax.get_legend_handles_labels()
    acc_lines = acc_ax.get_legend_handles_labels()
    ax.legend(lines[0] + acc_lines[0], lines[1] + acc_lines[1], loc="center right", fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = run_dir / CURVE
    _atomic_save(lambda p: fig.savefig(p, format="png"), path)
    return path


def fit(model: torch.nn.Module, task: Callable[[dict], Any], loader_for: Callable[[int], Iterable[dict]],
        micro_batches: int, val: tuple[np.ndarray, np.ndarray], settings: LoopSettings, run_dir: Path,
        best_state: Callable[[], dict[str, torch.Tensor]], resume: bool = False, title: str = "training",
        show_progress: bool = True) -> FitResult:
    """Train ``model`` through ``task`` for ``settings.epochs`` epochs (or continue from ``last.pt``).

    Args:
        model: the module whose trainable parameters are optimised.
        task: batch -> object with ``.loss`` (see :mod:`lrihar.train.tasks`).
        loader_for: epoch -> iterable of micro-batches (dicts of tensors, ``pixels`` and ``label``
            at least); it must depend on the epoch only, so a resumed epoch replays exactly.
        micro_batches: micro-batches per epoch (for the schedule and the progress bar).
        val: preprocessed validation pixels (N, 3, H, W) and labels (N,).
        settings: optimisation settings.
        run_dir: where the checkpoints, history and curve go.
        best_state: returns the state dict to save as the best checkpoint (LoRA merged).
        resume: continue from ``run_dir/last.pt``.
        title: the curve's title.
        show_progress: draw a progress bar on stderr.
    """
    from transformers import get_cosine_schedule_with_warmup

    device = resolve_device(settings.device)
    precision = resolve_precision(settings.precision, device)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = math.ceil(micro_batches / settings.accumulate)
    total = steps_per_epoch * settings.epochs
    scheduler = get_cosine_schedule_with_warmup(optimizer, round(settings.warmup * steps_per_epoch), total)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    result = FitResult(device=str(device), precision=precision)
    if resume:
        state = load_last(run_dir / LAST)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"], device)
        result = FitResult(**{k: state["result"][k] for k in ("history", "best_epoch", "best_val_acc",
                                                               "epochs_done", "step", "stopped_early")},
                           device=str(device), precision=precision)
    else:
        torch.manual_seed(settings.seed)
    val_pixels, val_labels = val
    accumulate = settings.accumulate
    with progress_bar(title, unit="batches", enabled=show_progress,
                      total=micro_batches * settings.epochs) as bar:
        done = micro_batches * result.epochs_done
        bar.update(done)
        for epoch in range(result.epochs_done, settings.epochs):
            if result.stopped_early:
                break
            started = time.perf_counter()
            model.train()
            loss_sum, seen, micro = 0.0, 0, 0
            optimizer.zero_grad(set_to_none=True)
            for batch in loader_for(epoch):
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                with autocast(device, precision):
                    out = task(batch)
                n = len(batch["label"])
                scaler.scale(out.loss / accumulate).backward()
                loss_sum += float(out.loss.detach()) * n
                seen += n
                micro += 1
                if micro % accumulate == 0 or micro == micro_batches:
                    _step(optimizer, scheduler, scaler, params, settings.clip_grad)
                    result.step += 1
                done += 1
                bar.update(done, epoch=f"{epoch + 1}/{settings.epochs}",
                           loss=f"{loss_sum / max(seen, 1):.3f}")
            if micro % accumulate:  # a loader shorter than announced: flush the last partial step
                _step(optimizer, scheduler, scaler, params, settings.clip_grad)
                result.step += 1
            val_loss, val_acc, _ = evaluate(model, val_pixels, val_labels, device, precision)
            row = {"epoch": epoch + 1, "train_loss": round(loss_sum / max(seen, 1), 5),
                   "val_loss": round(val_loss, 5), "val_acc": round(val_acc, 5),
                   "lr": float(f"{scheduler.get_last_lr()[0]:.3e}"), "samples": seen,
                   "seconds": round(time.perf_counter() - started, 2)}
            result.history.append(row)
            result.epochs_done = epoch + 1
            if val_acc > result.best_val_acc:
                result.best_val_acc, result.best_epoch = val_acc, epoch + 1
                save_best(best_state(), run_dir / BEST,
                          {"epoch": str(epoch + 1), "val_acc": f"{val_acc:.5f}"})
            elif settings.patience is not None and epoch + 1 - result.best_epoch >= settings.patience:
                result.stopped_early = True
            _save_last(run_dir, model, optimizer, scheduler, scaler, result, device)
            write_history(run_dir, result.history)
            plot_curve(run_dir, result.history, title)
            bar.update(done, epoch=f"{epoch + 1}/{settings.epochs}", loss=f"{row['train_loss']:.3f}",
                       val_acc=f"{val_acc:.3f}")
    return result


def _step(optimizer, scheduler, scaler, params, clip: float | None) -> None:
    if clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, clip)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def _save_last(run_dir: Path, model, optimizer, scheduler, scaler, result: FitResult,
               device: torch.device) -> None:
    rng = {"torch": torch.get_rng_state(),
           "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
    state = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "scaler": scaler.state_dict(), "rng": rng,
             "result": {k: v for k, v in asdict(result).items() if k not in ("device", "precision")}}
    _atomic_save(lambda p: torch.save(state, p), run_dir / LAST)
