"""Several LayerNorm overlays of one ViT in a single batched forward.

The LN methods (ln_tuning, ln_norm, ln_norm_slerp) and the linear probe share every weight except
LayerNorm gamma/beta and the head. So instead of k forwards with parameters swapped in between,
the batch is replicated k times and each LayerNorm applies per-group gamma/beta: the patch
embedding runs once, and the big matmuls run once on k*B rows, with the weights read once.
tests/test_multi_ln.py proves the result equals k separate forwards.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .backbone import VisionBackbone, sdpa_blocks, self_attention

PREFIX = "backbone."  # Detector/checkpoint keys carry it; backbone.named_parameters() keys do not


def _ln_names(backbone: VisionBackbone) -> dict[str, nn.LayerNorm]:
    """LayerNorms by their parameter prefix in backbone.named_parameters(), e.g. 'visual.ln_pre'."""
    return {f"visual.{n}": m for n, m in backbone.visual.named_modules() if isinstance(m, nn.LayerNorm)}


def stack_overlays(backbone: VisionBackbone, overlays: list[Mapping[str, torch.Tensor]]
                   ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per LayerNorm, gamma and beta stacked over the overlays: {'visual.ln_pre': ([k, D], [k, D])}.

    An overlay maps parameter names (as in backbone.named_parameters(), or with the 'backbone.'
    prefix of Detector/checkpoint keys) to tensors. A LayerNorm it does not name keeps the
    backbone's own gamma/beta. Keys outside the backbone (e.g. 'head.weight') are ignored;
    backbone parameters that are not LayerNorm affine parameters cannot vary per group.
    """
    if not overlays:
        raise ValueError("multi_ln_forward needs at least one overlay (an empty dict means the backbone as is)")
    lns = _ln_names(backbone)
    params = dict(backbone.named_parameters())
    clean: list[dict[str, torch.Tensor]] = []
    for i, ov in enumerate(overlays):
        own = {}
        for key, value in ov.items():
            name = key[len(PREFIX):] if key.startswith(PREFIX) else key
            if name not in params:
                continue  # the head, or another module's tensor
            mod, _, kind = name.rpartition(".")
            if mod not in lns or kind not in ("weight", "bias"):
                raise ValueError(f"overlay {i}: {key} is not a LayerNorm gamma/beta; only those can differ per group")
            if tuple(value.shape) != tuple(params[name].shape):
                raise ValueError(f"overlay {i}: {key} has shape {tuple(value.shape)}, "
                                 f"expected {tuple(params[name].shape)}")
            own[name] = value
        clean.append(own)
    out = {}
    for mod, ln in lns.items():
        gamma = torch.stack([ov.get(f"{mod}.weight", ln.weight).to(ln.weight) for ov in clean])
        beta = torch.stack([ov.get(f"{mod}.bias", ln.bias).to(ln.bias) for ov in clean])
        out[mod] = (gamma, beta)
    return out


def grouped_layer_norm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm of x [k*B, ..., D] where group g (rows g*B .. g*B+B-1) uses gamma[g], beta[g] ([k, D])."""
    k, d = gamma.shape
    y = F.layer_norm(x, (d,), None, None, eps)
    shape = (k, 1) + (1,) * (x.dim() - 2) + (d,)
    yg = y.view(k, -1, *x.shape[1:])
    out = torch.addcmul(beta.view(shape).to(y.dtype), yg, gamma.view(shape).to(y.dtype))
    return out.view(x.shape).to(x.dtype)  # like open_clip's LayerNorm: back to the input dtype


def _check_blocks(backbone: VisionBackbone) -> None:
    if not sdpa_blocks(backbone.visual.transformer):
        raise ValueError("multi_ln_forward supports open_clip's plain batch-first ResidualAttentionBlocks "
                         f"(got {type(backbone.visual.transformer.resblocks[0]).__name__})")


def multi_ln_forward(backbone: VisionBackbone, pixels: torch.Tensor,
                     overlays: list[Mapping[str, torch.Tensor]]) -> list[torch.Tensor]:
    """z_cls of `pixels` [B, 3, H, W] under each LayerNorm overlay, from one batched forward.

    Returns one [B, width] tensor per overlay, equal to VisionBackbone.forward with that overlay
    loaded. Differentiable with respect to the overlay tensors. Activations are those of a batch of
    k*B images, so callers with large batches should split them.
    """
    _check_blocks(backbone)
    stacked = stack_overlays(backbone, overlays)
    k, v = len(overlays), backbone.visual
    b = pixels.shape[0]
    # Patch embedding, class token and positions do not depend on LayerNorms: compute them once.
    x = v.conv1(pixels).flatten(2).transpose(1, 2)
    cls = v.class_embedding.to(x.dtype).expand(b, 1, -1)
    x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
    x = v.patch_dropout(x)
    x = x.unsqueeze(0).expand(k, *x.shape).reshape(k * b, *x.shape[1:])
    x = grouped_layer_norm(x, *stacked["visual.ln_pre"], v.ln_pre.eps)
    for i, blk in enumerate(v.transformer.resblocks):
        h = grouped_layer_norm(x, *stacked[f"visual.transformer.resblocks.{i}.ln_1"], blk.ln_1.eps)
        x = x + blk.ls_1(self_attention(blk.attn, h))
        h = grouped_layer_norm(x, *stacked[f"visual.transformer.resblocks.{i}.ln_2"], blk.ln_2.eps)
        x = x + blk.ls_2(blk.mlp(h))
    z = grouped_layer_norm(x[:, 0], *stacked["visual.ln_post"], v.ln_post.eps)
    return list(z.view(k, b, -1).unbind(0))


def _head_p_fake(z: torch.Tensor, tensors: Mapping[str, torch.Tensor], normalize: bool) -> torch.Tensor:
    if normalize:
        z = F.normalize(z, dim=-1)
    logits = F.linear(z, tensors["head.weight"].to(z), tensors["head.bias"].to(z))
    return F.softmax(logits.float(), dim=-1)[:, 1]


@torch.no_grad()
def bank_predict(bank, pixels: torch.Tensor, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """DetectorBank.predict with every LN-family checkpoint in one multi_ln_forward.

    Same contract as DetectorBank.predict (p_fake per ready method); methods of other families
    still run their own model. `bank` is a dfdet.inference.DetectorBank.
    """
    from .errors import DfdetError
    names = list(names or bank.ready)
    grouped, out = [], {}
    for name in names:
        e = bank.entries[name]
        if e.status != "ready":
            raise DfdetError(f"{name}: {e.message}")
        if e.model is None:
            grouped.append(name)
    if grouped:
        base = bank._base_ln  # the backbone's own LayerNorms; an entry's tensors override them
        overlays = [{**base, **bank.entries[n].tensors} for n in grouped]
        zs = multi_ln_forward(bank.backbone, pixels, overlays)
        for n, z in zip(grouped, zs):
            e = bank.entries[n]
            out[n] = _head_p_fake(z, e.tensors, e.spec.normalize).cpu().numpy()
    for n in names:
        if n not in out:
            logits = bank.entries[n].model(pixels)
            out[n] = F.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy()
    return {n: out[n] for n in names}
