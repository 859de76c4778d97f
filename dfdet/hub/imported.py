"""A released model, resolved into dfdet's layout, and the checkpoint folder written from it.

A released model carries a whole CLIP vision tower. dfdet stores a method as an overlay (LayerNorm
gamma/beta + head) on top of a known backbone, so an import writes two things into one folder:
`model.safetensors` + `dfdet.json` (the overlay, named like `dfdet.model.Detector` parameters) and
`backbone.safetensors` (the full open_clip vision tower the overlay belongs to, so a machine without
OpenAI's weights can still run it). Every key of the source is accounted for in `key_report`.
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ..backbone import TINY_MODEL, load_imported_backbone  # noqa: F401 - re-exported
# The file format lives in dfdet.backbone_file, which dfdet.backbone reads: dfdet.backbone never imports hub.
from ..backbone_file import BACKBONE_FILE, BACKBONE_FORMAT, backbone_file_info, is_backbone_file  # noqa: F401
from ..checkpoint import META_FILE, WEIGHTS_FILE, file_sha256, save_checkpoint
from ..errors import CheckpointError
from ..hf_convert import ConversionError, VisionShape, hf_to_open_clip, open_clip_name
from ..methods import METHODS, MethodSpec

HEAD_KEYS = ("model.linear.weight", "model.linear.bias")  # LinearProbe head of the paper and of GenD

# HF hub names of OpenAI's CLIP -> open_clip architecture with the same tower ("openai" weights).
OPENAI_HF_NAMES = {
    "openai/clip-vit-large-patch14": "ViT-L-14",
    "openai/clip-vit-large-patch14-336": "ViT-L-14-336",
    "openai/clip-vit-base-patch16": "ViT-B-16",
    "openai/clip-vit-base-patch32": "ViT-B-32",
}
# Architectures an unnamed tower is matched against, by shape, in this order.
ARCH_CANDIDATES = ("ViT-L-14", "ViT-B-16", "ViT-B-32", "ViT-L-14-336", "ViT-H-14", TINY_MODEL)
_LN_KEY = re.compile(r"(^|\.)ln_(pre|post|1|2)\.(weight|bias)$")


@dataclass
class ImportedModel:
    """A released detector in open_clip terms, before it is written as a dfdet folder."""
    visual: dict[str, torch.Tensor]  # full open_clip `visual` state dict; LNs at their pre-training values
    tuned_ln: dict[str, torch.Tensor]  # open_clip LN key -> trained value (empty for a linear probe)
    head_weight: torch.Tensor  # [2, width]: logits for (real, fake)
    head_bias: torch.Tensor  # [2]
    spec: MethodSpec  # registry method the source's config corresponds to
    arch: str  # open_clip architecture of the tower
    weights: str  # weights tag the overlay is valid on ("openai", or this import's own id)
    quick_gelu: bool  # activation of the tower (OpenAI CLIP: QuickGELU)
    config: dict  # the source's own config, as JSON-able data
    display_name: str  # row label in tables and the dashboard
    source: str  # one sentence: where this came from
    origin: dict = field(default_factory=dict)  # file name, hash, format, epoch ... of the source
    key_report: dict = field(default_factory=dict)  # destination -> number of source keys that went there
    source_keys: int = 0  # keys in the source; sum(key_report.values()) must equal it


def jsonable(value: Any) -> Any:
    """The source config as plain JSON data (enums as their values, small tensors as lists)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    if isinstance(value, str):
        return str(value)  # also turns str-enums into plain strings
    if isinstance(value, torch.Tensor):
        return value.tolist() if value.numel() <= 16 else f"<tensor {tuple(value.shape)}>"
    return str(value)


def method_for(trains: str, normalize: bool, slerp: bool, source: str) -> MethodSpec:
    """The registry entry with exactly these properties; what a released config maps onto."""
    for spec in METHODS.values():
        if spec.family == "ln" and (spec.trains, spec.normalize, spec.slerp) == (trains, normalize, slerp):
            return spec
    raise CheckpointError(
        f"{source}: no dfdet method trains {trains!r} with normalize={normalize} and slerp={slerp}; "
        f"known LN-family methods: {', '.join(s.name for s in METHODS.values() if s.family == 'ln')}")


def infer_arch(shape: VisionShape, hf_name: str | None) -> str:
    """open_clip architecture whose vision tower has this shape; the HF name, if known, must agree."""
    import open_clip

    from ..backbone import _register_configs
    _register_configs()

    def matches(name: str) -> bool:
        cfg = open_clip.get_model_config(name)
        v = (cfg or {}).get("vision_cfg", {})
        if not v or v.get("timm_model_name") or v.get("attentional_pool"):
            return False
        mlp = int(v["width"] * v.get("mlp_ratio", 4.0))
        return (v["width"], v["layers"], v["patch_size"], v["image_size"], mlp) == \
            (shape.width, shape.layers, shape.patch_size, shape.image_size, shape.mlp_dim) and \
            (shape.output_dim is None or shape.output_dim == cfg["embed_dim"])

    described = (f"width {shape.width}, {shape.layers} blocks, patch {shape.patch_size}, image {shape.image_size}, "
                 f"MLP {shape.mlp_dim}")
    if hf_name in OPENAI_HF_NAMES:
        arch = OPENAI_HF_NAMES[hf_name]
        if not matches(arch):
            raise ConversionError(f"the checkpoint says its backbone is {hf_name} ({arch}), but its tower has "
                                  f"{described}; the file is inconsistent")
        return arch
    for arch in ARCH_CANDIDATES:
        if matches(arch):
            return arch
    raise ConversionError(f"no open_clip architecture has a vision tower with {described}")


def split_peft_tower(tower: dict[str, torch.Tensor], where: str) -> tuple[dict, dict, dict]:
    """Resolve peft LN-tuning wrappers: (tower at base values, HF key -> tuned value, key report).

    peft's LNTuningLayer keeps the pre-trained LayerNorm as `<ln>.base_layer.*` and the trained copy as
    `<ln>.ln_tuning_layers.<adapter>.*`; while not merged, forward uses the trained copy.
    """
    base, tuned, report = {}, {}, {"tower": 0, "tuned LayerNorm (overlay)": 0, "pre-trained LayerNorm (backbone)": 0}
    adapters = set()
    for k, v in tower.items():
        if ".base_layer." in k:
            base[k.replace(".base_layer.", ".")] = v
            report["pre-trained LayerNorm (backbone)"] += 1
        elif m := re.match(r"^(.*)\.ln_tuning_layers\.([^.]+)\.(weight|bias)$", k):
            adapters.add(m.group(2))
            tuned[f"{m.group(1)}.{m.group(3)}"] = v
            report["tuned LayerNorm (overlay)"] += 1
        else:
            base[k] = v
            report["tower"] += 1
    if len(adapters) > 1:
        raise CheckpointError(f"{where}: {len(adapters)} LN-tuning adapters ({sorted(adapters)}); "
                              "dfdet can import a checkpoint with exactly one")
    unpaired = sorted(set(tuned) ^ {k.replace(".base_layer.", ".") for k in tower if ".base_layer." in k})
    if unpaired:
        raise CheckpointError(f"{where}: LN-tuning layers without a matching base layer (or the reverse): "
                              f"{unpaired[:10]}")
    if tuned and not all(re.search(r"(layrnorm|layernorm|layer_norm\d)\.(weight|bias)$", k) for k in tuned):
        others = sorted(k for k in tuned if not re.search(r"(layrnorm|layernorm|layer_norm\d)\.", k))
        raise CheckpointError(f"{where}: peft wraps modules that are not LayerNorms: {others[:10]}")
    return base, tuned, report


def to_open_clip(tower: dict[str, torch.Tensor], tuned_hf: dict[str, torch.Tensor],
                 projection: torch.Tensor | None) -> tuple[dict, dict]:
    """HF tower (+ tuned LNs by HF key) -> open_clip visual dict and tuned LNs by open_clip key."""
    fp32 = {k: v.detach().to(torch.float32) for k, v in tower.items()}
    visual = hf_to_open_clip(fp32, None if projection is None else projection.detach().to(torch.float32))
    tuned = {open_clip_name(k): v.detach().to(torch.float32) for k, v in tuned_hf.items()}
    for k, v in tuned.items():
        if visual[k].shape != v.shape:
            raise ConversionError(f"tuned {k} has shape {tuple(v.shape)}, the tower's has {tuple(visual[k].shape)}")
    return visual, tuned


def check_head(weight: torch.Tensor, bias: torch.Tensor, width: int, where: str) -> None:
    if tuple(weight.shape) != (2, width) or tuple(bias.shape) != (2,):
        raise CheckpointError(f"{where}: head is {tuple(weight.shape)} + {tuple(bias.shape)}, expected (2, {width}) "
                              "+ (2,): dfdet imports binary real/fake heads only")


def overlay_of(model: ImportedModel) -> dict[str, torch.Tensor]:
    """The tensors a dfdet checkpoint of this method holds, named like Detector parameters."""
    out = {"head.weight": model.head_weight.float(), "head.bias": model.head_bias.float()}
    if model.spec.trains == "layernorm":
        for k in sorted(k for k in model.visual if _LN_KEY.search(k)):
            out[f"backbone.visual.{k}"] = model.tuned_ln.get(k, model.visual[k])
    elif model.tuned_ln:
        raise CheckpointError(f"method {model.spec.name} trains no LayerNorm, but the source has tuned LayerNorms")
    return out


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    import hashlib
    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(tensors[k].detach().to(torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def write_imported(model: ImportedModel, out: str | Path, force: bool = False) -> Path:
    """Write the overlay checkpoint and the backbone file into `out`, all or nothing."""
    out = Path(out)
    if sum(model.key_report.values()) != model.source_keys:
        raise CheckpointError(f"internal: {model.source_keys} source keys but {sum(model.key_report.values())} "
                              "accounted for; nothing written")
    if out.exists() and any(out.iterdir()) and not force:
        raise CheckpointError(f"{out} already exists and is not empty; choose another --out or pass --force")
    overlay = overlay_of(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.import-"))
    try:
        visual = {k: v.contiguous().clone() for k, v in model.visual.items()}
        save_file(visual, str(stage / BACKBONE_FILE), metadata={
            "format": BACKBONE_FORMAT, "model": model.arch, "weights": model.weights,
            "quick_gelu": json.dumps(model.quick_gelu), "source": model.source})
        meta = {
            "method": model.spec.name, "label": model.spec.label, "display_name": model.display_name,
            "source": model.source,
            "backbone": {"model": model.arch, "weights": model.weights},
            "backbone_file": {"file": BACKBONE_FILE, "sha256": file_sha256(stage / BACKBONE_FILE),
                              "quick_gelu": model.quick_gelu, "projection": "proj" in visual},
            "config": model.config,
            "trainable_params": int(sum(v.numel() for v in overlay.values())),
            "val_metrics": None,  # the source does not ship validation metrics
            "imported": {**model.origin, "source_keys": model.source_keys, "keys": model.key_report,
                         "dropped_keys": model.source_keys - sum(model.key_report.values())},
        }
        save_checkpoint(stage, overlay, meta)
        from ..swap import swap_folder
        swap_folder(stage, out)  # the old or the new checkpoint in place at every instant
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    return out


def is_imported(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / BACKBONE_FILE).is_file() and (folder / META_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()
