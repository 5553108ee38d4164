"""File names derived from user text (source paths, class names, model labels)."""

from __future__ import annotations


def safe_file_name(text: str) -> str:
    """``text`` with every character but letters, digits, ``-``, ``_`` and ``.`` made ``_``."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
