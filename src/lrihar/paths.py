"""Writing only where asked: a path built from user text must stay inside its folder."""

from __future__ import annotations

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
