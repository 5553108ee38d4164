"""``lrihar classify`` over the posts of a project: one run per group of posts that classify alike.

Posts with their own classes, templates or λ (``lines[].posts[]``) are labelled each with its
own template bank, only on their own crops. Where every post classifies alike (every one-line
project file) one run labels every crop, frames at no post included, as it always has.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lrihar.classify.pipeline import ClassifySummary, classify
from lrihar.config import with_overrides
from lrihar.lines import project_layout, unplaced_detections
from lrihar.naming import safe_file_name
from lrihar.project import Project


def classify_posts(project: Project, line: str | None = None, post: str | None = None, *,
                   overrides: dict | None = None, templates: Path | None = None,
                   sheets_dir: Path | None = None, show_progress: bool = False,
                   run: Callable[..., ClassifySummary] | None = None) -> tuple[list[ClassifySummary], int]:
    """Classify the crops ``--line`` / ``--post`` select (all when neither is given), each post
    with its own classes, templates and λ; ``overrides`` (``classify`` fields) and ``templates``
    apply to every post; ``run(project, config=..., **kwargs)`` labels one group (default
    :func:`~lrihar.classify.pipeline.classify`, in this process; the CLI passes the Ray engine's).

    Returns:
        The summaries, one per run, and how many crops were left out because their frames are at
        no post of the project file (only when posts classify differently and no filter is given).

    Raises:
        BadInputError: an unknown line or post (the valid ones named), or a post's templates are
            missing.
    """
    run = run or classify
    layout = project_layout(project.config)
    selected = layout.select(line, post)
    overrides = overrides or {}
    if selected is None and layout.uniform:  # today's single run: every crop, whatever its post
        cfg = with_overrides(project.config, "classify", **overrides)
        return [run(project, config=cfg, templates=templates, sheets_dir=sheets_dir,
                    show_progress=show_progress)], 0
    posts = selected if selected is not None else list(layout.posts)
    groups = layout.groups(posts)
    summaries = []
    for group in groups:
        cfg = with_overrides(layout.config_for(group[0]), "classify", **overrides)
        sheets = sheets_dir / safe_file_name(group[0]) if sheets_dir is not None and len(groups) > 1 \
            else sheets_dir
        summaries.append(run(project, config=cfg, templates=templates, sheets_dir=sheets,
                             show_progress=show_progress, posts=group))
    left_out = unplaced_detections(project.store, layout) if selected is None else 0
    return summaries, left_out
