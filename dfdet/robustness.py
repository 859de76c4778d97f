"""Does a verdict survive a re-encode? Re-score a face under a fixed set of everyday perturbations.

The set is fixed and documented so that numbers are comparable between methods and runs:
JPEG quality 90/70/50/30 (Pillow's encoder), downscale x0.5 and x0.25 and back up (bicubic),
Gaussian blur (Pillow, radius 2 px on the crop), and a looser
crop (scale x1.1 and x1.5): re-aligned from the original frame where one is given, otherwise
zoomed out with a black border (what alignment does past the edge of a frame). A face is
**unstable** for a method when any perturbation flips its verdict at the method's own threshold.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter

from .calibration import DEFAULT_THRESHOLD, Calibration

DEMO_NOTE = "DEMO: random-weight backbone, scores are meaningless"


@dataclass(frozen=True)
class Perturbation:
    name: str  # short key, used as a column and axis label
    family: str  # "jpeg" | "downscale" | "blur" | "crop"
    strength: float  # the family's parameter: JPEG quality, scale factor, blur radius, crop scale
    apply: Callable[[Image.Image], Image.Image]


def _jpeg(q: int) -> Callable[[Image.Image], Image.Image]:
    def f(im: Image.Image) -> Image.Image:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format="JPEG", quality=q)
        buf.seek(0)
        return Image.open(buf).convert("RGB")
    return f


def _down(s: float) -> Callable[[Image.Image], Image.Image]:
    def f(im: Image.Image) -> Image.Image:
        w, h = im.size
        small = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)
        return small.resize((w, h), Image.BICUBIC)
    return f


def _blur(radius: float) -> Callable[[Image.Image], Image.Image]:
    return lambda im: im.filter(ImageFilter.GaussianBlur(radius))


def zoom_out(im: Image.Image, s: float) -> Image.Image:
    """The crop a scale-s looser alignment would give if the frame ended at this crop's edge."""
    w, h = im.size
    small = im.resize((max(1, round(w / s)), max(1, round(h / s))), Image.BICUBIC)
    out = Image.new("RGB", (w, h))
    out.paste(small, ((w - small.size[0]) // 2, (h - small.size[1]) // 2))
    return out


def _crop(s: float) -> Callable[[Image.Image], Image.Image]:
    return lambda im: zoom_out(im, s)


PERTURBATIONS: tuple[Perturbation, ...] = (
    *(Perturbation(f"jpeg{q}", "jpeg", q, _jpeg(q)) for q in (90, 70, 50, 30)),
    *(Perturbation(f"down{s}", "downscale", s, _down(s)) for s in (0.5, 0.25)),
    Perturbation("blur2", "blur", 2.0, _blur(2.0)),
    *(Perturbation(f"crop{s}", "crop", s, _crop(s)) for s in (1.1, 1.5)),
)


@dataclass
class Frame:
    """The original frame of a face and its 68 landmarks: looser crops are then re-aligned from it,
    with real background instead of a black border."""
    rgb: np.ndarray  # H x W x 3 uint8
    landmarks: np.ndarray  # 68 x 2 (x, y) in rgb's pixels
    align: object = None  # the dfdet.data.faces.AlignConfig the face crop was made with (None: the default)


def perturbed(face: Image.Image, frame: Frame | None = None) -> dict[str, Image.Image]:
    """The face under every perturbation, in PERTURBATIONS order (plus "original" first)."""
    face = face.convert("RGB")
    out = {"original": face}
    for p in PERTURBATIONS:
        if p.family == "crop" and frame is not None:
            out[p.name] = realign(face, frame, p.strength)
        else:
            out[p.name] = p.apply(face)
    return out


def realign(face: Image.Image, frame: Frame, s: float) -> Image.Image:
    """The crop the same alignment gives with an s times looser template, cut from the frame."""
    from dataclasses import replace

    from .data.faces import AlignConfig, FaceAligner
    cfg = frame.align or AlignConfig()
    aligner = FaceAligner(replace(cfg, size=face.size[0], scale=cfg.scale * s))
    return Image.fromarray(aligner.align(frame.rgb, frame.landmarks))


def _thresholds(bank, names: list[str]) -> dict[str, float]:
    out = {}
    for n in names:
        cal = Calibration.from_meta(bank.entries[n].meta)
        out[n] = cal.threshold if cal else DEFAULT_THRESHOLD
    return out


def probe_faces(bank, faces: list[Image.Image], names: list[str] | None = None,
                frames: list[Frame | None] | None = None) -> pd.DataFrame:
    """One row per face x perturbation x method: p_fake, the method's threshold, the verdict and
    whether it flipped from the original's. One batched prediction per face (all perturbations)."""
    names = list(names or bank.ready)
    thr = _thresholds(bank, names)
    rows = []
    for i, face in enumerate(faces):
        views = perturbed(face, frames[i] if frames else None)
        probs = bank.predict(bank.preprocess(list(views.values())), names)
        for n in names:
            p = np.asarray(probs[n], dtype=float)
            fake0 = p[0] >= thr[n]
            for j, key in enumerate(views):
                rows.append({"face": i, "perturbation": key, "method": n, "p_fake": float(p[j]),
                             "threshold": thr[n], "verdict": "fake" if p[j] >= thr[n] else "real",
                             "flipped": bool((p[j] >= thr[n]) != fake0)})
    return pd.DataFrame(rows)


def unstable(table: pd.DataFrame) -> dict[tuple[int, str], bool]:
    """(face, method) -> whether any perturbation flipped its verdict."""
    return {k: bool(g["flipped"].any()) for k, g in table.groupby(["face", "method"], sort=False)}


def flip_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Share of faces whose verdict flips, per method x dataset (columns: perturbations) plus 'any'."""
    t = table[table["perturbation"] != "original"]
    keys = [k for k in ("method", "dataset") if k in t.columns]
    share = t.pivot_table(index=keys, columns="perturbation", values="flipped", aggfunc="mean")
    share = share[[p.name for p in PERTURBATIONS if p.name in share.columns]]
    share["any"] = t.groupby(keys + ["face"])["flipped"].any().groupby(keys).mean()
    share.insert(0, "faces", t.groupby(keys)["face"].nunique())
    return share.reset_index()


def probe_figure(table: pd.DataFrame, labels: dict[str, str] | None = None, demo: bool = False):
    """p_fake per perturbation, one line per method, its threshold dotted; unstable methods named."""
    import plotly.graph_objects as go
    labels = labels or {}
    fig = go.Figure()
    order = ["original"] + [p.name for p in PERTURBATIONS]
    flags = unstable(table)
    from .viz.style import label_color, label_order
    groups = dict(list(table.groupby("method", sort=False)))
    by_label = {labels.get(n, n): n for n in groups}
    for lab in label_order(by_label):  # the one order and colour per method of every view
        n = by_label[lab]
        g = groups[n].set_index("perturbation").reindex(order)
        color = label_color(lab)
        name = labels.get(n, n) + (" (unstable)" if any(v for (f, m), v in flags.items() if m == n) else "")
        fig.add_trace(go.Scatter(x=order, y=g["p_fake"].round(4).tolist(), mode="lines+markers", name=name,
                                 line=dict(color=color),
                                 hovertemplate="%{x}<br>p_fake %{y:.4f}<extra>" + labels.get(n, n) + "</extra>"))
        fig.add_trace(go.Scatter(x=[order[0], order[-1]], y=[g["threshold"].iloc[0]] * 2, mode="lines",
                                 line=dict(color=color, dash="dot", width=1), showlegend=False, hoverinfo="skip"))
    title = "p(fake) under perturbations (dotted: each method's threshold)"
    if demo:
        title += f"<br><span style='color:#b00020;font-size:12px'>{DEMO_NOTE}</span>"
    fig.update_layout(title=dict(text=title, x=0.01), template="plotly_white", height=380,
                      yaxis=dict(range=[0, 1], title="p(fake)"), legend=dict(orientation="h", y=-0.25),
                      margin=dict(l=50, r=20, t=70, b=45))
    return fig
