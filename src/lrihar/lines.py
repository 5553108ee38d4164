"""Lines and posts of a project: which posts there are, which line each belongs to, and each
post's own settings (classes, templates, λ, procedure, sources, cameras).

A project file either lists ``lines:`` (each with its posts and their settings) or, as before,
one ``line`` with its ``posts`` and the post-keyed sections ``procedures`` and ``run.sources``.
Both are read here into one answer, so commands never look at the two shapes themselves.

Example:
    >>> from lrihar.lines import project_layout
    >>> layout = project_layout(cfg)  # doctest: +SKIP
    >>> layout.pairs()  # doctest: +SKIP
    [('assembly', 'post-01'), ('assembly', 'post-02'), ('packing', 'post-03')]
    >>> layout.post("post-03").lambda_  # doctest: +SKIP
    0.55
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lrihar.classes import template_subfolders
from lrihar.config import ActionClass, ProcedureConfig, ProjectConfig
from lrihar.errors import BadInputError

NO_LINE = "(no line)"
"""The line of stored frames whose post is none of the project file's, in a project of several
lines (in a one-line project they are that line's)."""


@dataclass(frozen=True)
class Post:
    """One post as every command sees it: its own settings, else the project-wide ones."""

    name: str
    line: str
    classes: tuple[ActionClass, ...]
    templates: Path | None
    lambda_: float
    procedure: ProcedureConfig | None
    sources: tuple[str, ...]
    cameras: tuple[str, ...]

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]


class Layout:
    """The lines and posts of one project file (see :func:`project_layout`)."""

    def __init__(self, cfg: ProjectConfig) -> None:
        self.config = cfg
        self.posts: dict[str, Post] = {}
        self.lines: dict[str, list[str]] = {}
        if cfg.lines:
            for line in cfg.lines:
                self.lines[line.name] = [p.name for p in line.posts]
                for p in line.posts:
                    self.posts[p.name] = Post(
                        p.name, line.name, tuple(cfg.classes if p.classes is None else p.classes),
                        p.templates or cfg.classify.templates,
                        cfg.classify.lambda_ if p.lambda_ is None else p.lambda_,
                        p.procedure, tuple(p.sources), tuple(p.cameras))
        else:  # the one-line shape: `line`, `posts`, `procedures`, `run.sources`
            self.lines[cfg.line] = list(cfg.posts)
            for name in cfg.posts:
                self.posts[name] = Post(name, cfg.line, tuple(cfg.classes), cfg.classify.templates,
                                        cfg.classify.lambda_, cfg.procedures.get(name), (),
                                        tuple(cfg.run.sources.get(name, ())))

    def pairs(self) -> list[tuple[str, str]]:
        """Every (line, post), in the project file's order."""
        return [(line, post) for line, posts in self.lines.items() for post in posts]

    def post(self, name: str) -> Post:
        """The post called ``name``; :class:`BadInputError` naming the valid ones otherwise."""
        if name not in self.posts:
            raise BadInputError(f"--post {name}: not a post of this project; posts: "
                                f"{', '.join(self.posts)} (see `lines` or `posts` in lrihar.yaml)")
        return self.posts[name]

    def line_of(self, post: str | None) -> str:
        """The line of ``post``; a post the project file does not name (or none) is on the only
        line when there is one, else on :data:`NO_LINE`."""
        if post in self.posts:
            return self.posts[post].line
        return next(iter(self.lines)) if len(self.lines) == 1 else NO_LINE

    def select(self, line: str | None = None, post: str | None = None) -> list[str] | None:
        """The posts ``--line`` / ``--post`` pick, in order; None when neither is given (all
        stored data, including frames at no post).

        Raises:
            BadInputError: an unknown line or post (the valid ones are named), or a post that
                is not on the line given.
        """
        if line is not None and line not in self.lines:
            raise BadInputError(f"--line {line}: not a line of this project; lines: {', '.join(self.lines)}")
        if post is not None:
            found = self.post(post)
            if line is not None and found.line != line:
                raise BadInputError(f"--post {post} is on line {found.line}, not on --line {line} "
                                    f"(whose posts are {', '.join(self.lines[line])})")
            return [post]
        return None if line is None else list(self.lines[line])

    def cameras(self, posts: list[str] | None = None) -> list[tuple[str, list[str]]]:
        """(post, what ``lrihar run`` reads there) for ``posts`` (None: all) that have any, in the
        project file's order (``run.sources``'s in the one-line shape)."""
        order = self.posts if self.config.lines else self.config.run.sources
        return [(p, list(self.posts[p].cameras)) for p in order
                if (posts is None or p in posts) and p in self.posts and self.posts[p].cameras]

    def config_for(self, post: str) -> ProjectConfig:
        """The project config as ``post`` sees it, in the one-line shape: its line and itself as
        ``line`` and ``posts``, its classes, templates root and λ in the project-wide places
        (``classes``, ``classify.templates``, ``classify.lambda``), its procedure and cameras
        under ``procedures`` and ``run.sources``; so classify and calibrate need not know posts."""
        p = self.post(post)
        cfg = self.config
        classify = cfg.classify.model_copy(update={"templates": p.templates, "lambda_": p.lambda_})
        run = cfg.run.model_copy(update={"sources": {p.name: list(p.cameras)} if p.cameras else {}})
        return cfg.model_copy(update={
            "lines": [], "line": p.line, "posts": [p.name], "classes": list(p.classes), "classify": classify,
            "procedures": {p.name: p.procedure} if p.procedure is not None else {}, "run": run})

    def groups(self, posts: list[str]) -> list[list[str]]:
        """``posts`` in groups that classify alike (same classes, templates and λ), in order of
        first appearance: one template bank or classifier run serves each group."""
        groups: dict[tuple, list[str]] = {}
        for p in posts:
            post = self.post(p)
            groups.setdefault((post.classes, post.templates, post.lambda_), []).append(p)
        return list(groups.values())

    @property
    def uniform(self) -> bool:
        """True when every post classifies with the project-wide settings (every one-line file)."""
        cfg = self.config
        wide = (tuple(cfg.classes), cfg.classify.templates, cfg.classify.lambda_)
        return all((p.classes, p.templates, p.lambda_) == wide for p in self.posts.values())

    def classes(self, posts: list[str] | None = None) -> list[str]:
        """The classes of ``posts`` (None: the project-wide ones, then every post's), in order of
        first appearance: each post's named classes, else the sub-folders of its templates root
        (none while that folder does not exist yet).

        Raises:
            BadInputError: an unknown post, or a template sub-folder's name is not a valid class name.
        """
        cfg = self.config
        names = [c.name for c in cfg.classes] if posts is None else []
        roots = [cfg.classify.templates] if posts is None and not names else []
        for post in [self.post(p) for p in (posts if posts is not None else self.posts)]:
            if post.classes:
                names += [n for n in post.class_names if n not in names]
            else:
                roots.append(post.templates)
        for root in dict.fromkeys(roots):  # posts often share one root: read it once
            if root is not None and Path(root).is_dir():
                names += [n for n in template_subfolders(root) if n not in names]
        return names


def class_folders(cfg: ProjectConfig, templates_root: Path | None = None) -> dict[str, Path]:
    """Class name -> template folder.

    The classes are those the project file names, else the sub-folders of the templates root
    (``templates_root`` from the command line, else ``classify.templates``), named as the
    folders. With a root, a class's folder is ``ROOT/<name>``; without one, its own
    ``classes[].templates``.

    Raises:
        BadInputError: no classes, a class with no folder, a sub-folder naming no class of the
            project or not a valid class name.
    """
    root = templates_root or cfg.classify.templates
    names = [c.name for c in cfg.classes]
    if root is not None:
        root = Path(root)
        subdirs = template_subfolders(root)
        if not names:  # no classes in the project file: the sub-folders are the classes
            names = list(subdirs)
        unknown = sorted(set(subdirs) - set(names))
        if unknown:
            raise BadInputError(f"{root}: folder(s) {', '.join(unknown)} name no class of the project "
                                f"(classes: {', '.join(names)}); add them to `classes` or remove them")
        folders = {n: root / n for n in names}
    else:
        folders = {c.name: c.templates for c in cfg.classes if c.templates is not None}
        missing = [c.name for c in cfg.classes if c.templates is None]
        if missing:
            raise BadInputError(f"classes {', '.join(missing)}: no `templates` folder given in the "
                                "project file (set `classify.templates`, or pass --templates DIR)")
    if not folders:
        if root is not None:
            raise BadInputError(f"{root}: no class folders: make one sub-folder of a few template crops "
                                "per action class (its name is the class name), or list the classes "
                                "under `classes` in the project file")
        raise BadInputError("no action classes: set `classify.templates` in the project file (or pass "
                            "--templates DIR) to a folder with one sub-folder of template crops per "
                            "class, or list them under `classes`")
    return folders


def project_layout(cfg: ProjectConfig) -> Layout:
    """The lines and posts of ``cfg`` (both project-file shapes)."""
    return Layout(cfg)


def source_uris_at(store, posts: list[str]) -> set[str]:
    """The stored sources annotated at one of ``posts``."""
    marks = ", ".join("?" * len(posts))
    return {uri for (uri,) in store.db.execute(f"SELECT uri FROM sources WHERE post IN ({marks})", posts)}


def detection_ids_at(store, posts: list[str] | None) -> set[int] | None:
    """Ids of the boxes (not marked wrong) on frames of ``posts``; None for no filter (all)."""
    if posts is None:
        return None
    marks = ", ".join("?" * len(posts))
    return {i for (i,) in store.db.execute(
        "SELECT d.id FROM detections d JOIN sources s ON s.id = d.source_id"
        f" WHERE d.rejected = 0 AND s.post IN ({marks})", posts)}


def unplaced_detections(store, layout: Layout) -> int:
    """Boxes (not marked wrong) on frames whose post is none of the project file's posts."""
    known = list(layout.posts)
    marks = ", ".join("?" * len(known))
    return store.db.execute("SELECT COUNT(*) FROM detections d JOIN sources s ON s.id = d.source_id"
                            f" WHERE d.rejected = 0 AND (s.post IS NULL OR s.post NOT IN ({marks}))",
                            known).fetchone()[0]


def annotate_inputs(layout: Layout, uris: list[str] | None, line: str | None = None,
                    post: str | None = None) -> list[tuple[list[str] | None, str | None]]:
    """What ``lrihar annotate`` reads, as (inputs, post) jobs; inputs None: the project file's
    top-level ``sources``.

    Inputs given on the command line film one post: ``--post``, or the only post of ``--line``.
    With none given, each selected post's own ``sources`` (``lines[].posts[].sources``) are
    read at that post, and with no filter the top-level ``sources`` too, at no post; a project
    file whose posts list no sources reads its top-level ``sources`` as before (at ``--post``).

    Raises:
        BadInputError: an unknown line or post, or a line of several posts without ``--post``
            where the inputs must film one post.
    """
    selected = layout.select(line, post)

    def one_post() -> str | None:
        if selected is not None and len(selected) > 1:
            raise BadInputError(f"--line {line} has posts {', '.join(selected)}: name the one these inputs "
                                "film with --post")
        return selected[0] if selected else None

    if uris:
        return [(list(uris), one_post())]
    chosen = selected if selected is not None else list(layout.posts)
    own = [(list(layout.posts[p].sources), p) for p in chosen if layout.posts[p].sources]
    if not any(p.sources for p in layout.posts.values()):
        return [(None, one_post())]
    if selected is None and layout.config.sources:
        own.insert(0, (None, None))
    if not own:
        raise BadInputError(f"no inputs for {', '.join(chosen)}: pass them (lrihar annotate VIDEOS... "
                            "--post POST) or list them under that post's `sources` in lrihar.yaml")
    return own
