"""Saliency maps of one method's decision "fake", over the ViT's patch grid (16x16 for ViT-L/14 at 224).

Every map explains the fake logit of a method's own Detector (its LayerNorm overlay and head), is
one value per patch, and is min-max scaled to [0, 1] per image, so maps of two methods can be
compared and subtracted (difference_map).

Kinds:
- "gradcam": Grad-CAM from the maintained `grad-cam` package (pytorch_grad_cam.GradCAM) with a
  reshape of the patch tokens to the grid. Target layer: the **last block's ln_1**. The last
  block's *output* reaches z_cls only through the [CLS] token (ln_post reads token 0), so the
  gradient on its patch tokens is exactly zero; ln_1 of the last block is the last place where
  patch tokens still feed [CLS] (through that block's attention), and it is one of the
  LayerNorms each method tunes, so the map is read under the method's own overlay.
- "chefer": gradient-weighted relevance of Chefer et al. (ICCV 2021, "Generic Attention-model
  Explainability"): R <- R + E_h[(dA * A)+] R over blocks, row [CLS] of R. Class-specific.
- "rollout": attention rollout (Abnar & Zuidema 2020): product of head-averaged attention plus
  identity. It never looks at the head, so it shows where the tuned backbone looks, not why a
  method says fake; kept as the class-agnostic reference.
Chefer and rollout are written here (a few lines over the attention probabilities) because no
maintained package implements them for open_clip's ViT: `grad-cam` has only CAM-family methods,
captum has no attention rollout, and Chefer's code is a research repository, not a package.
"""
from __future__ import annotations

from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..backbone import sdpa_blocks
from ..errors import DfdetError

FAKE = 1  # logit index of the fake class in every Detector head
KINDS = {
    "gradcam": "Grad-CAM at the last block's ln_1 (grad-cam package)",
    "chefer": "Chefer et al. gradient-weighted attention relevance",
    "rollout": "attention rollout (class-agnostic: ignores the head)",
}


def grid_size(model: nn.Module) -> int:
    """Patches per side of the model's ViT (16 for ViT-L/14 at 224)."""
    g = model.backbone.visual.grid_size
    g = g[0] if isinstance(g, (tuple, list)) else g
    return int(g)


def _check(model: nn.Module, kind: str) -> None:
    if kind not in KINDS:
        raise DfdetError(f"unknown map kind {kind!r}; choose one of {', '.join(KINDS)}")
    if not hasattr(model, "backbone") or not hasattr(model, "classify"):
        raise DfdetError("saliency maps need a LayerNorm-family Detector (z_cls + linear head); "
                         f"got {type(model).__name__}")
    if not sdpa_blocks(model.backbone.visual.transformer):
        raise DfdetError("saliency maps support open_clip's plain batch-first ViT blocks only")


def _normalise(maps: torch.Tensor | np.ndarray) -> np.ndarray:
    """Per image, scale to [0, 1] (an all-equal map becomes all zeros)."""
    m = torch.as_tensor(maps).detach().float()
    flat = m.flatten(1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(m).cpu().numpy()


# -- Grad-CAM (library) -----------------------------------------------------------------------

def tokens_to_grid(tokens: torch.Tensor, g: int) -> torch.Tensor:
    """[B, 1 + g*g, D] tokens -> [B, D, g, g], dropping [CLS]: the layout grad-cam expects of a CNN map."""
    b, n, d = tokens.shape
    if n != 1 + g * g:
        raise DfdetError(f"expected {1 + g * g} tokens for a {g}x{g} grid, got {n}")
    return tokens[:, 1:, :].reshape(b, g, g, d).permute(0, 3, 1, 2)


def target_layer(model: nn.Module) -> nn.Module:
    """The layer Grad-CAM reads: the last block's ln_1 (see the module docstring for why)."""
    return model.backbone.visual.transformer.resblocks[-1].ln_1


def gradcam(model: nn.Module, pixels: torch.Tensor) -> np.ndarray:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    g = grid_size(model)

    class GridGradCAM(GradCAM):
        def get_target_width_height(self, input_tensor):  # keep the patch grid: no resize to pixels
            return g, g

    cam = GridGradCAM(model=model, target_layers=[target_layer(model)], reshape_transform=partial(tokens_to_grid, g=g))
    try:
        with torch.enable_grad():  # the input carries the graph even where every weight is frozen
            out = cam(input_tensor=pixels.detach().requires_grad_(True),
                      targets=[ClassifierOutputTarget(FAKE)] * len(pixels))
    finally:
        cam.activations_and_grads.release()
        model.zero_grad(set_to_none=True)
    return np.asarray(out, dtype=np.float32).reshape(len(pixels), g, g)


# -- attention-based maps (written here) ------------------------------------------------------

def _attention(attn: nn.MultiheadAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-attention with the probabilities kept: (output [B, N, D], probs [B, heads, N, N])."""
    b, n, d = x.shape
    h = attn.num_heads
    q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
    a = torch.softmax((q * (d // h) ** -0.5) @ k.transpose(-2, -1), dim=-1)
    o = (a @ v).transpose(1, 2).reshape(b, n, d)
    return attn.out_proj(o), a


def traced_forward(model: nn.Module, pixels: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The Detector's logits with every block's attention probabilities (same maths as model(pixels))."""
    v = model.backbone.visual
    x = v.conv1(pixels).flatten(2).transpose(1, 2)
    cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
    x = v.ln_pre(v.patch_dropout(x))
    attns = []
    for blk in v.transformer.resblocks:
        o, a = _attention(blk.attn, blk.ln_1(x))
        attns.append(a)
        x = x + blk.ls_1(o)
        x = x + blk.ls_2(blk.mlp(blk.ln_2(x)))
    z = v.ln_post(x[:, 0])
    if model.spec.normalize:
        z = F.normalize(z, dim=-1)
    return model.classify(z), attns


def chefer(model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():
        logits, attns = traced_forward(model, pixels)
        grads = torch.autograd.grad(logits[:, FAKE].sum(), attns)  # images are independent: one backward
    b, n = pixels.shape[0], attns[0].shape[-1]
    r = torch.eye(n, device=pixels.device).expand(b, n, n).clone()
    for a, da in zip(attns, grads):
        r = r + (da * a).clamp_min(0).mean(1).detach() @ r
    return r[:, 0, 1:].reshape(b, grid_size(model), -1)


@torch.no_grad()
def rollout(model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    _, attns = traced_forward(model, pixels)
    b, n = pixels.shape[0], attns[0].shape[-1]
    eye = torch.eye(n, device=pixels.device)
    r = eye.expand(b, n, n).clone()
    for a in attns:
        m = 0.5 * a.mean(1) + 0.5 * eye
        r = (m / m.sum(-1, keepdim=True)) @ r
    return r[:, 0, 1:].reshape(b, grid_size(model), -1)


_KIND_FN = {"gradcam": gradcam, "chefer": chefer, "rollout": rollout}


def saliency_maps(model: nn.Module, pixels: torch.Tensor, kind: str = "gradcam") -> np.ndarray:
    """[B, g, g] maps in [0, 1] of the fake decision of `model` for preprocessed `pixels` [B, 3, H, W]."""
    _check(model, kind)
    was_training = model.training
    model.eval()
    try:
        return _normalise(_KIND_FN[kind](model, pixels.float()))
    finally:
        model.train(was_training)


def difference_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a - b of two [0, 1] maps of the same face, in [-1, 1]: where method a looks more than method b."""
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    if a.shape != b.shape:
        raise DfdetError(f"maps of different grids cannot be subtracted: {a.shape} vs {b.shape}")
    return a - b


def method_maps(bank, pixels: torch.Tensor, names: list[str], kind: str = "gradcam") -> dict[str, np.ndarray]:
    """Maps of each named bank method for the same faces: {name: [B, g, g]}. Methods without a
    LayerNorm-family Detector (the text methods) are refused with the reason."""
    out = {}
    for name in names:
        model = bank.method_model(name)
        out[name] = saliency_maps(model, pixels, kind)
    return out
