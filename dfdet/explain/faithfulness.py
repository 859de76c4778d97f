"""Deletion and insertion curves (Petsiuk et al., RISE, 2018): is a map evidence, or only pretty?

Deletion removes patches in the map's order (most salient first) and follows p_fake; a faithful
map makes it fall fast (small area). Insertion starts from an empty image and adds patches in that
order; a faithful map makes p_fake rise fast (large area). Both are compared with random patch
orders on the same face, so a number means something without a reference table.

Written here rather than with quantus: quantus perturbs in pixel order (not the ViT's patches),
scores one perturbed image per model call, and pulls opencv-python, which would clash with the
headless OpenCV build dfdet installs. The whole computation is a masked batch of images.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

BASELINE = 0.0  # a removed patch takes this value in normalised pixel space: the CLIP mean colour


@dataclass
class Curves:
    fractions: np.ndarray  # [S+1] share of patches removed (deletion) or present (insertion)
    deletion: np.ndarray  # p_fake with the most salient patches removed first
    insertion: np.ndarray  # p_fake with the most salient patches inserted first
    deletion_random: np.ndarray  # mean over random patch orders
    insertion_random: np.ndarray

    @staticmethod
    def _auc(y: np.ndarray, x: np.ndarray) -> float:
        return float(np.trapezoid(y, x))

    def aucs(self) -> dict[str, float]:
        """Areas under the four curves (x in [0, 1]); deletion: lower is better, insertion: higher."""
        return {k: self._auc(getattr(self, k), self.fractions)
                for k in ("deletion", "deletion_random", "insertion", "insertion_random")}

    def to_dict(self) -> dict:
        d = {k: np.round(getattr(self, k), 6).tolist() for k in
             ("fractions", "deletion", "insertion", "deletion_random", "insertion_random")}
        d["auc"] = {k: round(v, 6) for k, v in self.aucs().items()}
        return d


def patch_masks(order: np.ndarray, g: int, size: int, steps: int) -> torch.Tensor:
    """[steps+1, 1, size, size] masks: 1 on the first k patches of `order` (k from 0 to g*g)."""
    counts = np.round(np.linspace(0, g * g, steps + 1)).astype(int)
    rank = np.empty(g * g, dtype=int)
    rank[order] = np.arange(g * g)
    grid = torch.as_tensor(rank[None, :] < counts[:, None], dtype=torch.float32).view(-1, 1, g, g)
    return torch.nn.functional.interpolate(grid, size=(size, size), mode="nearest")


def _curves(score: Callable[[torch.Tensor], np.ndarray], x: torch.Tensor, masks: torch.Tensor,
            batch: int) -> tuple[np.ndarray, np.ndarray]:
    masks = masks.to(x.device, x.dtype)
    dele = x * (1 - masks) + BASELINE * masks
    ins = BASELINE * (1 - masks) + x * masks
    both = torch.cat([dele, ins])
    out = np.concatenate([np.asarray(score(both[i:i + batch])) for i in range(0, len(both), batch)])
    return out[:len(masks)], out[len(masks):]


@torch.no_grad()
def perturbation_curves(score: Callable[[torch.Tensor], np.ndarray], pixels: torch.Tensor, saliency: np.ndarray,
                        steps: int = 16, n_random: int = 3, seed: int = 0, batch: int = 34) -> Curves:
    """Deletion/insertion curves of one preprocessed face [3, H, W] under its [g, g] map.

    `score` maps a batch of images to p_fake. Costs (1 + n_random) * 2 * (steps + 1) image scores.
    """
    g = saliency.shape[-1]
    size = pixels.shape[-1]
    if pixels.shape[-2] != size or size % g:
        raise ValueError(f"expected a square image whose side ({size}) is a multiple of the grid ({g})")
    order = np.argsort(-np.asarray(saliency, dtype=np.float64).ravel(), kind="stable")
    x = pixels.unsqueeze(0)
    dele, ins = _curves(score, x, patch_masks(order, g, size, steps), batch)
    rng = np.random.default_rng(seed)
    rd, ri = [], []
    for _ in range(n_random):
        d, i = _curves(score, x, patch_masks(rng.permutation(g * g), g, size, steps), batch)
        rd.append(d)
        ri.append(i)
    return Curves(fractions=np.linspace(0, 1, steps + 1), deletion=dele, insertion=ins,
                  deletion_random=np.mean(rd, axis=0), insertion_random=np.mean(ri, axis=0))


def model_scorer(model: torch.nn.Module) -> Callable[[torch.Tensor], np.ndarray]:
    """p_fake of a Detector-like module (logits for real, fake) as a numpy array."""
    def score(px: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(model(px).float(), -1)[:, 1].cpu().numpy()
    return score
