"""Action classes: the NG verdict, the detector's class ``hand``, the class-list rules, the labels a
person may give a box and template folders per class.

``NG`` is the one rejection label of the whole package: what the template matcher calls a crop
that matches no class well enough, what a person picks for "not an action" and what a trained
classifier says below its confidence. It is never a class, so never a template folder.

``HAND`` is what a hand detector calls every box it finds, before (or without) an action class:
the one class of a hand detector set, and the label a person gives a box in a project that has
no action classes (:func:`box_labels`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lrihar.errors import BadInputError
from lrihar.naming import check_class_name

NG = "NG"
"""The rejection label: a crop that shows no known action."""

NG_INDEX = -1
"""The class index the matcher gives an NG crop (class indices are 0 and up)."""

HAND = "hand"
"""The detector's class name: a hand, whatever it does."""


def box_labels(classes: Sequence[str]) -> list[str]:
    """The labels a person may give a box (review page, tool exports and imports): the project's
    action classes and NG; in a project with no action classes, the detector's class (``hand``)
    and NG."""
    return [*dict.fromkeys(classes or [HAND]), NG]


def unlabelled_box_label(classes: Sequence[str]) -> str:
    """What a box with no label yet is called where a label must be shown (tool pre-annotations,
    the review page's default for a drawn box): NG (no action known yet) in a project with action
    classes, ``hand`` in one without."""
    return NG if classes else HAND


def class_list_problem(names: Sequence[str]) -> str | None:
    """Why ``names`` cannot be a project's class list (a name twice, or NG), or None."""
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        return f"class names must be unique; repeated: {', '.join(duplicates)}"
    if NG in names:
        return f"'{NG}' is reserved for the rejection class; rename that class"
    return None


def template_subfolders(root: Path) -> dict[str, Path]:
    """Class name -> folder, for every sub-folder of a templates root.

    Hidden folders (``.cache``, ``.ipynb_checkpoints``) are tools' clutter, not classes; every
    other sub-folder name may become a class name, so it must be a valid one.

    Raises:
        BadInputError: the root is missing, or a sub-folder's name is not a valid class name.
    """
    root = Path(root)
    if not root.is_dir():
        raise BadInputError(f"{root}: templates folder not found")
    subdirs = {check_class_name(p.name, f"{root}: template folder"): p
               for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")}
    if NG in subdirs:
        raise BadInputError(f"{subdirs[NG]}: '{NG}' is reserved for the rejection class; rename "
                            "that template folder")
    return subdirs
