"""Names from user text: safe file names, and the rules a class name must follow."""

from __future__ import annotations

import hashlib
import unicodedata

MAX_NAME = 80
"""Longest file-name stem :func:`safe_file_name` returns (file systems allow 255 bytes)."""

MAX_CLASS_NAME = 64
"""Longest class name :func:`check_class_name` accepts."""


def safe_file_name(text: str, max_len: int = MAX_NAME) -> str:
    """``text`` with every character but ASCII letters, digits, ``-``, ``_`` and ``.`` made ``_``.

    A leading dot becomes ``_`` (no hidden files, no ``..``); a name longer than ``max_len``
    is cut and ends in a short hash of the whole text, so distinct long names stay distinct.

    Example:
        >>> safe_file_name("../../x y")
        '_._.._x_y'
    """
    name = "".join(c if (c.isascii() and c.isalnum()) or c in "-_." else "_" for c in text)
    if name.startswith("."):
        name = "_" + name[1:]
    if not name:
        name = "_"
    if len(name) > max_len:
        digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        name = f"{name[: max_len - 9]}-{digest}"
    return name


def class_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a class name, or None when it can.

    A class name is shown in the review page, used as a folder name in exports and written
    into datasets: it must be a non-empty string of at most :data:`MAX_CLASS_NAME` characters
    with no control, format (bidi) or line-break characters, no path separator, not ``.`` or
    ``..`` and no leading dot or surrounding spaces.
    """
    if not isinstance(name, str) or not name:
        return "must be a non-empty text"
    if len(name) > MAX_CLASS_NAME:
        return f"is {len(name)} characters long; at most {MAX_CLASS_NAME} are allowed"
    if name != name.strip():
        return "starts or ends with a space"
    if name.startswith("."):
        return "starts with a dot"
    if "/" in name or "\\" in name:
        return "contains a path separator (/ or \\)"
    for ch in name:
        category = unicodedata.category(ch)
        if category in ("Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn"):
            return f"contains the control or invisible character U+{ord(ch):04X}"
    return None


def check_class_name(name: object, where: str) -> str:
    """``name`` if it is a valid class name, else :class:`~lrihar.errors.BadInputError` naming
    ``where`` (the file and field or record it came from) and the rule it breaks."""
    from lrihar.errors import BadInputError

    problem = class_name_problem(name)
    if problem is not None:
        raise BadInputError(f"{where}: class name {name!r} {problem}; rename it (letters, digits, "
                            "spaces, '-' and '_' are always fine)")
    return name  # type: ignore[return-value]
