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


def ln_order(backbone: VisionBackbone) -> list[str]:
    """The LayerNorms in forward order (ln_pre, each block's ln_1 and ln_2, ln_post): the rows of stacked
    gamma/beta tensors that grouped_forward and the exported runtimes (dfdet.runtime) take."""
    v = backbone.visual
    names = ["visual.ln_pre"]
    for i in range(len(v.transformer.resblocks)):
        names += [f"visual.transformer.resblocks.{i}.ln_1", f"visual.transformer.resblocks.{i}.ln_2"]
    return names + ["visual.ln_post"]


def stacked_tensors(backbone: VisionBackbone, overlays: list[Mapping[str, torch.Tensor]]
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """gamma and beta of every overlay as two [n_ln, k, D] tensors, rows in ln_order."""
    stacked = stack_overlays(backbone, overlays)
    order = ln_order(backbone)
    return (torch.stack([stacked[n][0] for n in order]), torch.stack([stacked[n][1] for n in order]))


def grouped_forward(backbone: VisionBackbone, pixels: torch.Tensor, gamma: torch.Tensor,
                    beta: torch.Tensor) -> torch.Tensor:
    """z_cls [k, B, width] of pixels [B, 3, H, W] with k LayerNorm settings gamma/beta [n_ln, k, D].

    The one definition of the grouped forward: multi_ln_forward calls it, and dfdet.runtime exports
    it, with gamma/beta as graph inputs, so the overlays stay exact fp32 whatever runs the matmuls.
    """
    v = backbone.visual
    k, b = gamma.shape[1], pixels.shape[0]
    # Patch embedding, class token and positions do not depend on LayerNorms: compute them once.
    x = v.conv1(pixels).flatten(2).transpose(1, 2)
    cls = v.class_embedding.to(x.dtype).expand(b, 1, -1)
    x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
    x = v.patch_dropout(x)
    x = x.unsqueeze(0).expand(k, *x.shape).reshape(k * b, *x.shape[1:])
    x = grouped_layer_norm(x, gamma[0], beta[0], v.ln_pre.eps)
    for i, blk in enumerate(v.transformer.resblocks):
        h = grouped_layer_norm(x, gamma[2 * i + 1], beta[2 * i + 1], blk.ln_1.eps)
        x = x + blk.ls_1(self_attention(blk.attn, h))
        h = grouped_layer_norm(x, gamma[2 * i + 2], beta[2 * i + 2], blk.ln_2.eps)
        x = x + blk.ls_2(blk.mlp(h))
    z = grouped_layer_norm(x[:, 0], gamma[-1], beta[-1], v.ln_post.eps)
    return z.view(k, b, -1)


def multi_ln_forward(backbone: VisionBackbone, pixels: torch.Tensor,
                     overlays: list[Mapping[str, torch.Tensor]]) -> list[torch.Tensor]:
    """z_cls of `pixels` [B, 3, H, W] under each LayerNorm overlay, from one batched forward.

    Returns one [B, width] tensor per overlay, equal to VisionBackbone.forward with that overlay
    loaded. Differentiable with respect to the overlay tensors. Activations are those of a batch of
    k*B images, so callers with large batches should split them.
    """
    _check_blocks(backbone)
    gamma, beta = stacked_tensors(backbone, overlays)
    return list(grouped_forward(backbone, pixels, gamma, beta).unbind(0))


def _head(z: torch.Tensor, tensors: Mapping[str, torch.Tensor], normalize: bool
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """p_fake and the features the head sees (z_cls, on the unit sphere for the Norm methods)."""
    if normalize:
        z = F.normalize(z, dim=-1)
    logits = F.linear(z, tensors["head.weight"].to(z), tensors["head.bias"].to(z))
    return F.softmax(logits.float(), dim=-1)[:, 1], z


@torch.no_grad()
def bank_forward(bank, pixels: torch.Tensor, names: list[str] | None = None, features: bool = False) -> dict:
    """Every LN-family checkpoint of a DetectorBank in one grouped forward on the bank's runtime engine.

    Returns p_fake per method ([B] numpy), or (p_fake, features) with features=True. Methods of other
    families still run their own model. `bank` is a dfdet.inference.DetectorBank.
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
        _check_blocks(bank.backbone)
        base = bank._base_ln  # the backbone's own LayerNorms; an entry's tensors override them
        overlays = [{**base, **bank.entries[n].tensors} for n in grouped]
        gamma, beta = stacked_tensors(bank.backbone, overlays)
        engine = getattr(bank, "engine", None)
        zs = (engine(pixels, gamma, beta) if engine is not None
              else grouped_forward(bank.backbone, pixels, gamma, beta))
        for n, z in zip(grouped, zs.unbind(0)):
            e = bank.entries[n]
            p, f = _head(z, e.tensors, e.spec.normalize)
            out[n] = (p.cpu().numpy(), f.float().cpu().numpy()) if features else p.cpu().numpy()
    for n in names:
        if n in out:
            continue
        model = bank.entries[n].model
        if features:
            f = model.embed(pixels)
            out[n] = (F.softmax(model.classify(f).float(), dim=-1)[:, 1].cpu().numpy(), f.float().cpu().numpy())
        else:
            out[n] = F.softmax(model(pixels).float(), dim=-1)[:, 1].cpu().numpy()
    return {n: out[n] for n in names}


def bank_predict(bank, pixels: torch.Tensor, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """DetectorBank.predict with every LN-family checkpoint in one grouped forward (see bank_forward)."""
    return bank_forward(bank, pixels, names)
