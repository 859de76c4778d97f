"""The registry of detection methods, as data.

Everything that shows a method to a person (CLI help, trainer, checkpoints, dashboard) reads
these records, so a method's name, label and description are written once, here.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MethodSpec:
    name: str  # registry key, used in file names, CLI flags and checkpoint metadata
    label: str  # short human label for tables and plots
    description: str  # one sentence: what is trained and why it generalises
    trains: str  # "head" | "layernorm" (LN gamma/beta + head) | "encoders" (text-guided) | "none"
    normalize: bool = False  # L2-normalise z_cls before the head (features on the unit sphere)
    slerp: bool = False  # SLERP feature augmentation between same-class features during training
    family: str = "ln"  # "ln" (z_cls + linear head) or "text" (CLIP text descriptions)
    defaults: dict = field(default_factory=dict)  # method-specific TrainConfig overrides

    @property
    def trainable(self) -> bool:
        return self.trains != "none"


METHODS: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    if spec.name in METHODS:
        raise ValueError(f"method {spec.name!r} is already registered")
    METHODS[spec.name] = spec
    return spec


register(MethodSpec(
    name="linear_probe",
    label="Linear probe",
    description="Frozen CLIP encoder; only a Linear(1024, 2) head on z_cls is trained.",
    trains="head",
))
register(MethodSpec(
    name="ln_tuning",
    label="LN-tuning",
    description="Every LayerNorm gamma/beta of the vision encoder is trained together with a linear head.",
    trains="layernorm",
))
register(MethodSpec(
    name="ln_norm",
    label="LN + Norm",
    description="LN-tuning with z_cls L2-normalised before the head: features live on the unit hypersphere.",
    trains="layernorm",
    normalize=True,
))
register(MethodSpec(
    name="ln_norm_slerp",
    label="LN + Norm + SLERP",
    description="LN + Norm, and each training feature is replaced by a spherical interpolation "
                "towards another feature of the same class.",
    trains="layernorm",
    normalize=True,
    slerp=True,
))

# The four methods of the paper, in the order its tables use.
PAPER_METHODS = ("linear_probe", "ln_tuning", "ln_norm", "ln_norm_slerp")


def get_method(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}") from None


def list_methods(family: str | None = None) -> list[str]:
    return [n for n, s in METHODS.items() if family is None or s.family == family]

# -- text family (companion thesis "Text guided face forgery detection"); built by dfdet.text ----
for _n, _label, _set in (("1desc", "1 desc", "1desc"), ("10desc", "10 desc", "10desc"),
                         ("550desc", "550 desc", "550desc")):
    register(MethodSpec(
        name=f"zeroshot_{_n}",
        label=f"Zero-shot ({_label})",
        description="Untrained CLIP: softmax over the mean similarity to the real vs the fake descriptions "
                    f"(thesis set {_set}).",
        trains="none",
        family="text",
        defaults={"descriptions": _set, "top_k": 0},
    ))
for _n, _label, _set, _lr in (("1desc", "1 desc", "1desc", 6e-7), ("10desc", "10 desc", "10desc", 8e-7)):
    register(MethodSpec(
        name=f"textguided_{_n}",
        label=f"Text-guided ({_label})",
        description="Both CLIP encoders fine-tuned with a paired contrastive loss: each (real, fake) image pair "
                    f"against one real and one fake description (thesis set {_set}).",
        trains="encoders",
        family="text",
        defaults={"descriptions": _set, "top_k": 0,
                  "train": {"descriptions": _set, "lr": _lr}},
    ))
del _n, _label, _set, _lr
