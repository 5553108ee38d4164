"""Files on disk: paths built from user text stay inside their folder; file digests."""

from __future__ import annotations

import hashlib
from pathlib import Path

from lrihar.errors import BadInputError


def inside(root: str | Path, path: str | Path) -> Path:
    """``path`` if it resolves (symlinks followed) to ``root`` or below, else :class:`BadInputError`.

    Call it on every path a command writes that was built from names it did not make up
    (class names, file names in a tool's export), so ``../..`` or an absolute name can never
    send a file elsewhere.

    Example:
        >>> inside("/data/out", "/data/out/train/a.jpg")
        PosixPath('/data/out/train/a.jpg')
    """
    path = Path(path)
    if not path.resolve().is_relative_to(Path(root).resolve()):
        raise BadInputError(f"{path}: refusing to write outside {root}; a class or file name in the "
                            "project points elsewhere (rename it)")
    return path


def sha256_of(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
