"""Loading Hugging Face models by hub id or local directory, offline-aware."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lrihar.errors import ModelLoadError


def load_pretrained(loader: Any, model: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained(model)`` with an actionable error when it cannot be found.

    A local directory never touches the network; a hub id is looked up first in
    ``$LRIHAR_MODELS_DIR`` (models packed with ``lrihar models pack``), then in the Hugging Face
    cache, and only reaches the hub when ``HF_HUB_OFFLINE`` is not set.
    """
    from lrihar.models.portable import packed_path

    packed = packed_path(model)
    local = packed if packed is not None else Path(model).expanduser()
    offline = local.is_dir() or os.environ.get("HF_HUB_OFFLINE") == "1"
    try:
        return loader.from_pretrained(str(local) if local.is_dir() else model,
                                      local_files_only=offline, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"cannot load model {model!r} with {getattr(loader, '__name__', loader)}: "
            f"{str(exc).splitlines()[0]}. Pass a local directory saved with save_pretrained(), "
            "or carry it from a connected machine with `lrihar models pack` and LRIHAR_MODELS_DIR."
        ) from None
