"""A project: a folder holding the project file (``lrihar.yaml``) and the store (``lrihar.db``)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from lrihar.classes import HAND, NG
from lrihar.config import EXAMPLE_PROJECT, PROJECT_FILE, ProjectConfig, load_project_config
from lrihar.errors import BadInputError, LriharError
from lrihar.lines import project_layout
from lrihar.store import Store
from lrihar.versions import package_versions

STORE_FILE = "lrihar.db"
LOCK_FILE = "lrihar.lock"
TEMPLATES_DIR = "templates"  # classify.templates of the example project file
def project_classes(cfg: ProjectConfig, store: Store | None = None, every_label: bool = False) -> list[str]:
    """The project's action classes: the one answer the review page, export, evaluation and
    interchange share (through :attr:`lrihar.project.Project.classes`).

    The classes the project file names (project-wide, then each post's), else the sub-folders
    of ``classify.templates`` (and of posts' own templates roots; none while a folder does not
    exist yet), else the labels stored in ``store`` (a project classified with ``--templates``
    elsewhere), but ``hand``: what a person calls a box in a project without classes is no action
    class. With ``every_label``, any other label stored follows, sorted, so that evaluation
    and export leave no labelled box out. NG is never one.

    Raises:
        BadInputError: a template sub-folder's name is not a valid class name.
    """
    names = project_layout(cfg).classes()
    if store is not None and (every_label or not names):
        stored = store.db.execute("SELECT DISTINCT label FROM labels ORDER BY label")
        names += [n for (n,) in stored if n != NG and n not in names and (every_label or n != HAND)]
    return names


@dataclass
class Project:
    """An opened project folder. The store is opened on first use."""

    root: Path
    config: ProjectConfig = field(repr=False)

    @classmethod
    def open(cls, root: str | Path) -> Project:
        """Open a project folder created by :func:`init_project`."""
        root = Path(root).expanduser().resolve()
        if not root.is_dir():
            raise BadInputError(f"{root}: no such project folder; create one with `lrihar init {root}`")
        return cls(root, load_project_config(root / PROJECT_FILE))

    @cached_property
    def store(self) -> Store:
        return Store(self.root / STORE_FILE)

    @property
    def classes(self) -> list[str]:
        """The project's action classes, as every stage sees them: the project file's, else its
        template folders', else the labels stored (:func:`project_classes`)."""
        return project_classes(self.config, self.store)

    @contextmanager
    def lock(self, command: str) -> Iterator[None]:
        """Hold the project's lock while ``command`` runs, so that two such runs never write the
        same frames at once.

        The lock is an ``flock`` on ``lrihar.lock``: the kernel drops it when its process ends,
        however it ends, so a killed run never blocks the next one.

        Raises:
            LriharError: another process holds the lock (its pid is in the message).
        """
        import fcntl

        with open(self.root / LOCK_FILE, "a+", encoding="utf-8") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "pid unknown"
                raise LriharError(f"{self.root}: another {command} is running on this project "
                                  f"({holder}); wait for it or stop it") from None
            fh.truncate(0)  # "a+" appends, so the holder's line is written at offset 0
            fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
            fh.flush()
            try:
                yield
            finally:
                fh.truncate(0)
                fcntl.flock(fh, fcntl.LOCK_UN)


def init_project(root: str | Path, force: bool = False) -> Path:
    """Create ``root`` with a commented example project file, which declares no classes, and an
    empty ``templates/`` folder whose sub-folders will be the classes; returns the file's path."""
    root = Path(root).expanduser()
    path = root / PROJECT_FILE
    if path.exists() and not force:
        raise BadInputError(f"{path}: already exists; pass --force to overwrite it")
    (root / TEMPLATES_DIR).mkdir(parents=True, exist_ok=True)
    path.write_text(EXAMPLE_PROJECT, encoding="utf-8")
    return path


@contextmanager
def recorded_run(store: Store, command: str, config: dict,
                 close: Callable[[float], dict]) -> Iterator[int]:
    """Record a run in the store: config and versions up front, then, however it ends
    (done, failed, interrupted), its status and the summary ``close(seconds)`` returns.

    Example:
        >>> with recorded_run(store, "annotate", cfg, lambda s: {"seconds": s}) as run_id:  # doctest: +SKIP
        ...     work(run_id)
    """
    run_id = store.start_run(command, config, package_versions())
    started = time.perf_counter()
    with ending_status(lambda status: store.finish_run(
            run_id, status, close(round(time.perf_counter() - started, 3)))):
        yield run_id


@contextmanager
def ending_status(record: Callable[[str], None]) -> Iterator[None]:
    """Call ``record`` with how the block ended: ``done``, ``interrupted`` (Ctrl-C) or ``failed``
    (any other exception, which still propagates, as does Ctrl-C)."""
    status = "failed"
    try:
        yield
        status = "done"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        record(status)
