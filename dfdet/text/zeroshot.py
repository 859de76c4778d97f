"""Zero-shot scoring against class descriptions, and the text-embedding cache.

An image's logit for a description is CLIP's scaled cosine similarity. A class's logit is the
mean over its descriptions (optionally over only the k highest over all descriptions, as in the
thesis); softmax over the two class logits gives (p_real, p_fake).
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from .descriptions import Descriptions

CACHE_ENV = "DFDET_TEXT_CACHE"  # folder for an on-disk text-embedding cache (safetensors); unset = memory only
_MEMORY: dict[tuple[str, str, str], torch.Tensor] = {}  # (model, weights id, set digest) -> [U, D] unit rows


def description_logits(image_features: torch.Tensor, text_features: torch.Tensor,
                       logit_scale: torch.Tensor | float) -> torch.Tensor:
    """[B, D] x [N, D] -> [B, N]: scaled cosine similarity of each image to each description."""
    img = F.normalize(image_features, dim=-1)
    txt = F.normalize(text_features, dim=-1)
    return img @ txt.t() * logit_scale


TOP_K_SCOPES = ("all", "per_class")


def pool_class_logits(logits: torch.Tensor, labels: torch.Tensor, top_k: int | None = None,
                      scope: str = "all") -> torch.Tensor:
    """[B, N] description logits -> [B, 2] (real, fake): mean per class, over the top-k if k is set.

    scope "all" is the thesis's rule (src/clip/lightning_model.py:295-301): the k highest logits over
    every description, then the mean of those that belong to each class. A class with none among the
    k gets -inf (the thesis divides 0 by 0, NaN). "per_class" takes the k highest of each class."""
    if scope not in TOP_K_SCOPES:
        raise ValueError(f"unknown top_k scope {scope!r}; choose one of {TOP_K_SCOPES}")
    for c in (0, 1):
        if not bool((labels == c).any()):
            raise ValueError(f"no descriptions for class {c}")
    if top_k and scope == "all" and top_k < logits.shape[1]:
        vals, idx = logits.topk(top_k, dim=1)
        cls = labels.to(idx.device)[idx]
        out = []
        for c in (0, 1):
            mask = (cls == c).to(vals.dtype)
            n = mask.sum(dim=1)
            mean = (vals * mask).sum(dim=1) / n.clamp_min(1)
            out.append(torch.where(n > 0, mean, torch.full_like(mean, float("-inf"))))
        return torch.stack(out, dim=1)
    out = []
    for c in (0, 1):
        cls = logits[:, labels == c]
        if top_k and top_k < cls.shape[1]:
            cls = cls.topk(top_k, dim=1).values
        out.append(cls.mean(dim=1))
    return torch.stack(out, dim=1)


def unique_sentences(desc: Descriptions) -> tuple[list[str], list[int]]:
    """Each sentence once, plus the row of every description in that list (repeats share a row)."""
    rows: dict[str, int] = {}
    index = [rows.setdefault(s, len(rows)) for s in desc.sentences]
    return list(rows), index


def encode_sentences(model: torch.nn.Module, tokens: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Unit text embeddings in CLIP's joint space (after text_projection), in chunks."""
    parts = [model.encode_text(tokens[i:i + batch], normalize=True) for i in range(0, len(tokens), batch)]
    return torch.cat(parts)


def _cache_file(folder: Path, key: tuple[str, str, str]) -> Path:
    safe = "__".join(re.sub(r"[^A-Za-z0-9._-]+", "-", k) for k in key)
    return folder / f"{safe}.safetensors"


def cached_text_embeddings(key: tuple[str, str, str], compute, cache_dir: str | Path | None = None) -> torch.Tensor:
    """Text embeddings of a (model, weights id, description set), computed once per process.

    Also on disk when `cache_dir` or $DFDET_TEXT_CACHE is set; never for random-init weights, whose
    values depend on the open_clip version rather than on a fixed file.
    """
    if key in _MEMORY:
        return _MEMORY[key]
    folder = cache_dir or os.environ.get(CACHE_ENV)
    disk = Path(folder) if folder and not key[1].startswith("random-init") else None
    emb = None
    if disk is not None and _cache_file(disk, key).is_file():
        from safetensors.torch import load_file
        try:
            emb = load_file(str(_cache_file(disk, key)))["text"]
        except Exception as err:  # a damaged cache file is recomputed, not trusted
            logging.getLogger(__name__).warning("ignoring unreadable text cache %s: %s", _cache_file(disk, key), err)
    if emb is None:
        emb = compute().detach().float().cpu()
        if disk is not None:
            from safetensors.torch import save_file
            from ..fileio import atomic_write
            atomic_write(_cache_file(disk, key), lambda p: save_file({"text": emb.contiguous()}, p))
    _MEMORY[key] = emb
    return emb


def clear_memory_cache() -> None:
    _MEMORY.clear()
