"""The project file (``lrihar.yaml``) as frozen, validated pydantic models.

Example:
    >>> from lrihar.config import load_project_config
    >>> cfg = load_project_config("proj/lrihar.yaml")  # doctest: +SKIP
    >>> cfg.detector.backend
    'mediapipe-hands'
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lrihar.classes import NG, class_list_problem
from lrihar.errors import BadInputError
from lrihar.naming import class_name_problem
from lrihar.sources import DEFAULT_MAX_IMAGE_PIXELS

PROJECT_FILE = "lrihar.yaml"


class _Frozen(BaseModel):
    # extra="forbid" turns a typo in the project file into an error instead of a silent default;
    # allow_inf_nan=False refuses `.inf` / `.nan`, which YAML reads as floats.
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, allow_inf_nan=False)


def _known_device(value: str) -> str:
    if value != "cpu" and value != "cuda" and not value.startswith("cuda:"):
        raise ValueError("must be 'cpu', 'cuda' or 'cuda:N'")
    return value


def _finite_options(value: dict[str, Any]) -> dict[str, Any]:
    """Backend options are free-form, so pydantic's ``allow_inf_nan`` does not reach them."""
    def check(item: Any, where: str) -> None:
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{where} must be a finite number (got {item})")
        if isinstance(item, dict):
            for key, sub in item.items():
                check(sub, f"{where}.{key}")
        elif isinstance(item, list):
            for i, sub in enumerate(item):
                check(sub, f"{where}[{i}]")

    for key, item in value.items():
        check(item, str(key))
    return value


class ActionClass(_Frozen):
    """One action class and the folder of its template crops."""

    name: str = Field(min_length=1)
    templates: Path | None = None
    description: str = ""
    lambda_: float | None = Field(
        default=None, alias="lambda", ge=-1, le=1, description="this class's λ (default: classify.lambda)"
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        # The name becomes folder names and review-page text: refuse what could escape either.
        problem = class_name_problem(value)
        if problem is not None:
            raise ValueError(f"class name {problem}; letters, digits, spaces, '-' and '_' are always fine")
        return value


class SamplingConfig(_Frozen):
    """Which decoded frames are kept (every ``stride``-th, or about ``fps`` per second) and the
    largest image read."""

    stride: int = Field(default=1, ge=1)
    fps: float | None = Field(default=None, gt=0)
    max_image_pixels: int = Field(
        default=DEFAULT_MAX_IMAGE_PIXELS, ge=1,
        description="larger images (width × height) are reported and skipped: decompression bombs",
    )


class DetectorConfig(_Frozen):
    """The zero-shot detector (paper step 3.1.1)."""

    backend: str = "mediapipe-hands"
    model: str | None = Field(
        default=None, description="Hugging Face id or local directory; None = backend default"
    )
    prompt: str = "hand."
    box_threshold: float | None = Field(
        default=None, ge=0, le=1, description="None = the backend's default"
    )
    text_threshold: float | None = Field(default=None, ge=0, le=1)
    device: str = "cpu"
    batch_size: int = Field(default=4, ge=1)
    options: dict[str, Any] = Field(default_factory=dict, description="backend-specific options")

    _device = field_validator("device")(_known_device)
    _options = field_validator("options")(_finite_options)


class GateConfig(_Frozen):
    """The cheap first pass that decides which frames the detector sees."""

    motion: bool = False
    motion_threshold: float = Field(
        default=0.01, ge=0, le=1, description="fraction of pixels that must change"
    )
    pixel_delta: int = Field(default=25, ge=1, le=255, description="grey-level change per pixel")
    hands: bool = False
    hands_confidence: float = Field(default=0.3, ge=0, le=1)
    keepalive: int = Field(
        default=0, ge=0, description="also pass every N-th frame regardless (0 = never)"
    )


class ClassifyConfig(_Frozen):
    """Template matching (paper 3.1.2): encoder, λ and how class scores are reduced."""

    encoder: str = "auto"
    model: str | None = Field(default=None, description="HF id or local dir for hub encoders")
    device: str = "cpu"
    batch_size: int = Field(default=32, ge=1)
    lambda_: float = Field(default=0.6, alias="lambda", ge=-1, le=1)
    reduce: Literal["max", "topk-mean"] = "max"
    k: int = Field(default=3, ge=1, description="templates averaged by topk-mean")
    padding: float = Field(default=0.0, ge=0, le=1, description="crop padding per side")
    templates: Path | None = Field(
        default=None, description="folder with one sub-folder per class (the classes when `classes` "
        "is empty), overriding classes[].templates"
    )
    options: dict[str, Any] = Field(default_factory=dict, description="encoder-specific options")

    _device = field_validator("device")(_known_device)
    _options = field_validator("options")(_finite_options)


# ultralytics' augmentation hyperparameters that ``augment`` may set (numbers; see its docs).
AUGMENT_KEYS = ("hsv_h", "hsv_s", "hsv_v", "degrees", "translate", "scale", "shear", "perspective", "flipud",
                "fliplr", "bgr", "mosaic", "mixup", "cutmix", "copy_paste", "close_mosaic", "erasing")


def augment_problem(key: str, value: object) -> str | None:
    """What is wrong with the augmentation setting ``key: value`` (None: nothing)."""
    if key not in AUGMENT_KEYS:
        return f"unknown setting {key!r}; choose from {', '.join(AUGMENT_KEYS)}"
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return f"{key}: needs a number of 0 or more, not {value!r}"
    return None


class TrainDetectorConfig(_Frozen):
    """``lrihar train-detector`` settings; a field left out (None) takes the command's default,
    and a command-line option overrides the field."""

    arch: str | None = Field(default=None, description="mobilenetv2-yolo, efficientnet-lite0-yolo, yolo11n, "
                                                       "yolov8n, yolov5nu, or a local .pt / model .yaml")
    epochs: int | None = Field(default=None, ge=1)
    imgsz: int | None = Field(default=None, ge=32, multiple_of=32)
    batch: int | None = Field(default=None, ge=1)
    device: str | None = None
    seed: int | None = None
    patience: int | None = Field(default=None, ge=1)
    workers: int | None = Field(default=None, ge=0)
    val_fraction: float | None = Field(default=None, gt=0, lt=1)
    freeze_backbone_epochs: int | None = Field(
        default=None, ge=0, description="epochs the pretrained backbone stays frozen before it trains too")
    augment: dict[str, float] | None = Field(
        default=None, description="ultralytics augmentation settings over its defaults, e.g. {hsv_h: 0.15}")
    nominal_batch: int | None = Field(default=None, ge=1, description="images per optimizer step")
    val: bool | None = Field(default=None, description="validate after every epoch (False: after the last)")
    synthetic_gloves: float | None = Field(
        default=None, ge=0, le=20, description="synthetic-glove copies per training frame with a bare hand "
                                               "the offline detector found (a fraction: that share of them)")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str | None) -> str | None:
        return None if value is None else _known_device(value)

    @field_validator("augment")
    @classmethod
    def _augment(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for key, number in (value or {}).items():
            problem = augment_problem(key, number)
            if problem:
                raise ValueError(problem)
        return value


class ProcedureStep(_Frozen):
    """One step of a standard operating procedure: a class, or a group of classes in any order."""

    class_: str | None = Field(default=None, alias="class", description="the action class of this step")
    group: list[str] | None = Field(default=None, min_length=1,
                                    description="classes that may come in any order, all required")
    optional: bool = False
    min_s: float | None = Field(default=None, ge=0, description="shorter than this: too short")
    max_s: float | None = Field(default=None, gt=0, description="longer than this: too long")

    @model_validator(mode="after")
    def _one_kind(self) -> ProcedureStep:
        if (self.class_ is None) == (self.group is None):
            raise ValueError("a step names either `class: NAME` or `group: [NAME, ...]`, not both or neither")
        if self.min_s is not None and self.max_s is not None and self.min_s > self.max_s:
            raise ValueError(f"min_s ({self.min_s}) is above max_s ({self.max_s})")
        return self

    @property
    def classes(self) -> list[str]:
        return [self.class_] if self.class_ is not None else list(self.group or [])

    @property
    def name(self) -> str:
        return self.class_ if self.class_ is not None else "+".join(self.group or [])


class ProcedureConfig(_Frozen):
    """A post's standard operating procedure: ordered steps and what starts a new unit."""

    steps: list[ProcedureStep] = Field(min_length=1)
    start_action: str | None = Field(default=None, description="this class starts a new cycle; "
                                     "None: the first step's class(es)")
    idle_gap_s: float | None = Field(default=5.0, gt=0, description="no action for this long ends the "
                                     "cycle; None: only start_action does")
    max_cycle_s: float | None = Field(default=None, gt=0, description="a cycle longer than this alerts")

    @model_validator(mode="after")
    def _each_class_once(self) -> ProcedureConfig:
        # The step compliance engine finds an action's step by its class: one class, one step.
        named = [c for step in self.steps for c in step.classes]
        repeated = sorted({c for c in named if named.count(c) > 1})
        if repeated:
            raise ValueError(f"class(es) {', '.join(repeated)} named by more than one step (or twice in a "
                             "group); each class may be in one step only")
        if NG in [*named, self.start_action]:
            raise ValueError(f"'{NG}' (the rejection class) cannot be a step or the start_action")
        return self


class MqttConfig(_Frozen):
    """MQTT publishing, with Frigate's conventions (topic prefix, retained `available`, last will)."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    topic_prefix: str = Field(default="lrihar", min_length=1)
    client_id: str | None = None
    username: str | None = None
    password: str | None = None
    qos: int = Field(default=1, ge=0, le=2)
    keepalive: int = Field(default=30, ge=5)

    @field_validator("topic_prefix")
    @classmethod
    def _publishable(cls, value: str) -> str:
        # A topic to publish to holds no wildcard (MQTT 3.1.1 4.7.1), no NUL and no empty level
        # at either end; the broker would refuse the first event otherwise.
        bad = sorted({c for c in value if c in "#+\0"})
        if bad or value.startswith("/") or value.endswith("/") or value.startswith("$"):
            raise ValueError(f"{value!r} is not a topic to publish to: no {' '.join(bad) or '#, +'} "
                             "(MQTT wildcards), no leading $ or / and no trailing /; e.g. lrihar/line-1")
        return value


class RunConfig(_Frozen):
    """``lrihar run`` settings: queues, smoothing, tracking, live-source robustness."""

    sources: dict[str, list[str]] = Field(
        default_factory=dict, description="post -> its sources (files, folders, rtsp://, camera indices)")
    classifier: str = Field(default="auto", description="auto (the exported student when present, "
                            "else templates) | templates | a run name | an .onnx path")
    detector: str = Field(default="auto", description="auto (the exported yolo model when present, "
                          "else detector.backend) | a registered backend name | an .onnx path")
    queue_size: int = Field(default=8, ge=1, description="decoded frames held per file source")
    live_queue_size: int = Field(default=2, ge=1, description="decoded frames held per live source: "
                                 "each one queued adds a frame time to the latency (Frigate also holds 2)")
    batch_size: int = Field(default=16, ge=1, description="crops per classifier call")
    smoothing: Literal["majority", "hysteresis"] = "majority"
    window: int = Field(default=5, ge=1, description="frames in the smoothing window")
    min_event_frames: int = Field(default=3, ge=1, description="frames before an event is `new`")
    lost_track_s: float = Field(default=1.0, gt=0, description="a track unseen this long ends its event")
    track_threshold: float = Field(default=0.25, ge=0, le=1, description="detections below: not tracked")
    retry_s: float = Field(default=2.0, gt=0, description="wait before reopening a dropped stream")
    source_timeout_s: float = Field(default=10.0, gt=0, description="no frame this long: the source is dead")
    stall_timeout_s: float = Field(default=10.0, gt=0, description="frames queued but none processed "
                                   "this long: the pipeline is stalled")
    stats_every_s: float = Field(default=30.0, gt=0, description="print stage timings this often")
    mqtt: MqttConfig | None = None


class PostConfig(_Frozen):
    """One inspection post of a line (``lines[].posts[]``); what it leaves out, it takes from the
    project-wide sections (``classes``, ``classify.templates``, ``classify.lambda``)."""

    name: str = Field(min_length=1)
    classes: list[ActionClass] | None = Field(default=None, description="this post's classes "
                                              "(None: the project's `classes`)")
    templates: Path | None = Field(default=None, description="this post's templates root, one "
                                   "sub-folder per class (None: classify.templates)")
    lambda_: float | None = Field(default=None, alias="lambda", ge=-1, le=1,
                                  description="this post's λ (None: classify.lambda)")
    procedure: ProcedureConfig | None = Field(default=None, description="this post's SOP")
    sources: list[str] = Field(default_factory=list, description="footage `lrihar annotate` reads "
                               "for this post when given no inputs")
    cameras: list[str] = Field(default_factory=list, description="what `lrihar run` reads for this "
                               "post (files, folders, rtsp://, camera indices)")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return _valid_layout_name(value, "post")

    @field_validator("classes")
    @classmethod
    def _valid_classes(cls, value: list[ActionClass] | None) -> list[ActionClass] | None:
        if value is not None:
            _check_class_list([c.name for c in value])
        return value


class LineConfig(_Frozen):
    """One manufacturing line and its inspection posts (``lines[]``)."""

    name: str = Field(min_length=1)
    posts: list[PostConfig] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return _valid_layout_name(value, "line")

    @field_validator("posts", mode="before")
    @classmethod
    def _bare_names(cls, value: Any) -> Any:
        # `posts: [a, b]` is shorthand for posts that take everything from the project.
        if isinstance(value, list):
            return [{"name": p} if isinstance(p, str) else p for p in value]
        return value


def _valid_layout_name(value: str, what: str) -> str:
    # Line and post names become folder names (contact sheets) and page text, like class names.
    problem = class_name_problem(value)
    if problem is not None:
        raise ValueError(f"{what} name {problem}")
    return value


def _check_class_list(names: list[str]) -> None:
    problem = class_list_problem(names)
    if problem:
        raise ValueError(problem)


def _check_lines(cfg: ProjectConfig) -> None:
    """The ``lines`` section: it replaces ``line`` / ``posts`` and the post-keyed top-level
    sections; names are unique (posts across the whole project, since stored frames name only
    their post); each procedure names only its post's classes."""
    # By value, not by "was it written": a config dumped and validated again (with_overrides)
    # carries the defaults of `line` and `posts`.
    fields = ProjectConfig.model_fields
    given = [name for name in ("line", "posts", "procedures")
             if getattr(cfg, name) != fields[name].get_default(call_default_factory=True)]
    given += ["run.sources"] if cfg.run.sources else []
    if given:
        raise ValueError(f"`lines` replaces {', '.join(given)}: give each post's settings under "
                         "lines[].posts[] (procedure, cameras) and leave those out")
    line_names = [line.name for line in cfg.lines]
    repeated = sorted({n for n in line_names if line_names.count(n) > 1})
    if repeated:
        raise ValueError(f"line name(s) {', '.join(repeated)} given more than once; line names must be "
                         "unique")
    seen: dict[str, str] = {}
    for line in cfg.lines:
        for post in line.posts:
            if post.name in seen:
                where = "twice in line " + line.name if seen[post.name] == line.name else \
                    f"in lines {seen[post.name]} and {line.name}"
                raise ValueError(f"post {post.name!r} is {where}; post names must be unique across the "
                                 "project (stored frames name only their post)")
            seen[post.name] = line.name
            names = [c.name for c in (post.classes if post.classes is not None else cfg.classes)]
            procedure = post.procedure
            if procedure is not None and names:
                named = [c for step in procedure.steps for c in step.classes] + [procedure.start_action]
                unknown = sorted({c for c in named if c is not None and c not in names})
                if unknown:
                    raise ValueError(f"lines.{line.name}.posts.{post.name}.procedure: unknown class(es) "
                                     f"{', '.join(unknown)}; this post's classes are {', '.join(names)}")


class ProjectConfig(_Frozen):
    """The whole project file; later stages' sections are optional."""

    line: str = Field(default="line-1", min_length=1)
    posts: list[str] = Field(default_factory=lambda: ["post-1"])
    classes: list[ActionClass] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    sampling: SamplingConfig = SamplingConfig()
    detector: DetectorConfig = DetectorConfig()
    gate: GateConfig = GateConfig()
    classify: ClassifyConfig = ClassifyConfig()
    train_detector: TrainDetectorConfig = TrainDetectorConfig()
    procedures: dict[str, ProcedureConfig] = Field(default_factory=dict, description="post -> its SOP")
    run: RunConfig = RunConfig()
    lines: list[LineConfig] = Field(default_factory=list, description="lines and their posts; "
                                    "replaces `line` and `posts` (see lrihar.lines)")

    @model_validator(mode="after")
    def _lines(self) -> ProjectConfig:
        if self.lines:
            _check_lines(self)
        return self

    @model_validator(mode="after")
    def _unique_class_names(self) -> ProjectConfig:
        names = [c.name for c in self.classes]
        _check_class_list(names)
        for where, posts in (("procedures", self.procedures), ("run.sources", self.run.sources)):
            unknown = sorted(set(posts) - set(self.posts))
            if unknown:
                raise ValueError(f"{where}: unknown post(s) {', '.join(unknown)}; posts are "
                                 f"{', '.join(self.posts)} (add them to `posts`)")
        if names:
            for post, procedure in self.procedures.items():
                named = [c for step in procedure.steps for c in step.classes] + [procedure.start_action]
                unknown = sorted({c for c in named if c is not None and c not in names})
                if unknown:
                    raise ValueError(f"procedures.{post}: unknown class(es) {', '.join(unknown)}; "
                                     f"classes are {', '.join(names)}")
        return self


def _format_validation_error(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: invalid project file"]
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
        lines.append(f"  {field}: {err['msg']}{got}")
    return "\n".join(lines)


def parse_project_config(data: Any, path: Path) -> ProjectConfig:
    """Validate already-parsed YAML ``data``; errors name ``path`` and the field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: the project file must be a YAML mapping of sections")
    try:
        cfg = ProjectConfig.model_validate(data)
    except ValidationError as exc:
        raise BadInputError(_format_validation_error(path, exc)) from None
    return _resolve_template_dirs(cfg, path.parent)


def _resolve_template_dirs(cfg: ProjectConfig, base: Path) -> ProjectConfig:
    classes = [
        c.model_copy(update={"templates": base / c.templates})
        if c.templates is not None and not c.templates.is_absolute()
        else c
        for c in cfg.classes
    ]
    classify = cfg.classify
    if classify.templates is not None and not classify.templates.is_absolute():
        classify = classify.model_copy(update={"templates": base / classify.templates})
    update: dict[str, Any] = {"classes": classes, "classify": classify}
    if cfg.lines:
        update["lines"] = [line.model_copy(update={"posts": [_post_dirs(p, base) for p in line.posts]})
                           for line in cfg.lines]
    return cfg.model_copy(update=update)


def _post_dirs(post: PostConfig, base: Path) -> PostConfig:
    """A post's template folders relative to the project file, like the project-wide ones."""
    update: dict[str, Any] = {}
    if post.templates is not None and not post.templates.is_absolute():
        update["templates"] = base / post.templates
    if post.classes is not None:
        update["classes"] = [c.model_copy(update={"templates": base / c.templates})
                             if c.templates is not None and not c.templates.is_absolute() else c
                             for c in post.classes]
    return post.model_copy(update=update) if update else post


class _ProjectLoader(yaml.SafeLoader):
    """Safe YAML without anchors, aliases or repeated keys.

    An alias bomb ("billion laughs") parses into a few shared nodes but expands exponentially
    once validated, so anchors and aliases are refused while composing, before anything grows.
    A repeated key would silently keep only its last value.
    """

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(
                None, None, "YAML anchors and aliases (&name, *name) are not allowed in a project "
                "file; write the value out in full", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, (str, int, float, bool)) and key is not None:
                    continue  # unhashable keys are refused by the base constructor
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} appears twice in the same mapping (first on line "
                        f"{seen[key].start_mark.line + 1}); keep one", key_node.start_mark)
                seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """Parse a YAML file with :class:`_ProjectLoader`; errors name the file and line.

    Raises:
        BadInputError: not UTF-8, not YAML, an anchor or alias, a repeated key.
    """
    try:
        loader = _ProjectLoader(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{path}: not valid YAML: {exc}") from None
    loader.name = str(path)  # marks in messages name the file instead of "<unicode string>"
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise BadInputError(f"{path}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()


def load_project_config(path: str | Path) -> ProjectConfig:
    """Read and validate a project file.

    Raises:
        BadInputError: the file is missing, is not YAML, or a field is invalid.
    """
    path = Path(path)
    if path.is_dir():
        path = path / PROJECT_FILE
    if not path.is_file():
        raise BadInputError(f"{path}: no project file here; create one with `lrihar init DIR`")
    return parse_project_config(read_yaml(path), path)


def _alias(model: BaseModel, name: str) -> str:
    info = type(model).model_fields.get(name)
    return info.alias if info is not None and info.alias else name


def with_overrides(cfg: ProjectConfig, section: str, **values: Any) -> ProjectConfig:
    """Return ``cfg`` with ``section`` fields replaced by the non-None ``values`` (validated)."""
    values = {k: v for k, v in values.items() if v is not None}
    if not values:
        return cfg
    current = getattr(cfg, section).model_dump(by_alias=True)
    current.update({_alias(getattr(cfg, section), k): v for k, v in values.items()})
    data = cfg.model_dump(by_alias=True)
    data[section] = current
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as exc:
        raise BadInputError(_format_validation_error(Path("command line"), exc)) from None


EXAMPLE_PROJECT = """\
# lrihar project file. Every field is optional except where noted; see docs/project-file.md.
line: dishwasher            # name of the manufacturing line
posts: [post-01]            # inspection posts filmed on this line

# Action classes (paper 3.1.2). Left empty, the classes are the sub-folders of the templates
# folder (classify.templates below): templates/door_open/*.jpg makes a class `door_open`.
# Name them here to fix their order or give one its own lambda, e.g.:
#   classes:
#     - name: door_open
#       lambda: 0.65        # optional: this class's NG threshold
#     - name: insert_instructions
# (A class's own `templates: DIR` is used only when classify.templates is null.)
# Anything that matches no class well enough becomes NG.
classes: []

# Inputs used when `lrihar annotate` is given none: video files, folders of videos and images,
# rtsp:// URLs.
sources: []

sampling:
  stride: 1                 # keep every N-th decoded frame
  fps: null                 # or: keep about this many frames per second
  max_image_pixels: 89478485  # larger images (width x height) are reported and skipped

# Zero-shot hand-action detector (paper 3.1.1).
detector:
  backend: mediapipe-hands  # offline default; or grounding-dino (paper), owlv2
  model: null               # Hugging Face id or local directory (null = backend default)
  prompt: "hand."           # text prompt for grounding-dino / owlv2
  box_threshold: null       # box threshold (grounding-dino, default 0.35) or detection
                            # confidence (mediapipe-hands 0.3, owlv2 0.1); null = default
  text_threshold: null      # grounding-dino text threshold (default 0.25)
  device: cpu               # cpu | cuda | cuda:N
  batch_size: 4
  options: {}               # backend-specific, e.g. {max_num_hands: 4} for mediapipe-hands

# Cheap first pass deciding which frames the detector sees (frames it drops count as sifted).
gate:
  motion: false             # frame-difference motion gate
  motion_threshold: 0.01    # fraction of pixels that must change
  pixel_delta: 25           # grey-level change that counts as a changed pixel
  hands: false              # MediaPipe Hands must see a hand first
  hands_confidence: 0.3
  keepalive: 0              # pass every N-th frame anyway (0 = never)

# Template matching (paper 3.1.2): each crop gets the class of its most similar templates,
# or NG when the best cosine similarity is below lambda (per class: classes[].lambda).
classify:
  encoder: auto             # default: mobilenet-v2, hand-pose or fusion, whichever labels the
                            # templates best; or name one: mobilenet-v2 (offline), blip2 (paper),
                            # clip, siglip, dinov2, hand-pose (landmarks), fusion (appearance + pose)
  model: null               # HF id or local directory for blip2 / clip / siglip / dinov2
  lambda: 0.6               # NG threshold; estimate it with `lrihar calibrate-lambda`
  reduce: max               # class score: best template (max) or mean of k best (topk-mean)
  k: 3
  padding: 0.0              # grow each box by this fraction per side before embedding
  templates: templates      # one sub-folder of a few template crops per class
  device: cpu
  batch_size: 32
  options: {}               # encoder options, e.g. {pose_weight: 0.5} for fusion

# Your own hand detector (`lrihar train-detector`, needs lrihar[train]); options override these.
train_detector:
  arch: mobilenetv2-yolo    # pretrained ImageNet backbone, offline; or efficientnet-lite0-yolo (also
                            # pretrained), yolo11n, yolov8n, yolov5nu
  epochs: 30                # ~0.26 s per image per epoch on 2 CPU cores; far less on a GPU
  imgsz: 320
  batch: 16
  device: cpu               # cpu | cuda | cuda:N
  seed: 0
  patience: 20              # stop after this many epochs without improvement
  workers: 2
  val_fraction: 0.2         # share of sources held out for validation
  freeze_backbone_epochs: 0 # keep the pretrained backbone frozen this many epochs first
  augment: {}               # ultralytics augmentation over its defaults, e.g. {hsv_h: 0.15, degrees: 10}
  nominal_batch: null       # images per optimizer step (gradients accumulate); null: batch, a step per batch
  val: true                 # validate every epoch; false: only after the last (faster on a CPU)
  synthetic_gloves: 1       # copies per training frame with a bare hand, repainted as a work glove
                            # (0.5: half of those frames get one); 0: none
"""
