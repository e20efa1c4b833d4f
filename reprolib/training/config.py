"""``TrainConfig``: the one typed, validated place for the settings of a dissimilarity training run.

Every caller — ``run_table`` (profile + table variant), ``python -m reprolib train`` (YAML + ``--set``),
``reprolib/configs/*.yaml``, tests — ends in :meth:`TrainConfig.from_dict`, which checks every value and
reports the first problem as one :class:`ConfigError` naming the key (unknown keys get "did you mean").

Run identity: a run's weights are a function of its *determining* settings (:meth:`TrainConfig.identity`):
everything except :data:`RUNTIME_KEYS`, with the split folders identified by their **name** (which carries
the precompute content hash), so a copy of the data mounted elsewhere (e.g. ``/kaggle/input``) still matches.

Why one module of ~320 lines: the fields, their checks and the identity are one contract, and splitting them
would put a setting's type in one file and its check in another.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from reprolib.io import PathLike, ReprolibDataError, not_found

#: Settings that never change the weights (how long / where / how it is logged or resumed). Not ``devices``:
#: each device takes ``batch_size`` images a step, so it sets the global batch and the number of steps.
RUNTIME_KEYS = frozenset({"max_time", "device", "wandb_mode", "resume_from", "kaggle_input",
                          "checkpoint_every", "num_workers", "trajectory_snapshots"})
#: Determining settings left out of a run's identity at their default, so runs named before they counted keep
#: their names (and folders). The selection settings (``val_label_dir``, ``plateau_split``, ``plateau_label_dir``)
#: came later than every committed run: at None they train exactly as before, so they hash as before too.
IDENTITY_DEFAULTS: dict[str, Any] = {"devices": 1, "val_label_dir": None, "plateau_split": None,
                                     "plateau_label_dir": None, "val_loss": "pooled", "imagenet": None}
#: how a validation's loss (which picks best.ckpt and steps the plateau scheduler) averages over its images:
#: "per_image", the mean of each image's class-weighted cross-entropy, as the original's batch-1 validation and test
#: loaders give it (spec §4.6; the report's selection); "pooled", the mean over batches of ``batch_size`` images of
#: each batch's cross-entropy over all its pixels (ours, kept for the runs it selected before)
VAL_LOSSES = ("pooled", "per_image")

#: ``ensemble`` setting → :class:`reprolib.ensemble.learned.LearnedEnsemble` mode (None = no learned ensemble).
#: "grid" and "fixed" are applied after training (the tables' variants pass them through); they train as "none".
ENSEMBLES: dict[str, str | None] = {"none": None, "grid": None, "fixed": None, "learned-probability": "probability",
                                    "learned-anomaly_logit": "anomaly_logit", "learned-repro": "repro"}
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
WANDB_MODES = ("offline", "online", "disabled")
#: common names for a setting that are not its key (difflib alone does not find these)
_ALIASES = {"learning_rate": "lr", "learningrate": "lr", "epochs": "max_epochs", "steps": "max_steps",
            "bs": "batch_size", "batch": "batch_size", "image_size": "size", "resolution": "size",
            "val_every": "val_every_n_steps", "labels": "label_dir", "width": "model.width"}


class ConfigError(ValueError):
    """A bad training setting: ``key`` (the setting, e.g. ``lr`` or ``model.width``; None = the whole config)."""

    def __init__(self, key: str | None, problem: str):
        self.key, self.problem = key, problem
        super().__init__(f"{key}: {problem}" if key else problem)


def did_you_mean(key: str, known: list[str] | tuple[str, ...] | frozenset[str]) -> str:
    """`` (did you mean X?)`` for the closest known key, or ``""``."""
    guess = _ALIASES.get(key.lower())
    if guess is None:
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
        guess = close[0] if close else None
    return f" (did you mean {guess}?)" if guess else ""


# ------------------------------------------------------------------------------------------- checkers
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(minimum: int, optional: bool = False) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if v is None and optional:
            return None
        if not _is_int(v) or v < minimum:
            raise ValueError(f"must be an integer >= {minimum}{' or null' if optional else ''}, got {v!r}")
        return v
    return check


def _float(low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = False) -> Callable:
    def check(v: Any) -> float:
        if isinstance(v, str):  # YAML 1.1 reads 1e-5 as a string
            try:
                v = float(v)
            except ValueError:
                raise ValueError(f"must be a number, got {v!r}") from None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"must be a number, got {v!r}")
        if v < low or (low_open and v == low) or v > high or (high_open and v == high):
            lo, hi = "(" if low_open else "[", ")" if high_open else "]"
            raise ValueError(f"must be in {lo}{low}, {high}{hi}, got {v!r}")
        return float(v)
    return check


def _choice(options: tuple[str, ...] | list[str]) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v not in options:
            raise ValueError(f"must be one of {', '.join(map(str, options))}; got {v!r}")
        return v
    return check


def _path(optional: bool) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if v is None and optional:
            return None
        if not isinstance(v, (str, Path)) or not str(v):
            raise ValueError(f"must be a path{' or null' if optional else ''}, got {v!r}")
        return str(v)
    return check


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"must be true or false, got {v!r}")
    return v


def _size(v: Any) -> tuple[int, int]:
    if not isinstance(v, (list, tuple)) or len(v) != 2 or not all(_is_int(x) and x > 0 for x in v):
        raise ValueError(f"must be [height, width], two positive integers, got {v!r}")
    return (int(v[0]), int(v[1]))


def _betas(v: Any) -> tuple[float, float]:
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise ValueError(f"must be [beta1, beta2], two numbers in [0, 1), got {v!r}")
    return tuple(_float(0.0, 1.0, high_open=True)(x) for x in v)  # type: ignore[return-value]


def _class_weights(v: Any) -> str | tuple[float, float] | None:
    if v in (None, "none"):
        return None
    if v == "enet":
        return "enet"
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return tuple(_float(0.0, low_open=True)(x) for x in v)  # type: ignore[return-value]
    raise ValueError(f"must be 'enet', 'none' or [w_known, w_anomaly] (two numbers > 0), got {v!r}")


def _precision(v: Any) -> str:
    return "32-true" if v is None else _choice(PRECISIONS)(v)  # None: written by older versions = fp32


def _device(v: Any) -> str:
    if not isinstance(v, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", v):
        raise ValueError(f"must be 'cpu', 'cuda' or 'cuda:N', got {v!r}")
    return v


def parse_max_time(value: str | int | float | None) -> float | None:
    """Seconds from ``"DD:HH:MM:SS"`` (or ``HH:MM:SS``, or a number of seconds); None for no limit."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        parts = str(value).strip().split(":")
        try:
            nums = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"max_time must be 'DD:HH:MM:SS' or seconds, got {value!r}") from None
        if len(nums) > 4:
            raise ValueError(f"max_time must be 'DD:HH:MM:SS' or seconds, got {value!r}")
        weights = (86400.0, 3600.0, 60.0, 1.0)[4 - len(nums):]
        seconds = sum(n * w for n, w in zip(nums, weights, strict=True))
    if seconds <= 0:
        raise ValueError(f"max_time must be positive, got {value!r}")
    return seconds


def _max_time(v: Any) -> str | float | None:
    if v in (None, ""):
        return None
    if isinstance(v, str) and re.fullmatch(r"\d+:\d{1,2}:\d{1,2}:\d{1,2}", v):
        return v
    try:
        return _float(0.0, low_open=True)(v)
    except ValueError:
        raise ValueError(f"must be 'DD:HH:MM:SS' or seconds > 0, got {v!r}") from None


def _imagenet(v: Any) -> str | None:
    if v is None or v == "random" or (isinstance(v, str) and re.fullmatch(r"sha256:[0-9a-f]{16}", v)):
        return v
    raise ValueError(f"must be null, 'random' or 'sha256:<16 hex digits>' (filled in by train()), got {v!r}")


def imagenet_weights_identity(model: Mapping[str, Any]) -> str | None:
    """:func:`reprolib.models.pretrained.imagenet_identity` of the encoder a ``model`` setting builds (the network's
    defaults filled in): None for none or torchvision's own file, ``"random"``, or the file's ``"sha256:…"``."""
    if model.get("pretrained", True) is False or float(model.get("width", 1.0)) != 1.0:
        return None  # no file to look at: and no import of reprolib.models (torchvision) for a demo rerun's runs
    # lazy: reprolib.models imports torch + torchvision (see _model)
    from reprolib.models import DissimilarityConfig
    from reprolib.models.pretrained import imagenet_identity

    cfg = DissimilarityConfig(**model)
    return imagenet_identity(cfg.encoder, cfg.pretrained, cfg.width)


def _model(v: Any) -> dict[str, Any]:
    # lazy: reprolib.models imports torch + torchvision (~4 s, python -X importtime) while this module imports in
    # 0.14 s; the CLIs' argument checks and run_table's precision check import it without building a network
    from reprolib.models import DissimilarityConfig

    if not isinstance(v, Mapping):
        raise ValueError(f"must be a mapping of network settings (e.g. {{width: 0.125}}), got {v!r}")
    known = [f.name for f in fields(DissimilarityConfig)]
    for key in v:
        if key not in known:
            raise ConfigError(f"model.{key}", f"unknown key{did_you_mean(str(key), known)}")
    try:
        DissimilarityConfig(**v)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad network setting ({exc})") from None
    return dict(v)


#: Split paths in a training config: identified by their folder name (precompute's content hash), not by
#: where the working directory happens to be (a local checkout, /kaggle/working, a test's tmp dir).
# ------------------------------------------------------------------ the validation schedule and the plateau scheduler
# (reprolib.training.selection starts a run from another's trajectory by these rules; the cost estimate counts
# the epochs that saves; both without Lightning here)
def validation_steps(max_steps: int, val_every: int) -> list[int]:
    """The global steps after which a run of ``max_steps`` validating every ``val_every`` steps validates."""
    return list(range(val_every, max_steps + 1, val_every))


def shared_validations(max_steps: int, val_every: int, patience: int) -> list[int]:
    """The validation steps at which runs differing only in their selection splits hold the same weights."""
    return validation_steps(max_steps, val_every)[:patience + 1]


def fork_step(max_steps: int, val_every: int, patience: int) -> int | None:
    """The step after which such runs may part: the ``patience`` + 1-th validation (the first at which a plateau
    scheduler can act), when training steps follow it; None when they cannot part."""
    steps = validation_steps(max_steps, val_every)
    return steps[patience] if len(steps) > patience and steps[patience] < max_steps else None


def plateau_cannot_act(max_steps: int, val_every: int, patience: int) -> bool:
    """True when the plateau scheduler cannot change the learning rate of any training step, whatever the losses.

    Each validation adds at most one to the scheduler's count of bad validations and it acts once the count
    passes ``patience``; a change at the last step's validation reaches no step.
    """
    return fork_step(max_steps, val_every, patience) is None


SPLIT_KEYS = ("train_split", "val_split", "plateau_split")


def run_identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a training config that determines the weights (runtime keys dropped, splits by name)."""
    ident = {k: v for k, v in config.items() if k not in RUNTIME_KEYS}
    for key, default in IDENTITY_DEFAULTS.items():
        if ident.get(key, default) == default:
            ident.pop(key, None)
    for key in SPLIT_KEYS:
        if ident.get(key):
            ident[key] = Path(str(ident[key])).name
    return ident


@dataclass(frozen=True)
class TrainConfig:
    """One dissimilarity training run; defaults = the paper's (report Table 1, spec §4).

    Build with :meth:`from_dict` (or the constructor: both validate). Immutable; :meth:`replace` for a copy.
    """

    train_split: str
    val_split: str | None = None
    label_dir: str = "labels"
    # Model selection (spec §4.2). best.ckpt keeps the lowest loss on val_split; ReduceLROnPlateau steps on the
    # loss of plateau_split when given (a second validation loader, logged as plateau_val/...), else on val_split's.
    val_label_dir: str | None = None  # label folder of val_split; None: label_dir
    plateau_split: str | None = None
    plateau_label_dir: str | None = None  # label folder of plateau_split; None: val_split's
    val_loss: str = "pooled"  # see VAL_LOSSES
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    batch_size: int = 4
    size: tuple[int, int] = (256, 512)
    max_steps: int | None = None  # None: max_epochs × steps per epoch
    max_epochs: int = 50
    val_every_n_steps: int | None = None  # None: once per epoch
    seed: int = 0
    ensemble: str = "none"  # see ENSEMBLES
    flip: bool = True
    class_weights: str | tuple[float, float] | None = "enet"
    patience: int = 10
    factor: float = 0.5
    model: dict[str, Any] = field(default_factory=dict)  # DissimilarityConfig settings
    precision: str = "32-true"  # fp32 as the original; "bf16-mixed" / "16-mixed" only when asked
    # the ImageNet weights the encoder starts from, when not torchvision's own file (see imagenet_weights_identity):
    # filled in by train() from the file it loads, so a run of other weights gets another name
    imagenet: str | None = None
    profile: str = "custom"
    # runtime settings (RUNTIME_KEYS): never change the weights
    checkpoint_every: int = 50
    device: str = "cpu"
    devices: int = 1
    num_workers: int = 0
    wandb_mode: str = "offline"
    max_time: str | float | None = None
    resume_from: str | None = None
    kaggle_input: str | None = "/kaggle/input"
    # weights at the validations a run shares with runs that differ only in their selection splits, for those to
    # start from (reprolib.training.selection); None: only when they cost little (no step after them)
    trajectory_snapshots: bool | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            try:
                value = _CHECKS[f.name](value)
            except ConfigError:
                raise
            except ValueError as exc:
                raise ConfigError(f.name, str(exc)) from None
            object.__setattr__(self, f.name, value)
        if self.plateau_split and not self.val_split:
            raise ConfigError("plateau_split", "needs a val_split (the plateau split is a second validation loader)")
        divisor = 8 if self.model.get("encoder", "vgg16") == "vgg16" else 32
        if any(s % divisor for s in self.size):
            raise ConfigError("size", f"height and width must be divisible by {divisor} for this encoder, "
                                      f"got {list(self.size)}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, values: Any) -> TrainConfig:
        """Validate a plain mapping (a YAML file, ``config.json``, a profile's dict) into a TrainConfig."""
        if isinstance(values, TrainConfig):
            return values
        if not isinstance(values, Mapping):
            raise ConfigError(None, f"a training config must be a mapping of settings (key: value), "
                                    f"got {type(values).__name__}")
        known = [f.name for f in fields(cls)]
        for key in values:
            if key not in known:
                raise ConfigError(str(key), f"unknown key{did_you_mean(str(key), known)}")
        if values.get("train_split") in (None, ""):
            raise ConfigError("train_split", "required setting missing (the processed training split folder)")
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        return self.from_dict({**self.to_dict(), **changes})

    # ------------------------------------------------------------------ views
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists)."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    def identity(self) -> dict[str, Any]:
        """The determining settings (what fixes the weights): no runtime keys; splits by folder name."""
        return run_identity(self.to_dict())

    def differing_keys(self, other: TrainConfig) -> list[str]:
        """Determining keys whose values differ (``model.width`` style for the network's settings)."""
        a, b = self.identity(), other.identity()
        unset = IDENTITY_DEFAULTS.get
        diff = [k for k in dict.fromkeys([*a, *b]) if k != "model" and a.get(k, unset(k)) != b.get(k, unset(k))]
        from reprolib.models import DissimilarityConfig  # lazy: see _model (measured import cost)

        ma, mb = DissimilarityConfig(**a["model"]).to_dict(), DissimilarityConfig(**b["model"]).to_dict()
        return diff + [f"model.{k}" for k in ma if ma[k] != mb[k]]

    @property
    def ensemble_mode(self) -> str | None:
        """The :class:`LearnedEnsemble` mode, or None."""
        return ENSEMBLES[self.ensemble]

    @property
    def accelerator(self) -> str:
        return "cuda" if self.device.startswith("cuda") else "cpu"


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "train_split": _path(False), "val_split": _path(True), "label_dir": _path(False),
    "val_label_dir": _path(True), "plateau_split": _path(True), "plateau_label_dir": _path(True),
    "val_loss": _choice(VAL_LOSSES),
    "lr": _float(0.0, low_open=True), "betas": _betas, "weight_decay": _float(0.0), "batch_size": _int(1),
    "size": _size, "max_steps": _int(1, optional=True), "max_epochs": _int(1), "val_every_n_steps": _int(1, True),
    "seed": _int(0), "ensemble": _choice(tuple(ENSEMBLES)), "flip": _bool, "class_weights": _class_weights,
    "patience": _int(0), "factor": _float(0.0, 1.0, low_open=True, high_open=True), "model": _model,
    "precision": _precision, "imagenet": _imagenet, "profile": lambda v: _path(False)(v), "checkpoint_every": _int(1),
    "device": _device, "devices": _int(1), "num_workers": _int(0), "wandb_mode": _choice(WANDB_MODES),
    "max_time": _max_time, "resume_from": _path(True), "kaggle_input": _path(True),
    "trajectory_snapshots": lambda v: None if v is None else _bool(v),
}


class _UniqueKeys(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last one silently,
    so ``lr: 1e-4`` then ``lr: 5`` trained at 5)."""


def _unique_mapping(loader: _UniqueKeys, node: yaml.MappingNode, deep: bool = False) -> dict:
    lines: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        try:
            if key in lines:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (lines {lines[key]} and {line})", key_node.start_mark)
            lines[key] = line
        except TypeError:  # an unhashable key: SafeLoader's own message below
            break
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_UniqueKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_yaml_settings(path: PathLike) -> dict[str, Any]:
    """The settings of a YAML config file as a dict (not yet validated: ``--set`` may complete it)."""
    p = Path(path)
    if not p.is_file():
        raise ReprolibDataError(p, not_found(p, "config file"))
    try:
        values = yaml.load(p.read_text(), Loader=_UniqueKeys)  # noqa: S506 (a SafeLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ReprolibDataError(p, f"not valid YAML ({str(exc).splitlines()[0]})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ReprolibDataError(p, f"must be a mapping of settings (key: value), got a {type(values).__name__}")
    return values


def load_config(path: PathLike, **overrides: Any) -> TrainConfig:
    """A YAML config file (``reprolib/configs/*.yaml``) with ``overrides`` on top, validated."""
    return TrainConfig.from_dict({**read_yaml_settings(path), **overrides})
