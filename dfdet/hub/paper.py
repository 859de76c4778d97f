"""The paper's released checkpoint: a PyTorch Lightning `.ckpt` of its `DeepfakeDetectionModel`.

Layout (yermandy/deepfake-detection, src/model and src/config):
  state_dict  feature_extractor = peft LN-tuning around a CLIPEncoder whose `vision_model` is the HF
              CLIP vision tower (and, in some versions, `visual_projection`); model = LinearProbe
              with `linear`. So keys look like
              `feature_extractor.base_model.model.vision_model.encoder.layers.0.layer_norm1`
              + `.ln_tuning_layers.default.weight` (and `.base_layer.weight`), and `model.linear.weight`.
  hyper_parameters  the pydantic Config as a dict: `head` ("linear" | "LinearNorm"), `peft.ln_tuning.enabled`,
              `slerp_feature_augmentation`, `slerp_feature_augmentation_range`, `loss` weights, `backbone`
              (an HF hub name such as openai/clip-vit-large-patch14), `freeze_feature_extractor`, ...

A .ckpt is a pickle, so it is read only with `torch.load(weights_only=True)` and an explicit allowlist,
and only when the user runs an import.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from ..checkpoint import file_sha256
from ..errors import CheckpointError
from ..hf_convert import find_tower_prefix, hf_shape
from .imported import (HEAD_KEYS, OPENAI_HF_NAMES, ImportedModel, check_head, infer_arch, jsonable, method_for,
                       split_peft_tower, tensors_sha256, to_open_clip)

FORMAT = "lightning+peft"
DISPLAY_NAME = "Paper (authors' model)"
SOURCE = "imported from the paper's checkpoint"


class _EnumValue(str):
    """Stands in for the paper's str-enums (`src.config.Head` ...): unpickles to the plain value, runs nothing."""


# The only non-container types a Lightning checkpoint of the paper's model is expected to name, each mapped
# to a plain type that just holds data: pydantic's model_dump() can leave the paper's str-enum defaults as
# enum members (-> str), and Lightning versions differ in whether hparams are an AttributeDict (-> dict).
SAFE_GLOBALS = [(_EnumValue, f"src.config.{name}") for name in ("Head", "Backbone", "Optimizer", "InferenceStrategy")]
SAFE_GLOBALS += [(dict, f"{module}.AttributeDict") for module in (
    "lightning.fabric.utilities.data", "lightning_fabric.utilities.data", "pytorch_lightning.utilities.parsing")]


def load_lightning_checkpoint(path: str | Path) -> dict:
    """Read a Lightning checkpoint without executing anything it names beyond tensors and containers."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            ckpt = torch.load(str(path), map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as err:
        found = sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(err))))
        if not found:
            detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(err))
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint "
                                  f"({detail.group(1) if detail else str(err).splitlines()[0]})") from None
        raise CheckpointError(
            f"refused to load {path}: it names {', '.join(found)}, which a weights-only load does not allow. "
            "dfdet never unpickles arbitrary objects, because a crafted file can run code when unpickled. "
            "If this really is the paper's checkpoint, report the type named above.") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({str(err).splitlines()[0]})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{path} is not a Lightning checkpoint: no 'state_dict' dict at the top level "
                              f"(found keys {sorted(ckpt)[:10] if isinstance(ckpt, dict) else type(ckpt).__name__})")
    return ckpt


def _flag(hp: dict, *path, default=None):
    node = hp
    for p in path:
        if not isinstance(node, dict) or p not in node:
            return default
        node = node[p]
    return node


def convert_paper(ckpt: dict, name: str = "model.ckpt") -> ImportedModel:
    """Lightning checkpoint dict -> ImportedModel; fails listing any key it cannot place."""
    sd: dict[str, torch.Tensor] = dict(ckpt["state_dict"])
    hp = dict(ckpt.get("hyper_parameters") or {})
    non_tensors = sorted(k for k, v in sd.items() if not isinstance(v, torch.Tensor))
    if non_tensors:
        raise CheckpointError(f"{name}: state_dict entries that are not tensors: {non_tensors[:10]}")

    prefix = find_tower_prefix(sd)
    tower = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    proj_key = None  # CLIPEncoder keeps `visual_projection` next to `vision_model` in some versions
    if prefix.endswith("vision_model."):
        proj_key = prefix[: -len("vision_model.")] + "visual_projection.weight"
    projection = sd.get(proj_key) if proj_key else None
    head_missing = [k for k in HEAD_KEYS if k not in sd]
    known = {prefix + k for k in tower} | set(HEAD_KEYS) | ({proj_key} if projection is not None else set())
    unexpected = sorted(set(sd) - known)
    if head_missing or unexpected:
        raise CheckpointError(f"{name}: missing key(s) {head_missing}, unexpected key(s) {unexpected[:20]}"
                              f"{' ...' if len(unexpected) > 20 else ''}. Nothing was converted.")

    base, tuned_hf, report = split_peft_tower(tower, name)
    visual, tuned = to_open_clip(base, tuned_hf, projection)
    shape = hf_shape(base, projection)
    check_head(sd[HEAD_KEYS[0]], sd[HEAD_KEYS[1]], shape.width, name)

    # Method: what was trained (peft LN-tuning or nothing), how the head reads z_cls, SLERP.
    head = str(hp.get("head", "linear"))
    if head not in ("linear", "LinearNorm"):
        raise CheckpointError(f"{name}: head {head!r} is not a linear head on z_cls (linear or LinearNorm)")
    if _flag(hp, "peft", "enabled") and _flag(hp, "peft", "lora", "enabled"):
        raise CheckpointError(f"{name}: trained with LoRA; dfdet's methods tune LayerNorms only")
    unfrozen = [str(x) for x in hp.get("unfreeze_layers") or []]
    if hp.get("freeze_feature_extractor") is False or unfrozen:
        raise CheckpointError(f"{name}: the CLIP encoder was trained beyond peft LN-tuning "
                              f"(freeze_feature_extractor={hp.get('freeze_feature_extractor')}, "
                              f"unfreeze_layers={unfrozen}); that is not an overlay dfdet can represent")
    ln_flag = bool(_flag(hp, "peft", "enabled") and _flag(hp, "peft", "ln_tuning", "enabled"))
    if hp and ln_flag != bool(tuned):
        raise CheckpointError(f"{name}: hyper_parameters say LN-tuning={ln_flag}, but the state_dict "
                              f"{'has' if tuned else 'has no'} LN-tuning layers")
    spec = method_for("layernorm" if tuned else "head", head == "LinearNorm",
                      bool(hp.get("slerp_feature_augmentation", False)), name)

    hf_name = hp.get("backbone")
    hf_name = str(hf_name) if hf_name is not None else None
    arch = infer_arch(shape, hf_name)
    # Frozen OpenAI weights (checked above) are exactly open_clip's "openai" tag; anything else is its own.
    weights = "openai" if hf_name in OPENAI_HF_NAMES else f"imported-{tensors_sha256(visual)[:12]}"
    report[f"head ({', '.join(HEAD_KEYS)})"] = len(HEAD_KEYS)
    if projection is not None:
        report["visual projection (backbone proj)"] = 1
    return ImportedModel(
        visual=visual, tuned_ln=tuned, head_weight=sd[HEAD_KEYS[0]], head_bias=sd[HEAD_KEYS[1]], spec=spec,
        arch=arch, weights=weights, quick_gelu=True, config=jsonable(hp), display_name=DISPLAY_NAME,
        source=SOURCE, key_report=report, source_keys=len(sd),
        origin={"format": FORMAT, "file": name, "epoch": ckpt.get("epoch"), "global_step": ckpt.get("global_step"),
                "lightning_version": ckpt.get("pytorch-lightning_version"), "hf_backbone": hf_name})


def import_paper(path: str | Path, out: str | Path, force: bool = False) -> Path:
    from .imported import write_imported
    path = Path(path)
    model = convert_paper(load_lightning_checkpoint(path), path.name)
    model.origin["sha256"] = file_sha256(path)
    return write_imported(model, out, force=force)
