"""The thesis's paired contrastive objective and its training schedule.

A plain CLIP loss over a batch of deepfake images would treat two real images as negatives of each
other's description ("class collisions"). The thesis instead splits the batch into (real, fake)
image pairs, scores each pair against one real and one fake description (a 2x2 similarity matrix),
and averages the symmetric CLIP loss over pairs.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def paired_clip_loss(real_img: torch.Tensor, fake_img: torch.Tensor, real_txt: torch.Tensor,
                     fake_txt: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Mean over n pairs of (L_img + L_txt) / 2 on each pair's 2x2 matrix.

    Images are [n, D]; texts are [n, D] (one description per pair) or [1, D] / [D] (shared).
    """
    n, d = real_img.shape
    imgs = F.normalize(torch.stack([real_img, fake_img], dim=1), dim=-1)  # [n, 2, D]: (real, fake) image
    txts = torch.stack([real_txt.reshape(-1, d).expand(n, d), fake_txt.reshape(-1, d).expand(n, d)], dim=1)
    txts = F.normalize(txts, dim=-1)  # [n, 2, D]: (real, fake) description
    logits = logit_scale * imgs @ txts.transpose(1, 2)  # [n, 2, 2]: image row vs description column
    target = torch.arange(2, device=logits.device).repeat(n)  # the matching entry is on the diagonal
    loss_img = F.cross_entropy(logits.reshape(2 * n, 2), target)  # each image picks its description
    loss_txt = F.cross_entropy(logits.transpose(1, 2).reshape(2 * n, 2), target)  # each description its image
    return (loss_img + loss_txt) / 2


def make_pairs(real: list[int], fake: list[int], generator: torch.Generator) -> list[tuple[int, int]]:
    """Shuffle both classes and pair them; the smaller class repeats (reshuffled) so every image of
    the larger class appears once per epoch."""
    if not real or not fake:
        raise ValueError("pairing needs at least one real and one fake image")
    n = max(len(real), len(fake))

    def draw(items: list[int]) -> list[int]:
        out: list[int] = []
        while len(out) < n:
            out += [items[i] for i in torch.randperm(len(items), generator=generator).tolist()]
        return out[:n]

    return list(zip(draw(real), draw(fake)))


def sample_descriptions(labels: list[int], n: int, generator: torch.Generator,
                        per_pair: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of one real and one fake description for each of n pairs (one shared draw if not per_pair)."""
    lab = torch.as_tensor(labels)
    real = (lab == 0).nonzero().flatten()
    fake = (lab == 1).nonzero().flatten()
    k = n if per_pair else 1
    r = real[torch.randint(len(real), (k,), generator=generator)]
    f = fake[torch.randint(len(fake), (k,), generator=generator)]
    return r.expand(n) if k == 1 else r, f.expand(n) if k == 1 else f


def lr_at(step: int, peak: float, warmup_steps: int, cycle_steps: int, peak_decay: float = 0.5,
          min_lr: float = 0.0) -> float:
    """The thesis's CosineAnnealingWarmupRestarts (src/utils/warmup_cosine_scheduler.py:55-64, 66-88),
    per optimiser step: every cycle of `cycle_steps` (warm-up included) warms up linearly from min_lr to
    its peak, then follows a cosine back to min_lr; each cycle's peak is `peak_decay` times the last."""
    cycle_steps = max(1, cycle_steps)
    warmup_steps = min(max(0, warmup_steps), cycle_steps - 1)
    cycle, pos = divmod(step, cycle_steps)
    top = peak * peak_decay ** cycle
    if pos < warmup_steps:
        return min_lr + (top - min_lr) * pos / warmup_steps
    return min_lr + (top - min_lr) * 0.5 * (1 + math.cos(math.pi * (pos - warmup_steps) / (cycle_steps - warmup_steps)))


def should_stop(val_losses: list[float], patience: int = 5, min_delta: float = 0.0) -> bool:
    """Lightning's EarlyStopping as the thesis configures it (main.py:109-115: monitor the validation
    loss, mode min, min_delta 0): stop once `patience` epochs in a row failed to beat the best loss by
    more than min_delta. patience 0 disables it."""
    if patience <= 0:
        return False
    best, wait = math.inf, 0
    for loss in val_losses:
        if loss < best - min_delta:
            best, wait = loss, 0
        else:
            wait += 1
    return wait >= patience
