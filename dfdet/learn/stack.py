"""What trains: the ViT stack part by part with exact counts, and how far a checkpoint moved each LayerNorm.

The counts come from building the method with the library's own builder on the meta device, so the
lit parts of the diagram add up to exactly the registry's trainable count (no formula to drift).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import CheckpointError, WeightsUnavailable
from ..methods import get_method

LN_PREFIX = "backbone.visual."  # checkpoint tensors of the encoder start with this
BLOCK = re.compile(r"transformer\.resblocks\.(\d+)\.(\w+)\.")


@dataclass(frozen=True)
class Part:
    """One box of the diagram: a group of parameters of the encoder or the head."""
    name: str  # e.g. "ln_pre", "block 3 ln_1", "head"
    kind: str  # patch | embed | ln | attn | mlp | proj | head
    block: int  # block index, -1 before the blocks, 10**6 after
    params: int  # parameters in this part
    trained: int  # of which the method trains


def _part_of(name: str) -> tuple[str, str, int]:
    """(part name, kind, block) of an encoder parameter name (open_clip VisionTransformer naming)."""
    m = BLOCK.match(name)
    if m:
        b, sub = int(m.group(1)), m.group(2)
        kind = "ln" if sub.startswith("ln") else ("attn" if sub == "attn" else "mlp")
        return f"block {b} {sub}", kind, b
    top = name.split(".")[0]
    kinds = {"conv1": ("patch embedding", "patch", -1), "class_embedding": ("class + position embedding", "embed", -1),
             "positional_embedding": ("class + position embedding", "embed", -1), "ln_pre": ("ln_pre", "ln", -1),
             "ln_post": ("ln_post", "ln", 10**6), "proj": ("CLIP projection (not used)", "proj", 10**6)}
    return kinds.get(top, (top, "other", 10**6))


@functools.lru_cache(maxsize=4)
def _meta_clip(model: str):
    """`model` built on the meta device: shapes and names, no memory, no weights."""
    import contextlib
    import io
    import logging

    import open_clip
    import torch

    from ..backbone import _register_configs
    _register_configs()
    logging.disable(logging.WARNING)  # open_clip warns that a weightless model is random: that is the point
    try:
        with torch.device("meta"), contextlib.redirect_stderr(io.StringIO()):
            return open_clip.create_model(model, pretrained=None, device="meta")
    finally:
        logging.disable(logging.NOTSET)


@functools.lru_cache(maxsize=32)
def stack_parts(method: str, model: str = "ViT-L-14") -> tuple[Part, ...]:
    """Every part of `model`'s vision stack plus the head, with what `method` trains in each."""
    import torch

    from ..backbone import LoadedClip
    from ..config import BackboneConfig
    from ..model import build_model
    spec = get_method(method)
    clip = _meta_clip(model)
    det = None
    if spec.family == "ln":
        with torch.device("meta"):
            det = build_model(LoadedClip(clip, BackboneConfig(model=model, pretrained=None), None, pristine={}), spec)
    trained = {n: p.requires_grad for n, p in det.named_parameters()} if det is not None else {}
    clip.requires_grad_(True)  # the builder froze the shared meta model: leave it as the next build expects
    everything = spec.trains == "encoders"  # dfdet.text.train: both towers, all but logit_scale/bias
    parts: dict[str, list] = {}
    for name, p in clip.visual.named_parameters():
        part, kind, block = _part_of(name)
        row = parts.setdefault(part, [kind, block, 0, 0])
        row[2] += p.numel()
        if everything or trained.get(LN_PREFIX + name, False):
            row[3] += p.numel()
    out = [Part(n, k, b, c, t) for n, (k, b, c, t) in parts.items()]
    if det is not None:
        head = sum(p.numel() for p in det.head.parameters())
        out.append(Part("head (Linear → real/fake)", "head", 10**6 + 1, head, head))
    if spec.family == "text":
        visual = {id(p) for p in clip.visual.parameters()}
        text = sum(p.numel() for n, p in clip.named_parameters()
                   if id(p) not in visual and n not in ("logit_scale", "logit_bias"))
        out.append(Part("text tower (descriptions)", "text", 10**6 + 1, text, text if everything else 0))
    return tuple(sorted(out, key=lambda p: (p.block, ORDER.get(p.kind, 9))))


ORDER = {"patch": 0, "embed": 1, "ln": 2, "attn": 3, "mlp": 5, "proj": 6, "head": 7, "text": 8}


def stack_table(method: str, model: str = "ViT-L-14") -> pd.DataFrame:
    """The diagram as a table: part, kind, parameters, trained by `method`."""
    return pd.DataFrame([p.__dict__ for p in stack_parts(method, model)])


def trained_total(method: str, model: str = "ViT-L-14") -> int:
    return int(sum(p.trained for p in stack_parts(method, model)))


# -- how far a checkpoint moved the LayerNorms --------------------------------------------------------------

@dataclass
class Inspection:
    """A checkpoint's LayerNorms against the values it was trained from."""
    folder: Path
    method: str
    model: str
    weights: str
    reference: str  # what Δ is measured against, in words
    table: pd.DataFrame  # one row per LayerNorm (ln_pre, block i ln_1/ln_2, ln_post)


def ln_deltas(tensors: dict, reference: dict) -> pd.DataFrame:
    """Per LayerNorm: mean |Δγ|, mean |Δβ| and their size relative to the reference (‖Δ‖ / ‖ref‖).

    `tensors` and `reference` map parameter names (with or without the `backbone.visual.` prefix) to
    arrays; only names present in both are compared."""
    def strip(d):
        return {k[len(LN_PREFIX):] if k.startswith(LN_PREFIX) else k: np.asarray(v, dtype=np.float64)
                for k, v in d.items()}
    got, ref = strip(tensors), strip(reference)
    rows = []
    for key in sorted({k.rsplit(".", 1)[0] for k in got if k.endswith(".weight") and k in ref}, key=_ln_order):
        g1, g0 = got[key + ".weight"], ref[key + ".weight"]
        b1, b0 = got.get(key + ".bias"), ref.get(key + ".bias")
        part, _, block = _part_of(key + ".weight")
        row = {"layer": part, "block": block if 0 <= block < 10**6 else None,
               "mean |Δγ|": float(np.abs(g1 - g0).mean()), "mean |Δβ|": None,
               "‖Δγ‖/‖γ₀‖": _rel(g1 - g0, g0), "‖Δβ‖/‖β₀‖": None}
        if b1 is not None and b0 is not None:
            row["mean |Δβ|"] = float(np.abs(b1 - b0).mean())
            row["‖Δβ‖/‖β₀‖"] = _rel(b1 - b0, b0)
        rows.append(row)
    return pd.DataFrame(rows, columns=["layer", "block", "mean |Δγ|", "mean |Δβ|", "‖Δγ‖/‖γ₀‖", "‖Δβ‖/‖β₀‖"])


def _rel(delta: np.ndarray, base: np.ndarray) -> float | None:
    n = float(np.linalg.norm(base))
    return float(np.linalg.norm(delta)) / n if n > 0 else None  # β₀ = 0 (a fresh LayerNorm): no relative size


def _ln_order(key: str):
    _, _, block = _part_of(key + ".weight")
    return block, key


def reference_layernorms(model: str, weights: str, clip_weights: str | None = None) -> tuple[dict, str]:
    """The LayerNorms the checkpoint was trained from, and a sentence saying what they are.

    Rebuilt from the checkpoint's own backbone record: seeded random weights are rebuilt exactly; CLIP's
    weights need the file or the download. Without them there is nothing honest to compare against."""
    from ..backbone import load_clip
    from ..config import BackboneConfig
    m = re.fullmatch(r"random-init-seed(\d+)", weights or "")
    if m:
        cfg = BackboneConfig(model=model, pretrained=None, seed=int(m.group(1)))
        what = f"the seeded random-weight {model} it was trained from ({weights}; not CLIP's values)"
    elif clip_weights:
        cfg = BackboneConfig(model=model, pretrained=None, weights=clip_weights)
        what = f"{model} weights from {Path(clip_weights).name} (the checkpoint records {weights})"
    elif weights.startswith("file:"):
        raise WeightsUnavailable(f"the checkpoint was trained from the weights file {weights[5:]}: pass it with "
                                 "--clip-weights PATH to compare against it")
    else:
        cfg = BackboneConfig(model=model, pretrained=weights)
        what = f"CLIP's own {model}/{weights} LayerNorms"
    clip = load_clip(cfg)
    return {k: v.numpy() for k, v in clip.pristine.items()}, what


def inspect_checkpoint(folder: str | Path, clip_weights: str | None = None) -> Inspection:
    """How far each LayerNorm of a checkpoint moved from the backbone it was trained on."""
    from ..checkpoint import check_tensors, load_tensors, read_meta
    folder = Path(folder)
    meta = read_meta(folder)
    spec = get_method(meta["method"]) if meta["method"] in _known() else None
    if spec is None:
        raise CheckpointError(f"{folder}: unknown method {meta['method']!r}")
    tensors = load_tensors(folder)
    check_tensors(tensors, folder)
    bb = meta.get("backbone") or {}
    model, weights = str(bb.get("model", "")), str(bb.get("weights", ""))
    ln = {k: v.float().numpy() for k, v in tensors.items() if k.startswith(LN_PREFIX)}
    if not ln:
        raise CheckpointError(f"{folder}: a {spec.name} checkpoint holds no LayerNorm tensors ({spec.label} trains "
                              f"{spec.trains}); there is nothing to compare")
    reference, what = reference_layernorms(model, weights, clip_weights)
    return Inspection(folder, spec.name, model, weights, what, ln_deltas(ln, reference))


def _known() -> set[str]:
    from ..methods import METHODS
    return set(METHODS)
