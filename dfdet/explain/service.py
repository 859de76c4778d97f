"""What a dashboard view asks of dfdet.explain: every method's map of one face, the difference of
two, and the deletion/insertion curves beside them, as images and plotly figures (no gradio here)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .cache import MapCache, model_id
from .faithfulness import model_scorer, perturbation_curves
from .render import DEMO_NOTE, model_view, overlay
from .saliency import KINDS, difference_map, saliency_maps


@dataclass
class FaceExplanation:
    kind: str  # one of KINDS
    face: Image.Image  # the crop the model saw
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # bank entry name -> [g, g] in [0, 1]
    p_fake: dict[str, float] = field(default_factory=dict)
    curves: dict[str, dict] = field(default_factory=dict)  # name -> Curves.to_dict()
    labels: dict[str, str] = field(default_factory=dict)  # name -> display label
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why it has no map
    demo: bool = False


def explainable(bank) -> list[str]:
    """Ready methods with a LayerNorm-family Detector (the text methods have no patch-grid map here)."""
    return [n for n in bank.ready if bank.entries[n].model is None]


def explain_face(bank, face: Image.Image, kind: str = "gradcam", names: list[str] | None = None,
                 curves: bool = True, steps: int = 8, cache: MapCache | None = None,
                 row: int | None = None) -> FaceExplanation:
    """Maps (and curves) of each method for one face; maps are cached per (run, row, method, kind)."""
    if kind not in KINDS:
        raise ValueError(f"unknown map kind {kind!r}; choose one of {', '.join(KINDS)}")
    pixels = bank.preprocess([face])
    out = FaceExplanation(kind=kind, face=model_view(pixels[0]), demo=bank.demo)
    wanted = list(names or bank.ready)
    ok = explainable(bank)
    for n in wanted:
        if n not in ok:
            out.skipped[n] = bank.entries[n].message or "no saliency map for this family"
            continue
        model = bank.method_model(n)
        out.labels[n] = bank.entries[n].label

        def compute(model=model):
            return saliency_maps(model, pixels, kind)[0]
        if cache is not None and row is not None:
            out.maps[n] = cache.get_or_compute(row, n, kind, model_id(bank.entries[n].meta), compute)
        else:
            out.maps[n] = compute()
        score = model_scorer(model)
        out.p_fake[n] = float(score(pixels)[0])
        if curves:
            out.curves[n] = perturbation_curves(score, pixels[0], out.maps[n], steps=steps).to_dict()
    return out


def gallery(expl: FaceExplanation, diff: tuple[str, str] | None = None) -> list[tuple[Image.Image, str]]:
    """(overlay, caption) per method, then the difference map if two methods are named."""
    tag = " (meaningless: demo)" if expl.demo else ""
    items = [(overlay(expl.face, m), f"{expl.labels.get(n, n)}: p_fake {expl.p_fake[n]:.3f}{tag}")
             for n, m in expl.maps.items()]
    if diff and all(d in expl.maps for d in diff) and diff[0] != diff[1]:
        a, b = diff
        items.append((overlay(expl.face, difference_map(expl.maps[a], expl.maps[b]), diverging=True),
                      f"{expl.labels.get(a, a)} minus {expl.labels.get(b, b)} (red: more, blue: less){tag}"))
    return items


def curves_figure(expl: FaceExplanation):
    """Deletion and insertion curves per method, dotted: the same with random patch order."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    fig = make_subplots(rows=1, cols=2, subplot_titles=("deletion (lower = faithful)", "insertion (higher = faithful)"))
    from ..viz.style import label_color, label_order
    by_label = {expl.labels.get(n, n): n for n in expl.curves}
    for label in label_order(by_label):  # the one order and colour per method of every view
        n = by_label[label]
        c, color = expl.curves[n], label_color(label)
        for col, key in ((1, "deletion"), (2, "insertion")):
            fig.add_trace(go.Scatter(x=c["fractions"], y=c[key], mode="lines", line=dict(color=color),
                                     name=f"{label} (AUC {c['auc'][key]:.3f})", legendgroup=n,
                                     showlegend=col == 1), row=1, col=col)
            fig.add_trace(go.Scatter(x=c["fractions"], y=c[f"{key}_random"], mode="lines",
                                     line=dict(color=color, dash="dot"), legendgroup=n, showlegend=False,
                                     name=f"{label} random (AUC {c['auc'][key + '_random']:.3f})"), row=1, col=col)
    title = f"Is the {expl.kind} map evidence? p_fake as patches are removed / inserted (dotted: random order)"
    if expl.demo:
        title += f"<br><span style='color:#b00020;font-size:12px'>{DEMO_NOTE}</span>"
    fig.update_layout(title=dict(text=title, x=0.01, font=dict(size=13)), template="plotly_white", height=360,
                      legend=dict(orientation="h", y=-0.25), margin=dict(l=50, r=20, t=80, b=45))
    fig.update_yaxes(range=[0, 1], title_text="p(fake)", row=1, col=1)
    fig.update_xaxes(title_text="share of patches")
    return fig


def reliability_figure(roc_records: list[dict], dataset: str, level: str = "frame", demo: bool = False):
    """Reliability diagram per method on one test set (share of fakes vs mean p_fake per bin)."""
    import plotly.graph_objects as go
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="#999", dash="dot"),
                               name="perfect calibration"))
    from ..viz.style import label_color, label_order
    rank = {lab: i for i, lab in enumerate(label_order({str(r.get("method")) for r in roc_records}))}
    for r in sorted(roc_records, key=lambda r: rank[str(r.get("method"))]):  # registry order, method colours
        rel = r.get("reliability")
        if r.get("dataset") != dataset or r.get("level") != level or not rel:
            continue
        pts = [(x, y, c) for x, y, c in zip(rel["mean_p"], rel["frac_fake"], rel["count"]) if c]
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers",
                                 marker=dict(size=[4 + 2 * np.sqrt(p[2]) for p in pts]),
                                 line=dict(color=label_color(str(r["method"]))),
                                 name=f"{r['method']} (ECE {rel['ece']:.3f})",
                                 hovertemplate="mean p_fake %{x:.3f}<br>share fake %{y:.3f}<extra></extra>"))
    title = f"Reliability on {dataset} ({level} level)"
    if demo:
        title += f"<br><span style='color:#b00020;font-size:12px'>{DEMO_NOTE}</span>"
    fig.update_layout(title=dict(text=title, x=0.01), template="plotly_white", height=380,
                      xaxis=dict(range=[0, 1], title="mean p(fake) in bin"),
                      yaxis=dict(range=[0, 1], title="share of fakes in bin"), margin=dict(l=50, r=20, t=70, b=45))
    return fig
