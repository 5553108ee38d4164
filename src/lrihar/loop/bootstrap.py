"""``lrihar bootstrap``: the detector correction loop of docs/detector.md as one resumable command.

Every step stays the library function its own command calls; this module runs them in turn,
round after round, and stops wherever a person is needed. One round r:

1. (round 1 only) a project with no stored frames: its ``sources`` annotated with its own
   detector (:func:`lrihar.annotate.pipeline.annotate`); otherwise the stored frames are used;
2. ``suggest``: K = budget × stored frames (not gated; rounded, at least 1) frames most worth a
   correction (``lrihar suggest``'s scoring and spread, :mod:`lrihar.review.suggest`, less the
   frames a person checked, "no hand" ones included; from round 2 compared with the previous
   round's detector, as ``lrihar suggest --compare yolo`` does), written to
   ``models/bootstrap/round-<r>/suggest.json``, then a stop: the person corrects them;
3. ``corrections``: a tool's file (``--corrections``) imported
   (:func:`lrihar.review.interchange.import_corrections`); the suggested frames a person checked
   counted (a person's box, move, relabel, rejection or "no hand" mark on the frame): none, a stop
   again; some, the loop goes on (a person may find that a frame needs nothing);
4. ``train``: :func:`lrihar.train.detector.train_detector`, settings from the project file's
   ``train_detector`` section (``epochs`` overridable), run ``bootstrap-<r>``, resumed if unfinished;
5. ``export``: :func:`lrihar.deploy.onnx_detector.export_detector` at the training size;
6. ``reannotate``: the stored frames annotated again with the new detector (``yolo`` backend,
   the re-annotation of ``lrihar annotate --detector yolo``: every box a person drew or fixed
   stays); the boxes it changed counted against a snapshot taken before;
7. ``heldout``: with a ground truth of frames not in the project (``--gt``), those frames
   annotated by the new detector in ``models/bootstrap/round-<r>/heldout`` (a project of its own)
   and scored (:func:`lrihar.evaluate.project_eval.detection_report`, eq. 3 / eq. 4 at T_IoU 0.3).

The state lives in ``PROJECT/models/bootstrap.json``, written atomically after every step, so a
run stopped anywhere (a stop for the person, Ctrl-C, ``kill -9``) continues where it was: a step
cut short is redone (suggest, export) or resumed (annotate, training: their own resume), and
never applied twice. An import is recorded before it starts with the store's last review action,
and afterwards: a rerun finds whether its one transaction was committed. A file whose SHA-256 was
imported already is not imported again.

Example:
    >>> result = run_bootstrap(Project.open("proj"), BootstrapOptions(rounds=2))  # doctest: +SKIP
    >>> result.stopped, result.message  # doctest: +SKIP
    ('corrections', 'round 1: correct these 20 frames ...')
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import shutil
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lrihar.artifacts import DETECTOR, RECORD, read_record, runs_root
from lrihar.errors import BadInputError, LriharError
from lrihar.paths import sha256_of
from lrihar.project import Project

STATE_FILE = "bootstrap.json"
"""The loop's state, under ``PROJECT/models/``."""
ROUNDS_FOLDER = "bootstrap"
"""``PROJECT/models/bootstrap/round-<r>/``: a round's suggest.json, box snapshot, held-out project."""
RUN_PREFIX = "bootstrap-"
STEPS = ("suggest", "corrections", "train", "export", "reannotate", "heldout", "done")
HELDOUT_IOU = 0.3
DEFAULT_ROUNDS = 2
DEFAULT_BUDGET = 0.2
CHANGE_IOU = 0.5
"""A box after re-annotation is the same as one before at this IoU (as ``suggest`` pairs boxes)."""
STATE_VERSION = 1
STEP_SHOWN = {"corrections": "to correct", "done": "done"}
TOOLS = ("labelstudio", "cvat", "coco")


@dataclass(frozen=True)
class BootstrapOptions:
    """One invocation's options; None: as the state recorded them (or the default).

    Attributes:
        rounds: rounds in all (default 2).
        budget: share of the stored frames suggested per round, in (0, 1] (default 0.2).
        corrections: a labelling tool's export with the corrections of the suggested frames.
        tool: its format: labelstudio, cvat or coco.
        empty_checked: cvat, coco: an image listed with no box is a frame a person checked.
        gt: held-out ground truth (COCO .json or YOLO folder) of frames not in the project.
        images: the folder the ground truth's file names are relative to.
        epochs: training epochs (default: the project file's, else 30).
        threshold: the trained detector's confidence for re-annotation, comparison and the
            held-out check (default: the project's own if its detector is ``yolo``, else the
            backend's 0.25).
        plots: let ultralytics draw its plots.
        show_progress: progress bars on stderr.
        project_arg: how the person named the project, for the commands the messages print.
    """

    rounds: int | None = None
    budget: float | None = None
    corrections: Path | None = None
    tool: str = "coco"
    empty_checked: bool = False
    gt: Path | None = None
    images: Path | None = None
    epochs: int | None = None
    threshold: float | None = None
    plots: bool = True
    show_progress: bool = False
    project_arg: str | None = None


@dataclass
class BootstrapResult:
    """Where an invocation stopped: ``stopped`` is ``corrections`` (frames to correct),
    ``unchecked`` (none of them checked yet) or ``done`` (every round done); ``message`` says
    what to do next; ``state`` is the loop's state as written."""

    stopped: str
    message: str
    state: dict[str, Any]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Stop:
    kind: str
    message: str
    advance: bool = False  # the step is done: the next invocation starts at the next one


def parse_budget(text: str) -> float:
    """``"20%"`` or ``"0.2"`` as 0.2; must lie in (0 %, 100 %].

    Raises:
        BadInputError: not a number, 0 or less, or above 100 % (names ``--budget``).
    """
    raw = str(text).strip()
    percent = raw.endswith("%")
    try:
        value = float(raw.rstrip("%").strip())
    except ValueError:
        value = float("nan")
    share = value / 100 if percent else value
    if not (0 < share <= 1):  # also false for nan
        raise BadInputError(f"--budget {text!r}: give the share of the stored frames to correct per "
                            "round, above 0 and at most 100 %, e.g. --budget 20% (or 0.2)")
    return share


def state_path(project: Project) -> Path:
    return project.root / "models" / STATE_FILE


def round_folder(project: Project, r: int) -> Path:
    return project.root / "models" / ROUNDS_FOLDER / f"round-{r}"


def load_state(project: Project) -> dict[str, Any] | None:
    """The loop's state, None before the first invocation.

    Raises:
        LriharError: the file is not a state this version writes.
    """
    path = state_path(project)
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LriharError(f"{path}: cannot read the bootstrap state ({exc}); move it away to start "
                          "the loop over") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise LriharError(f"{path}: not a bootstrap state of this lrihar (version "
                          f"{state.get('version') if isinstance(state, dict) else '?'}); move it away "
                          "to start the loop over")
    return state


def write_json_atomically(path: Path, doc: Any) -> None:
    """``doc`` as JSON at ``path``: written beside it, flushed to disk, then moved over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(json.dumps(doc, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def new_state() -> dict[str, Any]:
    return {"version": STATE_VERSION, "started_at": _now(), "settings": {}, "initial": None,
            "rounds": [], "imported": []}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_options(opts: BootstrapOptions) -> None:
    """Bad options, named, before anything is read or written.

    Raises:
        BadInputError: a bad --rounds, --budget, --epochs, --threshold, --from, a missing
            --corrections file, or --images without --gt.
    """
    if opts.rounds is not None and opts.rounds < 1:
        raise BadInputError(f"--rounds: at least 1, not {opts.rounds}")
    if opts.budget is not None:
        parse_budget(str(opts.budget))
    if opts.epochs is not None and opts.epochs < 1:
        raise BadInputError(f"--epochs: at least 1, not {opts.epochs}")
    if opts.threshold is not None and not 0 <= opts.threshold <= 1:
        raise BadInputError(f"--threshold: a confidence between 0 and 1, not {opts.threshold}")
    if opts.tool not in TOOLS:
        raise BadInputError(f"--from: unknown tool {opts.tool!r}; choose one of {', '.join(TOOLS)}")
    if opts.corrections is not None and not Path(opts.corrections).is_file():
        raise BadInputError(f"--corrections {opts.corrections}: no such file (the labelling tool's "
                            "export with your corrections)")
    if opts.images is not None and opts.gt is None:
        raise BadInputError("--images: it says where the --gt images are; give --gt too")


def load_heldout(project: Project, gt: Path, images: Path | None = None):
    """The held-out ground truth, checked: its images exist and none is a frame of the project.

    Raises:
        BadInputError: unreadable, images missing, or frames of the project among them (names --gt).
    """
    from lrihar.evaluate.groundtruth import load_ground_truth

    try:
        truth = load_ground_truth(gt, images)
        truth.require_images()
    except BadInputError as exc:
        raise BadInputError(f"--gt: {exc}") from None
    stored = {str(Path(rec.name).resolve()) for _, _, rec in project.store.frames() if rec.name}
    inside = [p for p in truth.images if str(Path(p).resolve()) in stored]
    if inside:
        raise BadInputError(f"--gt {gt}: {len(inside)} of its {len(truth.images)} images are frames of "
                            f"the project (first: {inside[0]}), which the detector trains on; hold out "
                            "frames it never sees (another folder, another session)")
    return truth


class Bootstrap:
    """One invocation of the loop on ``project`` (see the module docstring)."""

    def __init__(self, project: Project, opts: BootstrapOptions,
                 say: Callable[[str], None] | None = None) -> None:
        self.project, self.opts = project, opts
        self.say = say or (lambda message: None)
        self.notes: list[str] = []
        self.state: dict[str, Any] = new_state()
        self.truth = None
        self.sha = None
        self.arg = opts.project_arg or str(project.root)

    # -- the driver ------------------------------------------------------------------------------

    def run(self) -> BootstrapResult:
        """Check everything, then advance the loop until it needs the person or all rounds are done."""
        check_options(self.opts)
        self.sha = sha256_of(self.opts.corrections) if self.opts.corrections else None
        if self.opts.gt is not None:
            self.truth = load_heldout(self.project, Path(self.opts.gt), self.opts.images)
        self._check(load_state(self.project) or new_state())  # bad input: stop before the lock file
        with self._lock():
            self.state = load_state(self.project) or new_state()
            self._check(self.state)
            self._settings()
            stop = self._advance()
        return BootstrapResult(stop.kind, stop.message, self.state, self.notes)

    def _check(self, state: dict[str, Any]) -> None:
        """Refuse what the loop cannot do from where ``state`` stands (nothing is written)."""
        self._recover_import(state)
        if self.sha is not None and not any(i["sha256"] == self.sha for i in state["imported"]):
            current = self._current(state, create=False)
            if current is None or current["step"] != "corrections":
                where = ("every round is done" if current is None
                         else f"round {current['round']} has not suggested its frames yet"
                         if current["step"] == "suggest"
                         else f"round {current['round']} is past its corrections (at {current['step']})")
                raise BadInputError(
                    f"--corrections {self.opts.corrections}: {where}; corrections are imported when a "
                    "round stops for them (import it yourself with `lrihar import`, or rerun without "
                    "--corrections)")
        if (state.get("initial") is None and self.project.store.counts()["frames"] == 0
                and not any(inputs or (inputs is None and self.project.config.sources)
                            for inputs, _ in self._configured_inputs())):
            raise BadInputError(
                f"{self.project.root}: no stored frames and no `sources:` in the project file to "
                f"annotate; list them there, or run `lrihar annotate INPUTS -p {self.arg}` first")

    def _settings(self) -> None:
        s = self.state["settings"]
        s.setdefault("rounds", DEFAULT_ROUNDS)
        s.setdefault("budget", DEFAULT_BUDGET)
        given = {"rounds": self.opts.rounds, "epochs": self.opts.epochs, "threshold": self.opts.threshold,
                 "budget": None if self.opts.budget is None else parse_budget(str(self.opts.budget))}
        if self.opts.gt is not None:
            given |= {"gt": str(Path(self.opts.gt).resolve()),
                      "images": str(Path(self.opts.images).resolve()) if self.opts.images else None}
            s.pop("images", None)
        s.update({k: v for k, v in given.items() if v is not None})
        s["plots"] = self.opts.plots

    def _advance(self) -> _Stop:
        if self.state.get("initial") is None:
            self._initial()
            self._save()
        while True:
            rnd = self._current(self.state)
            if rnd is None:
                n = len([r for r in self.state["rounds"] if r["step"] == "done"])
                return _Stop("done", f"bootstrap: {n} round{'s' * (n != 1)} done; the latest detector is "
                                     f"{self._latest_onnx() or '-'} (more rounds: --rounds N)")
            step = rnd["step"]
            self.say(f"round {rnd['round']}: {step}")
            stop = getattr(self, f"_step_{step}")(rnd)
            if stop is None or stop.advance:
                rnd["step"] = STEPS[STEPS.index(step) + 1]
            self._save()
            if stop is not None:
                return stop

    def _current(self, state: dict[str, Any], create: bool = True) -> dict[str, Any] | None:
        """The round under way (a new one if the last is done and rounds are left), None when done."""
        rounds, wanted = state["rounds"], state["settings"].get("rounds", DEFAULT_ROUNDS)
        if self.opts.rounds is not None:
            wanted = self.opts.rounds
        if rounds and rounds[-1]["step"] != "done":
            return rounds[-1] if rounds[-1]["round"] <= wanted else None
        if len(rounds) >= wanted:
            return None
        new = {"round": len(rounds) + 1, "step": "suggest"}
        if create:
            rounds.append(new)
        return new

    def _save(self) -> None:
        self.state["updated_at"] = _now()
        write_json_atomically(state_path(self.project), self.state)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """One loop per project at a time (its own lock: the steps take the project's)."""
        import fcntl

        path = state_path(self.project).with_suffix(".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+", encoding="utf-8") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LriharError(f"{self.project.root}: another `lrihar bootstrap` is running on this "
                                  "project; wait for it or stop it") from None
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- step 1: the project's own detector --------------------------------------------------------

    def _initial(self) -> None:
        from lrihar.annotate.pipeline import annotate

        frames = self.project.store.counts()["frames"]
        if frames:
            self.state["initial"] = {"annotated": False, "frames": frames}
            return
        detector = self.project.config.detector.backend
        self.say(f"annotating the project's sources with its detector ({detector})")
        runs, boxes = [], 0
        for inputs, post in self._configured_inputs():  # as `lrihar annotate` with no inputs reads them
            s = annotate(self.project, inputs, post=post, show_progress=self.opts.show_progress)
            runs.append(s.run_id)
            boxes += s.boxes
        self.state["initial"] = {"annotated": True, "detector": detector, "runs": runs,
                                 "frames": self.project.store.counts()["frames"], "boxes": boxes}

    def _configured_inputs(self) -> list[tuple[list[str] | None, str | None]]:
        """The project file's sources as (inputs, post) jobs: the top-level ``sources`` and each
        post's own (``lines:``)."""
        from lrihar.lines import annotate_inputs, project_layout

        return annotate_inputs(project_layout(self.project.config), None)

    # -- step 2: suggest -----------------------------------------------------------------------------

    def _step_suggest(self, rnd: dict[str, Any]) -> _Stop | None:
        from lrihar.review.suggest import pick_diverse, score_frames

        r = rnd["round"]
        budget = self.state["settings"]["budget"]
        store = self.project.store
        stored = [(uri, rec.index) for uri, _, rec in store.frames() if rec.status != "gated"]
        k = max(1, round(budget * len(stored)))
        previous = self._onnx(r - 1)
        compare = self._detector(previous) if previous else None
        # suggest_frames, less the frames a person checked in any way: it leaves out frames with a
        # person's box, but not a "no hand" mark, which the new detector may disagree with
        checked = checked_frames(store, stored)
        scored = score_frames(self.project, compare, show_progress=self.opts.show_progress)
        picks = pick_diverse([s for s in scored if (s.source, s.frame_index) not in checked], k)
        path = round_folder(self.project, r) / "suggest.json"
        write_json_atomically(path, [s.as_dict() for s in picks])
        rnd["suggest"] = {"file": str(path), "k": k, "budget": budget, "stored_frames": len(stored),
                          "picked": len(picks), "compare": previous,
                          "frames": [[s.source, s.frame_index] for s in picks]}
        if not picks:
            self._note(f"round {r}: no frame needs a look (nothing disagrees, no weak box, no busy frame "
                       "without a box); training on the boxes as they are")
            return None
        return _Stop("corrections", self._correct_message(rnd), advance=True)

    def _correct_message(self, rnd: dict[str, Any]) -> str:
        r, s, p = rnd["round"], rnd["suggest"], self.arg
        threshold = self.state["settings"].get("threshold")
        compare = (f" --compare yolo={s['compare']}" + (f" --compare-threshold {threshold}"
                                                         if threshold is not None else "")
                   if s["compare"] else "")
        n = s["picked"]
        return (f"round {r}: correct these {n} frames (listed in {s['file']}), then run "
                f"`lrihar bootstrap -p {p}` again:\n"
                f"  in the review page: lrihar review -p {p} --queue uncertain -n {n}{compare}\n"
                f"  or in your tool: lrihar export OUT -p {p} -f labelstudio --frames {s['file']} "
                f"(or -f cvat), and rerun with --corrections FILE --from labelstudio|cvat|coco "
                "to import the tool's file")

    # -- step 3: corrections ---------------------------------------------------------------------

    def _step_corrections(self, rnd: dict[str, Any]) -> _Stop | None:
        r, s = rnd["round"], rnd["suggest"]
        entry = None
        if self.sha is not None:
            done = next((i for i in self.state["imported"] if i["sha256"] == self.sha), None)
            if done is not None:
                self._note(f"{self.opts.corrections}: imported already (round {done['round']}); not again")
            else:
                entry = self._import(r)
        record = rnd.setdefault("corrections", {"imported": []})
        if entry is not None:
            record["imported"].append(entry)
        if not s["picked"]:
            record |= {"checked": 0, "of": 0}
            return None
        frames = [(uri, int(index)) for uri, index in s["frames"]]
        checked = checked_frames(self.project.store, frames)
        record |= {"checked": len(checked), "of": len(frames)}
        if not checked:
            return _Stop("unchecked", f"round {r}: none of the {len(frames)} suggested frames is checked "
                                      "yet (no box drawn, moved, relabelled or marked wrong, no \"no hand\" "
                                      "mark on them).\n" + self._correct_message(rnd).split("\n", 1)[1])
        if len(checked) < len(frames):
            self._note(f"round {r}: {len(checked)} of the {len(frames)} suggested frames checked; going on "
                       "(a frame left alone counts as needing nothing)")
        return None

    def _import(self, r: int) -> dict[str, Any]:
        from lrihar.review.interchange import import_corrections

        path = Path(self.opts.corrections).resolve()
        pending = {"sha256": self.sha, "file": str(path), "tool": self.opts.tool, "round": r,
                   "after_action": _last_action(self.project.store)}
        self.state["importing"] = pending
        self._save()
        self.say(f"round {r}: importing {path} ({self.opts.tool})")
        try:
            s = import_corrections(self.project, path, self.opts.tool, empty_checked=self.opts.empty_checked)
        except Exception:  # refused or failed: its one transaction did not commit
            del self.state["importing"]
            self._save()
            raise
        entry = pending | {"summary": asdict(s)}
        entry.pop("after_action")
        self.state["imported"].append(entry)
        del self.state["importing"]
        self._save()
        self._note(f"{path}: {s.images} images: {s.relabelled} relabelled, {s.moved} moved, {s.confirmed} "
                   f"confirmed, {s.added} added, {s.rejected} marked wrong, {s.checked_empty} no hand")
        return entry

    def _recover_import(self, state: dict[str, Any]) -> None:
        """An import cut short: committed (its review actions are in the store) or not at all."""
        pending = state.get("importing")
        if not pending:
            return
        committed = self.project.store.db.execute(
            "SELECT 1 FROM review_log WHERE action_id > ? AND reviewer = ? LIMIT 1",
            (pending["after_action"], f"import:{pending['tool']}")).fetchone()
        del state["importing"]
        if committed:
            entry = {k: v for k, v in pending.items() if k != "after_action"} | {"summary": None}
            state["imported"].append(entry)
            for rnd in state["rounds"]:
                if rnd["round"] == pending["round"]:
                    rnd.setdefault("corrections", {"imported": []})["imported"].append(entry)

    # -- step 4: train ---------------------------------------------------------------------------

    def _step_train(self, rnd: dict[str, Any]) -> None:
        from lrihar.train.detector import train_detector

        r = rnd["round"]
        name = f"{RUN_PREFIX}{r}"
        run_dir = runs_root(DETECTOR, self.project) / name
        record = read_record(run_dir) if (run_dir / RECORD).is_file() else None
        if run_dir.exists() and not rnd.get("train_sessions"):
            raise LriharError(f"{run_dir}: a run of this name exists that this loop did not start (was "
                              f"{state_path(self.project)} removed?); move it away and rerun")
        status = (record or {}).get("summary", {}).get("status")
        if status != "done":
            resume = _resumable(run_dir)
            if run_dir.exists() and not resume:
                shutil.rmtree(run_dir)  # no finished epoch, or its last.pt cut by a kill: start again
            # how each attempt began (new, resume, restart): saved before the run folder is made
            rnd.setdefault("train_sessions", []).append("resume" if resume else "restart" if
                                                        rnd.get("train_sessions") else "new")
            self._save()
            cfg = self.train_config()
            self.say(f"round {r}: {'resuming' if resume else 'training'} {name} ({cfg.epochs} epochs, "
                     f"{cfg.arch}, {cfg.imgsz} px)")
            try:
                train_detector(self.project, cfg, name=name, resume=resume, verbose=False)
            except LriharError as exc:
                # killed after its last epoch was saved, before the run was marked done
                if not (resume and "nothing to resume" in str(exc) and (run_dir / DETECTOR.best).is_file()):
                    raise
        summary = read_record(run_dir)["summary"]
        rnd["train"] = {"run": name, "folder": str(run_dir), "epochs_done": summary["epochs_done"],
                        "images": summary["images"], "boxes": summary["boxes"], "metrics": summary["metrics"],
                        "val_is_train": summary["val_is_train"], "seconds": training_seconds(run_dir)}

    def train_config(self):
        """The project file's ``train_detector`` section over the defaults, ``--epochs`` over it (as
        ``lrihar train-detector`` builds it)."""
        from lrihar.train.detector import DetectorTrainConfig, project_train_settings

        settings = project_train_settings(self.project, {"epochs": self.state["settings"].get("epochs")})
        return DetectorTrainConfig(**settings, plots=self.state["settings"].get("plots", True))

    # -- step 5: export --------------------------------------------------------------------------

    def _step_export(self, rnd: dict[str, Any]) -> None:
        from lrihar.deploy.onnx_detector import export_detector

        run = rnd["train"]["run"]
        imgsz = read_record(Path(rnd["train"]["folder"]))["config"]["imgsz"]
        self.say(f"round {rnd['round']}: exporting {run} to ONNX ({imgsz} px)")
        s = export_detector(self.project, run, imgsz=imgsz)
        rnd["export"] = {"onnx": s.onnx, "sha256": s.sha256, "imgsz": s.imgsz}

    # -- step 6: re-annotate -----------------------------------------------------------------------

    def _step_reannotate(self, rnd: dict[str, Any]) -> None:
        from lrihar.annotate.pipeline import annotate

        r = rnd["round"]
        store = self.project.store
        snapshot = round_folder(self.project, r) / "boxes-before.json"
        if not snapshot.is_file():  # taken once: a rerun after a kill compares with the same
            write_json_atomically(snapshot, live_boxes(store))
        uris = list(dict.fromkeys(uri for uri, kind, _ in store.frames() if kind != "stream"))
        self.say(f"round {r}: re-annotating {len(uris)} source{'s' * (len(uris) != 1)} with "
                 f"{rnd['export']['onnx']}")
        s = annotate(self.project, uris, detector=self._detector(rnd["export"]["onnx"]), reannotate=True,
                     show_progress=self.opts.show_progress)
        if s.failed_sources:
            self._note(f"round {r}: could not read {', '.join(s.failed_sources)}; their frames keep "
                       "their boxes")
        added, removed = box_changes(json.loads(snapshot.read_text(encoding="utf-8")), live_boxes(store))
        person = store.db.execute("SELECT COUNT(*) FROM detections d WHERE d.rejected = 0"
                                  f" AND {_person_box()}").fetchone()[0]
        rnd["reannotate"] = {"boxes_added": added, "boxes_removed": removed, "boxes_changed": added + removed,
                             "person_boxes": person, "boxes": store.counts()["detections"]
                             - store.counts()["detections_rejected"]}

    # -- step 7: held-out check --------------------------------------------------------------------

    def _step_heldout(self, rnd: dict[str, Any]) -> None:
        from lrihar.annotate.pipeline import annotate
        from lrihar.evaluate.groundtruth import load_ground_truth
        from lrihar.evaluate.project_eval import detection_report

        gt = self.state["settings"].get("gt")
        if not gt:
            rnd["heldout"] = None
            return
        truth = self.truth or load_ground_truth(gt, self.state["settings"].get("images"))
        truth.require_images()
        r = rnd["round"]
        folder = round_folder(self.project, r) / "heldout"
        if not (folder / "lrihar.yaml").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            # every held-out image reaches the detector: no gate, every frame
            doc = {"detector": {"backend": "yolo", "model": rnd["export"]["onnx"]},
                   "gate": {"motion": False, "hands": False}}
            tmp = folder / ".lrihar.yaml.tmp"
            tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
            tmp.replace(folder / "lrihar.yaml")
        sub = Project.open(folder)
        self.say(f"round {r}: held-out check on {len(truth.images)} images of {gt}")
        annotate(sub, heldout_inputs(truth.images), detector=self._detector(rnd["export"]["onnx"]),
                 show_progress=self.opts.show_progress)
        report = detection_report(sub.store, truth, ious=(HELDOUT_IOU,))
        sub.store.close()
        paper = report.get("paper", {}).get(str(HELDOUT_IOU))
        out: dict[str, Any] = {"gt": gt, "iou": HELDOUT_IOU, "project": str(folder),
                               "images": report["matched_images"], "ground_truth_images": len(truth.images),
                               "ground_truth_boxes": report.get("ground_truth_boxes", 0),
                               "predictions": report.get("predictions", 0),
                               "recall": paper["recall"] if paper else None,
                               "accuracy": paper["accuracy"] if paper else None}
        by_class = {c: {"boxes": v["boxes"], "recall": v["paper"][str(HELDOUT_IOU)]["recall"],
                        "accuracy": v["paper"][str(HELDOUT_IOU)]["accuracy"]}
                    for c, v in (report.get("by_class") or {}).items()}
        if by_class:
            out["by_class"] = by_class
        rnd["heldout"] = out

    # -- helpers ---------------------------------------------------------------------------------

    def _note(self, message: str) -> None:
        self.notes.append(message)
        self.say(message)

    def _onnx(self, r: int) -> str | None:
        for rnd in self.state["rounds"]:
            if rnd["round"] == r and rnd.get("export"):
                return rnd["export"]["onnx"]
        return None

    def _latest_onnx(self) -> str | None:
        done = [rnd["export"]["onnx"] for rnd in self.state["rounds"] if rnd.get("export")]
        return done[-1] if done else None

    def _detector(self, onnx: str):
        """The trained detector (``yolo`` backend) at the loop's confidence: ``--threshold``, else
        the project's own where its detector is ``yolo`` (with its options), else the backend's."""
        from lrihar.models.detectors import create_detector

        d = self.project.config.detector
        kwargs: dict[str, Any] = {"batch_size": d.batch_size, "device": d.device}
        if d.backend == "yolo":
            kwargs |= {"box_threshold": d.box_threshold, **d.options}
        threshold = self.state["settings"].get("threshold")
        if threshold is not None:
            kwargs["box_threshold"] = threshold
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        return create_detector("yolo", model=onnx, **kwargs)


def run_bootstrap(project: Project, opts: BootstrapOptions,
                  say: Callable[[str], None] | None = None) -> BootstrapResult:
    """Advance the loop on ``project`` until it needs the person or every round is done (see the
    module docstring); ``say`` receives the progress lines.

    Raises:
        BadInputError: bad options (nothing is changed).
    """
    return Bootstrap(project, opts, say).run()


def _person_box() -> str:
    from lrihar.store.frames import PERSON_BOX

    return PERSON_BOX


def _last_action(store) -> int:
    return int(store.db.execute("SELECT COALESCE(MAX(action_id), 0) FROM review_log").fetchone()[0])


def checked_frames(store, frames: list[tuple[str, int]]) -> set[tuple[str, int]]:
    """Those of ``frames`` (source uri, frame index) a person checked: a box on it drawn, moved,
    relabelled, confirmed or marked wrong (:data:`lrihar.store.frames.PERSON_BOX`), a "no hand"
    mark, or any review action about the whole frame that is not undone."""
    sql = (f"SELECT EXISTS (SELECT 1 FROM detections d WHERE d.source_id = ? AND d.frame_index = ?"
           f" AND {_person_box()})"
           " OR EXISTS (SELECT 1 FROM frame_reviews WHERE source_id = ? AND frame_index = ?)"
           " OR EXISTS (SELECT 1 FROM review_log WHERE source_id = ? AND frame_index = ? AND undone = 0)")
    ids = dict(store.db.execute("SELECT uri, id FROM sources"))
    return {(uri, index) for uri, index in frames
            if uri in ids and store.db.execute(sql, (ids[uri], index) * 3).fetchone()[0]}


def live_boxes(store) -> dict[str, list[list[float]]]:
    """Every box that is not rejected, by frame (``<source>#<index>``): what re-annotation may change."""
    out: dict[str, list[list[float]]] = defaultdict(list)
    for row in store.detections():
        out[f"{row.source_uri}#{row.frame_index}"].append([round(v, 3) for v in row.xyxy])
    return dict(out)


def box_changes(before: dict[str, list], after: dict[str, list]) -> tuple[int, int]:
    """(boxes added, boxes removed) from ``before`` to ``after``: per frame, boxes paired one to one
    at IoU ≥ :data:`CHANGE_IOU` are the same box; a moved box counts as one removed and one added."""
    import numpy as np

    from lrihar.review.suggest import match_count

    added = removed = 0
    for key in before.keys() | after.keys():
        a = np.array(before.get(key, []), float).reshape(-1, 4)
        b = np.array(after.get(key, []), float).reshape(-1, 4)
        same = match_count(a, b, CHANGE_IOU)
        added, removed = added + len(b) - same, removed + len(a) - same
    return added, removed


def training_seconds(run_dir: Path) -> float:
    """Seconds ultralytics trained ``run_dir`` (its ``results.csv`` times, summed over the sessions
    of a resumed run: each session's clock starts at 0)."""
    path = run_dir / "results.csv"
    if not path.is_file():
        return 0.0
    with path.open(newline="") as f:
        rows = [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(f)]
    times = [float(row["time"]) for row in rows if row.get("time") not in (None, "")]
    total = sum(t for t, nxt in itertools.pairwise(times) if nxt < t)
    return round(total + (times[-1] if times else 0.0), 1)


def _resumable(run_dir: Path) -> bool:
    """Whether ``run_dir`` has a whole ``weights/last.pt`` to resume from (a kill while it was
    written leaves a cut zip)."""
    last = run_dir / DETECTOR.last
    if not last.is_file():
        return False
    try:
        with zipfile.ZipFile(last) as z:
            return z.testzip() is None
    except (zipfile.BadZipFile, OSError):
        return False


def heldout_inputs(images: list[str]) -> list[str]:
    """Inputs for annotate that read exactly ``images``: a folder whose images are all among them,
    else the files one by one."""
    from lrihar.sources import folder_contents

    wanted = {str(Path(p).resolve()) for p in images}
    by_folder: dict[Path, list[str]] = defaultdict(list)
    for p in sorted(wanted):
        by_folder[Path(p).parent].append(p)
    out: list[str] = []
    for folder, files in by_folder.items():
        every = {str(p.resolve()) for p in folder_contents(folder).images}
        out += [str(folder)] if every <= wanted else files
    return out


def summary_rows(state: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per round: what it is at and what it gained (the table the command prints)."""
    rows, corrected = [], 0
    for rnd in state.get("rounds", []):
        c = rnd.get("corrections") or {}
        corrected += c.get("checked", 0)
        h, t, a = rnd.get("heldout") or {}, rnd.get("train") or {}, rnd.get("reannotate") or {}
        step = rnd["step"]
        rows.append({"round": rnd["round"],
                     "step": STEP_SHOWN.get(step, f"at {step}"),
                     "suggested": (rnd.get("suggest") or {}).get("picked"),
                     "checked": c.get("checked"), "corrected_so_far": corrected if "checked" in c else None,
                     "boxes_changed": a.get("boxes_changed"), "boxes_added": a.get("boxes_added"),
                     "boxes_removed": a.get("boxes_removed"),
                     "heldout_recall": h.get("recall"), "heldout_accuracy": h.get("accuracy"),
                     "train_seconds": t.get("seconds")})
    return rows
