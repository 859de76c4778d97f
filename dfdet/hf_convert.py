"""Weight conversion between open_clip's VisionTransformer and HF `transformers` CLIP vision towers.

The paper (and GenD) run `CLIPVisionModel(...).pooler_output`; dfdet runs open_clip's ViT up to
z_cls. The two compute the same function once the names are mapped and HF's separate q/k/v
projections are stacked into open_clip's single `in_proj`. Both directions are strict: every key
of the input is used or explicitly accounted for, and anything else fails with a listing.

Keys on the HF side are a vision tower's own keys (`embeddings.*`, `pre_layrnorm.*`, `encoder.*`,
`post_layernorm.*`), without the prefix under which a model holds the tower: transformers 4 nests it
as `vision_model.` in CLIPVisionModel, transformers 5 does not, and the paper's Lightning module
adds its own; `find_tower_prefix` finds it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import torch
from torch import nn

from .errors import CheckpointError

PATCH_KEY = "embeddings.patch_embedding.weight"  # one key every CLIP vision tower has exactly once

# Layer norms: HF name -> open_clip name (top-level; per-block ones are in _BLOCK_MAP).
TOP_MAP = {
    "embeddings.class_embedding": "class_embedding",
    "embeddings.patch_embedding.weight": "conv1.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "pre_layrnorm.weight": "ln_pre.weight",  # sic: HF spells it "layrnorm"
    "pre_layrnorm.bias": "ln_pre.bias",
    "post_layernorm.weight": "ln_post.weight",
    "post_layernorm.bias": "ln_post.bias",
}
_BLOCK_MAP = {
    "layer_norm1.weight": "ln_1.weight",
    "layer_norm1.bias": "ln_1.bias",
    "layer_norm2.weight": "ln_2.weight",
    "layer_norm2.bias": "ln_2.bias",
    "self_attn.out_proj.weight": "attn.out_proj.weight",
    "self_attn.out_proj.bias": "attn.out_proj.bias",
    "mlp.fc1.weight": "mlp.c_fc.weight",
    "mlp.fc1.bias": "mlp.c_fc.bias",
    "mlp.fc2.weight": "mlp.c_proj.weight",
    "mlp.fc2.bias": "mlp.c_proj.bias",
}
_QKV = ("q_proj", "k_proj", "v_proj")  # open_clip's in_proj stacks them in this order
# Buffers some transformers versions saved; derivable, so accepted and checked rather than kept.
DERIVED_HF_KEYS = ("embeddings.position_ids",)
# HF names of every LayerNorm in a CLIP vision tower (what peft's LNTuningConfig targets).
HF_LN_MODULES = ("pre_layrnorm", "layer_norm1", "layer_norm2", "post_layernorm")

_HF_LAYER = re.compile(r"^encoder\.layers\.(\d+)\.(.+)$")
_OC_LAYER = re.compile(r"^transformer\.resblocks\.(\d+)\.(.+)$")


class ConversionError(CheckpointError):
    """A state dict does not have exactly the keys and shapes of a CLIP ViT."""


@dataclass(frozen=True)
class VisionShape:
    """What a state dict tells about a CLIP ViT (heads are not visible in weights)."""
    width: int  # hidden size (1024 for ViT-L/14)
    layers: int  # transformer blocks
    patch_size: int  # patch conv kernel = stride
    image_size: int  # side of the square input; grid = image_size / patch_size
    mlp_dim: int  # hidden size of each block's MLP
    output_dim: int | None  # projection width, None when the checkpoint carries no projection


def _fail(what: str, missing: list[str], unexpected: list[str]) -> None:
    if missing or unexpected:
        def show(keys):
            return ", ".join(keys[:20]) + (f" ... (+{len(keys) - 20} more)" if len(keys) > 20 else "")
        raise ConversionError(
            f"{what}: {len(missing)} missing key(s) [{show(missing)}], "
            f"{len(unexpected)} unexpected key(s) [{show(unexpected)}]. "
            "Nothing was converted; the file is not a CLIP ViT of the expected layout.")


def _num_layers(keys, pattern: re.Pattern) -> int:
    ids = {int(m.group(1)) for k in keys if (m := pattern.match(k))}
    if ids and ids != set(range(max(ids) + 1)):
        raise ConversionError(f"transformer blocks are not numbered 0..N-1: found {sorted(ids)}")
    return len(ids)


def find_tower_prefix(keys) -> str:
    """The prefix under which a state dict holds its (single) CLIP vision tower."""
    found = sorted(k[: -len(PATCH_KEY)] for k in keys if k.endswith(PATCH_KEY))
    if len(found) != 1:
        raise ConversionError(f"expected exactly one CLIP vision tower (a key ending in {PATCH_KEY}), "
                              f"found {len(found)}: {found[:5]}")
    return found[0]


def hf_keys(layers: int) -> list[str]:
    """Every key of an HF CLIPVisionTransformer with `layers` blocks (no projection)."""
    keys = list(TOP_MAP)
    for i in range(layers):
        keys += [f"encoder.layers.{i}.{k}" for k in _BLOCK_MAP]
        keys += [f"encoder.layers.{i}.self_attn.{p}.{t}" for p in _QKV for t in ("weight", "bias")]
    return keys


def open_clip_keys(layers: int, projection: bool) -> list[str]:
    keys = list(TOP_MAP.values()) + (["proj"] if projection else [])
    for i in range(layers):
        keys += [f"transformer.resblocks.{i}.{v}" for v in _BLOCK_MAP.values()]
        keys += [f"transformer.resblocks.{i}.attn.in_proj_weight", f"transformer.resblocks.{i}.attn.in_proj_bias"]
    return keys


def open_clip_name(hf_key: str) -> str:
    """open_clip name of one HF tower key (not q/k/v, which are stacked rather than renamed)."""
    if hf_key in TOP_MAP:
        return TOP_MAP[hf_key]
    m = _HF_LAYER.match(hf_key)
    if m and m.group(2) in _BLOCK_MAP:
        return f"transformer.resblocks.{m.group(1)}.{_BLOCK_MAP[m.group(2)]}"
    raise ConversionError(f"{hf_key} has no single open_clip counterpart")


def hf_shape(hf: Mapping[str, torch.Tensor], projection: torch.Tensor | None = None) -> VisionShape:
    try:
        patch = hf["embeddings.patch_embedding.weight"]
        pos = hf["embeddings.position_embedding.weight"]
        mlp = hf["encoder.layers.0.mlp.fc1.weight"]
    except KeyError as err:
        raise ConversionError(f"not a CLIP vision tower: key {err.args[0]!r} is missing") from None
    grid = round((pos.shape[0] - 1) ** 0.5)
    if grid * grid + 1 != pos.shape[0]:
        raise ConversionError(f"position embedding has {pos.shape[0]} rows, not 1 + a square number of patches")
    return VisionShape(width=patch.shape[0], layers=_num_layers(hf, _HF_LAYER), patch_size=patch.shape[-1],
                       image_size=grid * patch.shape[-1], mlp_dim=mlp.shape[0],
                       output_dim=None if projection is None else projection.shape[0])


def hf_to_open_clip(hf: Mapping[str, torch.Tensor], projection: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """HF CLIPVisionTransformer keys (+ optional `visual_projection.weight`) -> open_clip `visual` keys."""
    layers = _num_layers(hf, _HF_LAYER)
    expected = set(hf_keys(layers))
    given = set(hf) - set(DERIVED_HF_KEYS)
    _fail("HF CLIP vision weights", sorted(expected - given), sorted(given - expected))
    if "embeddings.position_ids" in hf:
        ids = hf["embeddings.position_ids"].flatten()
        if not torch.equal(ids.long(), torch.arange(ids.numel())):
            raise ConversionError("embeddings.position_ids is not 0..N-1; this tower indexes positions unusually")
    out: dict[str, torch.Tensor] = {}
    for k, v in TOP_MAP.items():
        out[v] = hf[k]
    for i in range(layers):
        src, dst = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for k, v in _BLOCK_MAP.items():
            out[dst + v] = hf[src + k]
        # "query, key, value projections for all heads, stacked": open_clip's MultiheadAttention layout
        out[dst + "attn.in_proj_weight"] = torch.cat([hf[f"{src}self_attn.{p}.weight"] for p in _QKV], 0)
        out[dst + "attn.in_proj_bias"] = torch.cat([hf[f"{src}self_attn.{p}.bias"] for p in _QKV], 0)
    if projection is not None:
        out["proj"] = projection.t()  # HF Linear(width -> dim, no bias) stores [dim, width]; open_clip x @ proj
    _check_shapes(out)
    return out


def open_clip_to_hf(visual: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """open_clip `visual` state dict -> (HF CLIPVisionTransformer keys, visual_projection.weight or None)."""
    layers = _num_layers(visual, _OC_LAYER)
    projection = "proj" in visual and visual["proj"] is not None
    expected = set(open_clip_keys(layers, projection))
    _fail("open_clip visual weights", sorted(expected - set(visual)), sorted(set(visual) - expected))
    _check_shapes(visual)
    out: dict[str, torch.Tensor] = {k: visual[v] for k, v in TOP_MAP.items()}
    for i in range(layers):
        src, dst = f"transformer.resblocks.{i}.", f"encoder.layers.{i}."
        for k, v in _BLOCK_MAP.items():
            out[dst + k] = visual[src + v]
        for name, part in zip(_QKV, visual[src + "attn.in_proj_weight"].chunk(3, 0)):
            out[f"{dst}self_attn.{name}.weight"] = part
        for name, part in zip(_QKV, visual[src + "attn.in_proj_bias"].chunk(3, 0)):
            out[f"{dst}self_attn.{name}.bias"] = part
    return out, (visual["proj"].t() if projection else None)


def _check_shapes(oc: Mapping[str, torch.Tensor]) -> None:
    """Cross-check shapes so a truncated or mixed-up tower fails here, not deep inside a forward pass."""
    width = oc["conv1.weight"].shape[0]
    mlp = oc["transformer.resblocks.0.mlp.c_fc.weight"].shape[0] if "transformer.resblocks.0.mlp.c_fc.weight" in oc \
        else None
    per_block = {"ln_1.weight": (width,), "ln_1.bias": (width,), "ln_2.weight": (width,), "ln_2.bias": (width,),
                 "attn.in_proj_weight": (3 * width, width), "attn.in_proj_bias": (3 * width,),
                 "attn.out_proj.weight": (width, width), "attn.out_proj.bias": (width,),
                 "mlp.c_fc.weight": (mlp, width), "mlp.c_fc.bias": (mlp,),
                 "mlp.c_proj.weight": (width, mlp), "mlp.c_proj.bias": (width,)}
    top = {"class_embedding": (width,), "ln_pre.weight": (width,), "ln_pre.bias": (width,),
           "ln_post.weight": (width,), "ln_post.bias": (width,)}
    bad = []
    for k, v in oc.items():
        m = _OC_LAYER.match(k)
        want = per_block.get(m.group(2)) if m else top.get(k)
        if k == "positional_embedding":
            want = (v.shape[0], width)
        elif k == "proj":
            want = (width, v.shape[-1])
        elif k == "conv1.weight":
            want = (width, v.shape[1], v.shape[2], v.shape[2])
        if want is not None and tuple(v.shape) != want:
            bad.append(f"{k}: {tuple(v.shape)}, expected {want}")
    if bad:
        raise ConversionError(f"inconsistent CLIP ViT shapes (width {width}): " + "; ".join(bad[:10]))


def hf_vision_config(visual: nn.Module, **overrides):
    """A transformers CLIPVisionConfig describing an open_clip VisionTransformer."""
    from open_clip.transformer import QuickGELU
    from transformers import CLIPVisionConfig
    block = visual.transformer.resblocks[0]
    size = visual.image_size
    patch = visual.patch_size
    kw = dict(
        hidden_size=visual.conv1.out_channels,
        intermediate_size=block.mlp.c_fc.out_features,
        num_hidden_layers=len(visual.transformer.resblocks),
        num_attention_heads=block.attn.num_heads,
        image_size=size[0] if isinstance(size, (tuple, list)) else size,
        patch_size=patch[0] if isinstance(patch, (tuple, list)) else patch,
        projection_dim=visual.proj.shape[1] if getattr(visual, "proj", None) is not None else 512,
        hidden_act="quick_gelu" if isinstance(block.mlp.gelu, QuickGELU) else "gelu",
        layer_norm_eps=visual.ln_post.eps,
        num_channels=visual.conv1.in_channels,
    )
    kw.update(overrides)
    return CLIPVisionConfig(**kw)
