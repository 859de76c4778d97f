"""Spherical interpolation and the hypersphere losses of Wang & Isola (2020).

SLERP moves along the great circle between two unit vectors, so augmented features stay on the
sphere the L2-normalised head sees; a straight line (mixup) would cut through the ball.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def slerp(x: torch.Tensor, y: torch.Tensor, t: torch.Tensor | float, eps: float = 1e-7) -> torch.Tensor:
    """Interpolate unit vectors x -> y along the great circle; rows are vectors, t broadcasts per row."""
    x = F.normalize(x, dim=-1)
    y = F.normalize(y, dim=-1)
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.dim() == 1:
        t = t.unsqueeze(-1)
    cos = (x * y).sum(-1, keepdim=True).clamp(-1 + eps, 1 - eps)
    theta = torch.acos(cos)
    sin = torch.sin(theta)
    # Nearly parallel vectors: fall back to normalised linear interpolation (no 0/0).
    near = sin < 1e-4
    a = torch.where(near, 1 - t, torch.sin((1 - t) * theta) / sin.clamp_min(1e-12))
    b = torch.where(near, t, torch.sin(t * theta) / sin.clamp_min(1e-12))
    return F.normalize(a * x + b * y, dim=-1)


def same_class_partners(labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """For each row, a row of the same label: a random permutation within each class, as the reference
    pairs them (src/model/dfdet.py:291-294, torch.randperm); a row alone in its class keeps itself."""
    n = labels.shape[0]
    idx = torch.arange(n, device=labels.device)
    partner = idx.clone()
    for c in labels.unique():
        members = idx[labels == c]
        pick = torch.randperm(len(members), generator=generator, device="cpu").to(labels.device)
        partner[members] = members[pick]
    return partner


def slerp_augment(features: torch.Tensor, labels: torch.Tensor, t_range: tuple[float, float] = (0.0, 1.0),
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each feature by slerp(x_i, x_j, t) with x_j of the same class and t ~ U(t0, t1)."""
    partner = same_class_partners(labels, generator)
    t0, t1 = t_range
    t = torch.rand(features.shape[0], generator=generator).to(features) * (t1 - t0) + t0
    return slerp(features, features[partner], t)


def alignment_loss(x: torch.Tensor, labels: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Mean ||x_i - x_j||^alpha over same-class pairs (i != j): pulls a class together."""
    x = F.normalize(x, dim=-1)
    same = labels[:, None] == labels[None, :]
    same.fill_diagonal_(False)
    if not same.any():
        return x.sum() * 0
    d = torch.cdist(x, x)[same]
    return d.pow(alpha).mean()


def uniformity_loss(x: torch.Tensor, t: float = 2.0, floor: float = 1e-6) -> torch.Tensor:
    """log E exp(-t ||x_i - x_j||^2) over distinct pairs: spreads features over the sphere.

    The mean is floored at 1e-6 before the log, as in the reference (src/losses/unifalign.py:63)."""
    x = F.normalize(x, dim=-1)
    if x.shape[0] < 2:
        return x.sum() * 0
    sq = torch.pdist(x).pow(2)
    return sq.mul(-t).exp().mean().clamp(min=floor).log()
