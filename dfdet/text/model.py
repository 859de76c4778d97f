"""TextDetector: CLIP's image and text towers scoring an image against class descriptions.

The same module serves the zero-shot methods (nothing trained, CLIP weights shared with the
caller) and the text-guided ones (both encoders fine-tuned, so the module owns a copy of CLIP and
its checkpoint overlays the changed tensors by their names under `clip.`).
"""
from __future__ import annotations

import copy
import functools
from pathlib import Path

import torch
from torch import nn

from ..backbone import LoadedClip
from ..methods import MethodSpec, get_method
from .descriptions import Descriptions, check_lengths, load_descriptions
from .zeroshot import cached_text_embeddings, description_logits, encode_sentences, pool_class_logits, unique_sentences

DEFAULT_DESCRIPTIONS = "1desc"  # used when a text method's defaults name no description set


@functools.lru_cache(maxsize=8)
def get_tokenizer(model_name: str):
    import open_clip
    from ..backbone import _register_configs
    _register_configs()
    return open_clip.get_tokenizer(model_name)


class TextDetector(nn.Module):
    """forward(pixels) -> [B, 2] (real, fake) logits; embed() -> unit image embeddings in CLIP's joint space."""

    def __init__(self, clip_model: nn.Module, tokenizer, descriptions: Descriptions, *, model_name: str,
                 weights_id: str, top_k: int | None = None, spec: MethodSpec | None = None,
                 top_k_scope: str = "all"):
        super().__init__()
        self.spec = spec
        self.clip = clip_model
        self.descriptions = descriptions
        self.top_k = top_k or None  # None/0 = mean over all descriptions of a class
        self.top_k_scope = top_k_scope  # "all" (thesis: top-k over every description, then by class) | "per_class"
        self.train_text = False  # True while the trainer fine-tunes the text tower: then no caching
        sentences, index = unique_sentences(descriptions)
        self.register_buffer("tokens", tokenizer(sentences), persistent=False)  # [U, 77] unique sentences
        self.register_buffer("desc_index", torch.tensor(index), persistent=False)  # description -> unique row
        self.register_buffer("desc_labels", torch.tensor(descriptions.labels), persistent=False)
        self._cache_key = (model_name, weights_id, descriptions.digest)
        self._pristine = self._text_state()  # text weights as built: the shared cache applies only to these
        self._cached: tuple[tuple, torch.Tensor] | None = None

    # -- text side -----------------------------------------------------------------------------
    def text_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.clip.named_parameters()
                if not n.startswith("visual.") and n not in ("logit_scale", "logit_bias")]

    def _text_state(self) -> tuple[int, ...]:
        # In-place updates (optimiser steps, checkpoint overlays) bump a tensor's version counter,
        # so an unchanged tuple means unchanged text weights and the cached embeddings still hold.
        return tuple(p._version for p in self.text_parameters())

    def _encode_all(self) -> torch.Tensor:
        with torch.no_grad():
            return encode_sentences(self.clip, self.tokens).float()

    def unique_text_features(self) -> torch.Tensor:
        """[U, D] unit embeddings of the unique sentences; recomputed only when the text weights change."""
        if self.train_text and self.training and torch.is_grad_enabled():
            return encode_sentences(self.clip, self.tokens)
        state = self._text_state()
        if self._cached is None or self._cached[0] != state:
            if state == self._pristine:
                emb = cached_text_embeddings(self._cache_key, self._encode_all)
            else:
                emb = self._encode_all()
            self._cached = (state, emb)
        return self._cached[1].to(self.tokens.device)

    def text_features(self) -> torch.Tensor:
        """[N, D]: one row per description (repeats included, so they weigh in the class mean)."""
        return self.unique_text_features()[self.desc_index]

    def encode_descriptions(self, which: torch.Tensor) -> torch.Tensor:
        """Embeddings of the descriptions with these indices; with gradients while the text tower trains."""
        rows = self.desc_index[which.to(self.desc_index.device)]
        if not (self.train_text and self.training and torch.is_grad_enabled()):
            return self.unique_text_features()[rows]
        uniq, inverse = rows.unique(return_inverse=True)
        return encode_sentences(self.clip, self.tokens[uniq])[inverse]

    # -- image side and scores -----------------------------------------------------------------
    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale.exp()

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(pixels, normalize=True)

    def description_logits(self, features: torch.Tensor) -> torch.Tensor:
        text = self.text_features().to(features.dtype)
        return description_logits(features, text, self.logit_scale().to(features.dtype))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return pool_class_logits(self.description_logits(features), self.desc_labels, self.top_k, self.top_k_scope)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(pixels))


def _share_except_layernorms(model: nn.Module) -> nn.Module:
    """A copy of `model` that shares every tensor except LayerNorm gamma/beta.

    DetectorBank swaps LN-method overlays into the LayerNorms of the shared vision encoder; owning
    those (~0.1M values for ViT-L/14) keeps zero-shot scores on plain CLIP weights at no memory cost.
    """
    memo = {}
    for m in model.modules():
        if not isinstance(m, nn.LayerNorm):
            for t in [*m.parameters(recurse=False), *m.buffers(recurse=False)]:
                memo[id(t)] = t
    return copy.deepcopy(model, memo)


def build_text_model(clip: LoadedClip, spec: MethodSpec | str, share: bool | None = None,
                     descriptions: Descriptions | str | None = None, top_k: int | None = None,
                     top_k_scope: str = "all") -> TextDetector:
    """The registry's builder for family "text" (see dfdet.model.MODEL_BUILDERS).

    Zero-shot methods share `clip.model`'s weights (all but the LayerNorms, see below); text-guided
    ones get their own copy, because a checkpoint overlay rewrites the encoders and must not leak into
    other methods on the same backbone. `share=True` is for the trainer, which owns its CLIP.
    """
    spec = get_method(spec) if isinstance(spec, str) else spec
    if getattr(clip.model, "text_tower_random", False):  # set by dfdet.hub.imported for vision-only backbones
        from ..errors import WeightsUnavailable
        raise WeightsUnavailable(f"{spec.label} needs CLIP's text tower, but this backbone was imported without one; "
                                 "load real CLIP weights (--clip-weights or the openai tag) for text methods")
    if descriptions is None:
        descriptions = spec.defaults.get("descriptions", DEFAULT_DESCRIPTIONS)
    if not isinstance(descriptions, Descriptions):
        descriptions = load_descriptions(descriptions)
    tokenizer = get_tokenizer(clip.config.model)
    check_lengths(descriptions, tokenizer)
    share = (not spec.trainable) if share is None else share
    model = _share_except_layernorms(clip.model) if share else copy.deepcopy(clip.model)
    det = TextDetector(model, tokenizer, descriptions, model_name=clip.config.model, weights_id=clip.weights_id,
                       top_k=spec.defaults.get("top_k") if top_k is None else top_k, spec=spec,
                       top_k_scope=top_k_scope)
    return det.eval()


def load_text_checkpoint(folder: str | Path, clip: LoadedClip, device: str | torch.device = "cpu") -> TextDetector:
    """A text-guided checkpoint with the descriptions it was trained with (kept in its metadata)."""
    from ..checkpoint import apply_overlay, check_compatible, load_tensors, read_meta
    from ..errors import CheckpointError
    meta = read_meta(folder)
    check_compatible(meta, clip.config.model, clip.weights_id, folder)
    try:
        spec = get_method(meta.get("method", ""))
    except KeyError as err:
        raise CheckpointError(f"{folder}: {err.args[0]}") from None
    if spec.family != "text":
        raise CheckpointError(f"{folder} holds {spec.name}, not a text method; load it with dfdet.model.build_model")
    saved = meta.get("descriptions")
    desc = Descriptions(name=saved["name"], real=tuple(saved["real"]), fake=tuple(saved["fake"])) if saved else None
    config = meta.get("config") or {}
    model = build_text_model(clip, spec, descriptions=desc, top_k=config.get("top_k"),
                             top_k_scope=config.get("top_k_scope", "all"))
    apply_overlay(model, load_tensors(folder), folder)
    return model.to(device).eval()
