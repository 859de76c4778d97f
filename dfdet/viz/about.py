"""The About/teaching view: what each method trains (from the registry, with exact counts) and why."""
from __future__ import annotations

import functools
import logging

import pandas as pd

from ..methods import METHODS, PAPER_METHODS

log = logging.getLogger(__name__)

PAPER = "Yermakov, Cech, Matas: Unlocking the Hidden Potential of CLIP in Generalizable Deepfake Detection " \
        "(arXiv 2503.19683)"

TRAINS = {
    "head": "linear head only (CLIP frozen)",
    "layernorm": "every LayerNorm gamma/beta + linear head",
    "encoders": "CLIP encoders guided by text descriptions",
    "none": "nothing (zero-shot)",
}

METHODS_TEXT = """\
All four methods read the same feature: **z_cls**, the [CLS] token of CLIP's ViT-L/14 vision encoder
after its last LayerNorm (`ln_post`), before CLIP's projection: 1024 numbers per face. A linear head
turns it into p(real), p(fake).

* **Linear probe** trains only the head. CLIP stays exactly as OpenAI trained it.
* **LN-tuning** also trains the scale (gamma) and shift (beta) of every LayerNorm in the encoder:
  about 0.03% of its weights. It re-weights the channels CLIP already has instead of overwriting
  them: the paper's reason to expect it to keep what CLIP learnt while adapting to faces.
* **LN + Norm** L2-normalises z_cls before the head, so every face is a point on the unit
  hypersphere and only its direction can decide the class.
* **LN + Norm + SLERP** replaces each training feature by a point on the great circle towards
  another face of the same class (spherical interpolation), so the head also sees the space
  *between* same-class faces, on the sphere.
"""

HYPERSPHERE_TEXT = """\
**What you are looking at.** Each dot is one face of the run, placed by UMAP from the feature the
method's head sees (z_cls, 1024-d for ViT-L/14), L2-normalised so that all of them lie on the
unit hypersphere. Compare methods on the same run:

* With the **linear probe** the features are CLIP's own; how well they separate real from fake
  is what CLIP already knew.
* **LN-tuning** changes the features themselves (the LayerNorms move), so the picture changes.
* **+ L2-norm**: the head sees directions only, so the decision is a cut through the sphere and the
  length of a feature cannot carry a shortcut.
* **+ SLERP** trained on great-circle paths between same-class faces. Pick two faces of one class
  (Random pair, same class) and look at p(fake) along the path; then a real and a fake face, and see
  where the path crosses the method's threshold (dotted; 0.5 without calibration). A straight line
  between them (mixup) would leave the sphere.

Path points are placed in the picture by their nearest faces: the picture is a 2-D/3-D map of a
1024-d sphere, so read it as neighbourhoods, not as distances.
"""


@functools.lru_cache(maxsize=4)
def trainable_counts(model: str = "ViT-L-14") -> dict[str, int | None]:
    """Exact trainable-parameter count per registered method on `model`, built without weights.

    The model is created on the meta device (no memory, no download) and each method is built by
    the library's own builder, so the numbers are the library's trainable sets, not a formula.
    """
    import open_clip
    import torch

    from ..backbone import LoadedClip, _register_configs
    from ..config import BackboneConfig
    from ..model import build_model, trainable_count
    _register_configs()
    with torch.device("meta"):
        clip = open_clip.create_model(model, pretrained=None, device="meta")
    loaded = LoadedClip(clip, BackboneConfig(model=model, pretrained=None), None)
    out: dict[str, int | None] = {}
    for name, spec in METHODS.items():
        if not spec.trainable:
            out[name] = 0
            continue
        if spec.family == "text" and spec.trains == "encoders":  # dfdet.text.train.set_trainable: both towers
            out[name] = sum(p.numel() for n, p in clip.named_parameters() if n not in ("logit_scale", "logit_bias"))
            continue
        if spec.family != "ln":  # a family whose trainable set is not known here: no made-up count
            out[name] = None
            continue
        try:
            with torch.device("meta"):
                out[name] = trainable_count(build_model(loaded, spec))
        except Exception as err:  # noqa: BLE001 - a method that cannot be built here shows no count
            log.warning("no parameter count for %s: %s", name, err)
            out[name] = None
    return out


def method_table(model: str = "ViT-L-14", loaded: dict[str, int] | None = None) -> pd.DataFrame:
    """One row per registered method: name, label, what it trains, its flags and exact counts."""
    counts = trainable_counts(model)
    rows = []
    for name, spec in METHODS.items():
        rows.append({"method": name, "label": spec.label, "trains": TRAINS.get(spec.trains, spec.trains),
                     "L2-norm": "yes" if spec.normalize else "no", "SLERP": "yes" if spec.slerp else "no",
                     f"trainable params ({model})": counts.get(name),
                     "in the paper": "yes" if name in PAPER_METHODS else "no",
                     "description": spec.description})
    df = pd.DataFrame(rows)
    df[f"trainable params ({model})"] = df[f"trainable params ({model})"].astype("Int64")
    if loaded:
        df["trainable params (loaded)"] = [loaded.get(n) for n in df["method"]]
    return df


def method_markdown(model: str = "ViT-L-14", loaded: dict[str, int] | None = None,
                    loaded_model: str | None = None) -> str:
    """The registry as a Markdown table, counts with thousands separators, each column naming its backbone.

    `loaded` adds the counts of the methods this server loaded (ready to score), on `loaded_model` (the demo's
    tiny ViT has far fewer parameters than ViT-L/14: both are shown, each labelled); a method absent from it
    reads "not loaded"."""
    df = method_table(model)
    col = f"trainable params ({model})"
    extra = loaded is not None and loaded_model and loaded_model != model
    head = f"| method | label | trains | L2-norm | SLERP | trainable params on {model} |"
    head += f" on the loaded {loaded_model} |" if extra else ""
    lines = [head + " what it does |", "|---|---|---|---|---|--:|" + ("--:|" if extra else "") + "---|"]
    for _, r in df.iterrows():
        n = r[col]
        count = "n/a" if pd.isna(n) else f"{int(n):,}"
        if extra:
            here = loaded.get(r["method"])  # 0 is a loaded zero-shot method (it trains nothing), not a missing one
            count += f" | {here:,}" if here is not None else " | not loaded"
        lines.append(f"| `{r['method']}` | {r['label']} | {r['trains']} | {r['L2-norm']} | {r['SLERP']} | {count} | "
                     f"{r['description']} |")
    return "\n".join(lines)


def paper_results() -> pd.DataFrame | None:
    """The papers' reported numbers bundled with dfdet (dfdet/learn/reported.json), or None when none are."""
    from ..learn.reported import records
    df = records()
    return df if not df.empty else None
