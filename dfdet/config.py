"""Typed configs. Defaults are the paper's recipe; YAML files and CLI flags override them."""
from __future__ import annotations

import dataclasses
import errno
import json
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .calibration import CalibrationConfig
from .errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20  # a config is a few hundred bytes; anything this large is not one


@dataclass
class BackboneConfig:
    model: str = "ViT-L-14"  # open_clip architecture name (ViT-B-16, ViT-L-14, or a registered tiny test config)
    pretrained: str | None = "openai"  # open_clip weights tag; None with weights=None means random init (tests, speed)
    weights: str | None = None  # local weights file (.safetensors or open_clip .bin/.pt); also $DFDET_CLIP_WEIGHTS
    quick_gelu: bool = True  # OpenAI CLIP was trained with QuickGELU; a mismatch silently degrades features
    seed: int = 0  # seed for random init, so a random-weight backbone is the same in every process


@dataclass
class TrainConfig:
    method: str = "ln_norm_slerp"  # registry name of the method to train
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    manifest: str = ""  # manifest CSV with path,label,dataset,source,video,identity,split
    data_root: str = ""  # folder the manifest's paths are relative to (default: the manifest's folder)
    train_split: str = "train"  # manifest split used for training
    val_split: str = "val"  # split used to pick the best epoch; never the test split
    datasets: list[str] = field(default_factory=list)  # restrict to these datasets (empty = all)
    batch_size: int = 128  # paper: 128; the global batch per optimiser step, whatever the number of processes
    micro_batch: int = 0  # images per forward in each process (0 = batch_size / processes); smaller accumulates
    epochs: int = 10  # paper: 10
    lr: float = 8e-5  # AdamW peak learning rate (paper: 8e-5)
    min_lr: float = 5e-5  # cosine annealing floor (paper: 5e-5)
    weight_decay: float = 0.0  # paper: 0
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    eps: float = 1e-8  # AdamW epsilon (the reference leaves torch's default, 1e-8)
    lr_schedule: str = "cosine"  # "cosine" (paper: one cosine over the run) or "cyclic" (GenD: warm restarts)
    cycle_epochs: float = 10.0  # "cyclic" only: epochs per cosine cycle (GenD: 10)
    warmup_epochs: float = 0.0  # linear warm-up from min_lr over these epochs first (paper: 0, GenD: 1)
    seed: int = 42  # paper: 42; controls init, shuffling and SLERP sampling
    precision: str = "auto"  # "auto" = bf16 autocast on CUDA, fp32 on CPU; or "fp32" / "bf16"
    augment: str = "paper"  # training-image augmentation: "paper" (the reference's torchvision v2 ops) or "none"
    slerp_t: tuple[float, float] = (0.0, 1.0)  # t ~ U(t0, t1) for SLERP augmentation
    align_weight: float = 0.0  # weight of the alignment loss (Wang & Isola) on the head's input; 0 = off
    uniform_weight: float = 0.0  # weight of the uniformity loss on the head's input; 0 = off
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)  # threshold rule, conformal alpha (val)
    select_metric: str = "video_map_macro"  # picks the best epoch on val; paper: video-level macro mAP (run.py:53)
    val_limit: int = 16384  # paper: validate on whole videos in seed-42 order, cut at 16,384 frames (0 = all)
    max_steps: int = 0  # stop after this many optimiser steps (0 = no limit); for smoke runs
    num_workers: int = -1  # DataLoader workers per process (-1 = auto: 0 on CPU, up to 8 on CUDA)
    cache_features: str = "memory"  # linear probe with augment=none only: "memory" or a folder for a disk cache
    compile: bool = False  # torch.compile the backbone (CUDA only; off unless measured to help)
    device: str = "auto"  # "auto", "cpu", "cuda"
    out: str = "runs/train"  # run folder: checkpoint, resolved config, training log
    force: bool = False  # replace a finished checkpoint in `out` (trained in a staging folder, swapped in at the end)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(tp: Any, value: Any, key: str = "") -> Any:
    """Check a YAML/CLI value against the field's type, converting only what is unambiguous (YAML reads '1e-4'
    as a string; an int is a fine float). Anything else is a ConfigError naming the key and the type."""
    def bad() -> ConfigError:
        return ConfigError(f"config field {key!r} expects {_type_name(tp)}, got {value!r}")
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(option, value, key)
            except ConfigError:
                pass
        raise bad()
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config field {key!r} is a group of settings ({', '.join(f.name for f in fields(tp))}); "
                              f"set one with {key}.<name>=value, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or (args and args[-1] is not Ellipsis and len(value) != len(args)):
            raise ConfigError(f"config field {key!r} expects {len(args)} values like [{', '.join('…' for _ in args)}], "
                              f"got {value!r}")
        kinds = args if args and args[-1] is not Ellipsis else [args[0] if args else Any] * len(value)
        return tuple(_coerce(t, v, key) for t, v in zip(kinds, value))
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config field {key!r} expects a list like [a, b], got {value!r}")
        return [_coerce(args[0], v, key) for v in value] if args else value
    if origin is dict:
        if not isinstance(value, dict):
            raise bad()
        return value
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise bad()
        return value
    if tp is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise bad() from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        return float(value)
    if tp is int:
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise bad() from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if tp is str:
        if not isinstance(value, str):
            raise bad()
        return value
    return value


def from_dict(cls, data: dict, prefix: str = "") -> Any:
    """Build a dataclass from a (possibly partial, nested) dict; unknown keys and ill-typed values are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping of settings, got {data!r}")
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(prefix + str(k) for k in sorted(map(str, unknown)))}; "
                          f"known: {', '.join(prefix + k for k in sorted(known))}")
    obj = cls()
    hints = _type_hints(cls)
    for k, v in data.items():
        setattr(obj, k, _coerce(hints[k], v, prefix + k))
    if not prefix:
        check_values(obj)
    return obj


# -- value ranges ----------------------------------------------------------------------------
# Types are checked by _coerce; these are the values a run cannot use (a zero batch, a NaN or infinite rate).
# Each applies to whichever config has a field of that name (train, text train, evaluate, nested groups).
AT_LEAST_1 = ("epochs", "batch_size", "grad_accum")
AT_LEAST_0 = ("micro_batch", "max_steps", "val_limit", "warmup_steps", "top_k", "early_stop_patience", "min_lr",
              "weight_decay", "warmup_epochs", "align_weight", "uniform_weight", "early_stop_min_delta")
ABOVE_0 = ("lr", "eps", "cycle_epochs", "peak_decay")
IN_0_1 = ("target_fpr", "threshold")
DEVICES = ("auto", "cpu", "cuda", "mps")
MAX_SEED = 2 ** 32 - 1  # numpy's seed range


def check_values(cfg, prefix: str = "") -> None:
    """Refuse, with one line naming the key, a value no run can use (ConfigError)."""
    import math
    for f in fields(cfg):
        key, value = prefix + f.name, getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            check_values(value, key + ".")
            continue
        numbers = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
            raise ConfigError(f"config field {key!r} must be a finite number, got {value!r}")
        problem = _range_problem(f.name, value)
        if problem:
            raise ConfigError(f"config field {key!r} {problem}, got {value!r}")
    for name in ("out", "cache_features"):
        value = getattr(cfg, name, None)
        if isinstance(value, str) and value and not (name == "cache_features" and value == "memory"):
            problem = _unwritable(Path(value))
            if problem:
                raise ConfigError(f"config field {name!r}: cannot write to {value}: {problem}")


def _range_problem(name: str, value) -> str:
    if name in AT_LEAST_1 and isinstance(value, int) and value < 1:
        return "must be 1 or more"
    if name in AT_LEAST_0 and isinstance(value, (int, float)) and value < 0:
        return "must be 0 or more"
    if name in ABOVE_0 and isinstance(value, (int, float)) and value <= 0:
        return "must be more than 0"
    if name in IN_0_1 and isinstance(value, (int, float)) and not 0 <= value <= 1:
        return "must be between 0 and 1"
    if name == "alpha" and isinstance(value, float) and not 0 < value < 1:
        return "must be between 0 and 1 (exclusive)"
    if name == "betas" and isinstance(value, tuple) and not all(0 <= b < 1 for b in value):
        return "must be two numbers in [0, 1)"
    if name == "slerp_t" and isinstance(value, tuple) and not 0 <= value[0] <= value[-1] <= 1:
        return "must be [t0, t1] with 0 <= t0 <= t1 <= 1"
    if name == "seed" and isinstance(value, int) and not 0 <= value <= MAX_SEED:
        return f"must be between 0 and {MAX_SEED}"
    if name == "num_workers" and isinstance(value, int) and not -1 <= value <= 256:
        return "must be -1 (auto) or 0 to 256"
    if name == "rule" and isinstance(value, str):
        from .calibration import RULES
        return "" if value in RULES else f"must be one of {', '.join(RULES)}"
    if name == "device" and isinstance(value, str):
        base, _, index = value.partition(":")
        if base not in DEVICES or (index and not (base == "cuda" and index.isdigit())):
            return "must be auto, cpu, cuda, cuda:N or mps"
    return ""


def _unwritable(path: Path) -> str:
    """'' if a folder can be made at `path` (nothing is created), else why not, in words."""
    import tempfile
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        return describe_os_error(err) if err.errno != errno.ENOENT else "not a place files can be written"
    return ""


def _type_hints(cls) -> dict:
    import typing
    return typing.get_type_hints(cls)


def to_dict(cfg) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


class _ConfigLoader(yaml.SafeLoader):
    """safe_load without aliases: `*name` can expand a few bytes into gigabytes ("billion laughs")."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent):
            mark = self.peek_event().start_mark
            raise ConfigError(f"YAML aliases (*name) are not allowed in configs (line {mark.line + 1}); write the "
                              "value out")
        return super().compose_node(parent, index)


def parse_yaml(text: str, where: str) -> Any:
    """One YAML document as plain data (no tags, no aliases), or a ConfigError saying where it is wrong."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{where}: more than {MAX_CONFIG_BYTES:,} characters is too large for a config value")
    try:
        data = yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader that also refuses aliases
        json.dumps(data, default=str)  # nesting a config never needs: refused here, not deep in a run
        return data
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to be a config") from None
    except yaml.constructor.ConstructorError as err:
        tag = f" ({err.problem})" if err.problem else ""
        raise ConfigError(f"{where}: only plain YAML values are allowed (no tags such as !!python/object){tag}") \
            from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{where}: not valid YAML{at}: {getattr(err, 'problem', None) or err}") from None


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size:,} bytes is too large for a config")
        with open(path, "rb") as f:  # read with a limit: /dev/zero or a FIFO says size 0 and never ends
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: more than {MAX_CONFIG_BYTES:,} bytes is too large for a config")
        text = raw.decode()
    except OSError as err:
        raise ConfigError(f"{path}: {describe_os_error(err)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None
    data = parse_yaml(text, str(path)) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def describe_os_error(err: OSError) -> str:
    """The words for why a file could not be read (ELOOP is not 'not found'; EACCES is not 'damaged')."""
    return {errno.ENOENT: "file not found", errno.ELOOP: "a symlink loop (it points back to itself)",
            errno.EACCES: "permission denied (cannot read it as this user)", errno.EISDIR: "is a folder, not a file",
            errno.ENOTDIR: "a part of the path is not a folder"}.get(err.errno, err.strerror or type(err).__name__)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `key=value` or `backbone.model=value` strings; values are parsed as YAML scalars."""
    data = json.loads(json.dumps(data))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {p} is not a group of settings")
        node[parts[-1]] = parse_yaml(raw, f"--set {item}")
    return data
