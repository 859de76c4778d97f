"""The About/teaching view: what each method trains (from the registry, with exact counts) and why."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import pandas as pd

from ..methods import METHODS, PAPER_METHODS

PAPER = "Yermakov, Cech, Matas: Unlocking the Hidden Potential of CLIP in Generalizable Deepfake Detection " \
        "(arXiv 2503.19683)"
PAPER_RESULTS_FILE = Path(__file__).with_name("paper_results.json")  # numbers transcribed from the paper

TRAINS = {
    "head": "linear head only (CLIP frozen)",
    "layernorm": "every LayerNorm gamma/beta + linear head",
    "encoders": "CLIP encoders guided by text descriptions",
    "none": "nothing (zero-shot)",
}

HYPERSPHERE_TEXT = """\
**What you are looking at.** Each dot is one face of the run, placed by UMAP from the feature the
method's head sees (z_cls, the [CLS] token after CLIP's last LayerNorm, 1024-d for ViT-L/14),
L2-normalised so that all of them lie on the unit hypersphere.

* **Linear probe** trains only the head: the features are CLIP's own, so real and fake faces are
  mixed by identity, pose and lighting rather than by forgery.
* **LN-tuning** retrains every LayerNorm's scale and shift (about 0.03% of the encoder). That
  re-weights CLIP's existing channels without overwriting what it learnt, and the classes start to
  pull apart.
* **+ L2-norm** feeds the head the *direction* of z_cls only. The decision is then a cut through the
  sphere, so the length of a feature can no longer carry a shortcut.
* **+ SLERP** trains on points along great circles between two faces of the same class. Paths
  between same-class faces should stay on their side of the boundary: pick two faces below and watch
  p(fake) along the path. A straight line (mixup) would leave the sphere.

Path points are placed in the picture by their nearest faces (the picture is a 2-D/3-D map of a
1024-d sphere, so treat distances as neighbourhoods, not geometry).
"""


@functools.lru_cache(maxsize=4)
def trainable_counts(model: str = "ViT-L-14") -> dict[str, int | None]:
    """Exact trainable-parameter count per registered method on `model`, built without weights.

    The encoder is created on the meta device (no memory, no download) and each method's own
    trainable set is counted, so the numbers are the library's, not a formula's.
    """
    import open_clip
    import torch

    from ..backbone import VisionBackbone, _register_configs
    from ..model import Detector, trainable_count
    _register_configs()
    with torch.device("meta"):
        clip = open_clip.create_model(model, pretrained=None, device="meta")
    out: dict[str, int | None] = {}
    for name, spec in METHODS.items():
        if spec.family == "ln":
            out[name] = trainable_count(Detector(VisionBackbone(clip.visual), spec))
        else:
            out[name] = None  # other families report their counts from their checkpoints
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
    if loaded:
        df["trainable params (loaded)"] = [loaded.get(n) for n in df["method"]]
    return df


def paper_results(path: Path = PAPER_RESULTS_FILE) -> pd.DataFrame | None:
    """The paper's reported numbers, if they were transcribed into paper_results.json.

    Expected: {"source": "...", "records": [{"method", "dataset", "metric", "value", "table"}, ...]}.
    """
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    df = pd.DataFrame(data.get("records", []))
    return df if not df.empty else None
