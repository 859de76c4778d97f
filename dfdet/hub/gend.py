"""GenD's released model (the paper's successor, e.g. Hugging Face yermandy/GenD_CLIP_L_14).

Layout (yermandy/GenD, src/hf/modeling_gend.py): a transformers PreTrainedModel saved with
`save_pretrained`, so `model.safetensors` + `config.json`. The state dict holds
`feature_extractor.vision_model.*` (the HF CLIP vision tower), `feature_extractor.visual_projection.weight`
and `model.linear.{weight,bias}`; config.json names `backbone` (an HF hub name) and `head`
("linear" | "LinearNorm"). GenD trains LayerNorms in place (no peft wrapper), so the file holds
only the trained values: the backbone written next to the overlay is GenD's own tower, and the
overlay is valid on that tower only (its weights id is derived from its contents).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from ..checkpoint import file_sha256
from ..errors import CheckpointError
from ..hf_convert import find_tower_prefix, hf_shape
from .imported import (HEAD_KEYS, ImportedModel, check_head, infer_arch, jsonable, method_for, tensors_sha256,
                       to_open_clip)

FORMAT = "gend-safetensors"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
DISPLAY_NAME = "GenD (authors' model)"
SOURCE = "imported from GenD's released checkpoint"
_LN = re.compile(r"(^|\.)(pre_layrnorm|post_layernorm|layer_norm1|layer_norm2)\.")


def gend_files(path: str | Path) -> tuple[Path, Path]:
    """(weights, config) of a GenD model given its folder or its .safetensors file."""
    path = Path(path)
    weights = path / WEIGHTS_NAME if path.is_dir() else path
    config = weights.parent / CONFIG_NAME
    if not weights.is_file():
        raise CheckpointError(f"GenD weights not found: {weights}")
    if not config.is_file():
        raise CheckpointError(f"GenD's {CONFIG_NAME} not found next to {weights}: it says which head "
                              "(linear or LinearNorm) the model uses; download it from the same repository")
    return weights, config


def looks_like_gend(path: str | Path) -> bool:
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if not (folder / CONFIG_NAME).is_file():
        return False
    try:
        cfg = json.loads((folder / CONFIG_NAME).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(cfg, dict) and (cfg.get("model_type") == "GenD" or {"backbone", "head"} <= set(cfg))


def convert_gend(sd: dict[str, torch.Tensor], config: dict, name: str = WEIGHTS_NAME) -> ImportedModel:
    prefix = find_tower_prefix(sd)
    if not prefix.endswith("vision_model."):
        raise CheckpointError(f"{name}: vision tower under {prefix!r}, expected feature_extractor.vision_model.")
    tower = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    proj_key = prefix[: -len("vision_model.")] + "visual_projection.weight"
    projection = sd.get(proj_key)
    known = {prefix + k for k in tower} | set(HEAD_KEYS) | ({proj_key} if projection is not None else set())
    missing = [k for k in HEAD_KEYS if k not in sd]
    unexpected = sorted(set(sd) - known)
    if missing or unexpected:
        raise CheckpointError(f"{name}: missing key(s) {missing}, unexpected key(s) {unexpected[:20]}. "
                              "Nothing was converted.")
    head = str(config.get("head", ""))
    if head not in ("linear", "LinearNorm"):
        raise CheckpointError(f"{name}: {CONFIG_NAME} head is {head!r}; dfdet imports linear or LinearNorm heads")
    visual, _ = to_open_clip(tower, {}, projection)
    shape = hf_shape(tower, projection)
    check_head(sd[HEAD_KEYS[0]], sd[HEAD_KEYS[1]], shape.width, name)
    hf_name = str(config["backbone"]) if config.get("backbone") is not None else None
    arch = infer_arch(shape, hf_name)
    ln_keys = sum(1 for k in tower if _LN.search(k))
    report = {"tower": len(tower) - ln_keys, "trained LayerNorm (overlay and backbone)": ln_keys,
              f"head ({', '.join(HEAD_KEYS)})": len(HEAD_KEYS)}
    if projection is not None:
        report["visual projection (backbone proj)"] = 1
    return ImportedModel(
        visual=visual, tuned_ln={}, head_weight=sd[HEAD_KEYS[0]], head_bias=sd[HEAD_KEYS[1]],
        spec=method_for("layernorm", head == "LinearNorm", False, name), arch=arch,
        weights=f"gend-{tensors_sha256(visual)[:12]}", quick_gelu=True, config=jsonable(config),
        display_name=DISPLAY_NAME, source=SOURCE, key_report=report, source_keys=len(sd),
        origin={"format": FORMAT, "file": name, "hf_backbone": hf_name,
                "assumes": "GenD's recipe: LayerNorms and the head trained, the rest of CLIP frozen"})


def import_gend(path: str | Path, out: str | Path, force: bool = False) -> Path:
    from safetensors.torch import load_file

    from .imported import write_imported
    weights, config_path = gend_files(path)
    try:
        sd = load_file(str(weights))
    except Exception as err:  # safetensors raises on anything that is not a valid header + buffer
        raise CheckpointError(f"{weights} is not a valid safetensors file ({err})") from None
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{config_path} is not valid JSON: {err}") from None
    model = convert_gend(sd, config, weights.name)
    model.origin["sha256"] = file_sha256(weights)
    return write_imported(model, out, force=force)
