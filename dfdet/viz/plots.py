"""Plotly figures for the dashboard. Each takes plain arrays/tables and returns a go.Figure.

When the scores come from a random-weight backbone (demo mode) every figure carries that in its
title, so a screenshot can never be mistaken for a detection result.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

DEMO_NOTE = "DEMO: random-weight backbone, scores are meaningless"
CLASS_NAMES = {0: "real", 1: "fake"}
CLASS_COLORS = {"real": "#1f77b4", "fake": "#d62728", "correct": "#2ca02c", "wrong": "#ff7f0e"}
SVG_MAX_POINTS = 5000  # 2-D scatters above this use WebGL
MAX_POINTS = 8000  # a sphere draws at most this many points (stratified); the rest are a density underneath
ROC_POINTS = 1000  # a drawn ROC curve keeps about this many points (AUROC and operating points stay exact)
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")


def _l(a) -> list:
    """Plain lists, not plotly's base64 typed arrays: the API's JSON stays readable for gradio_client users."""
    return np.asarray(a).tolist()


def _title(text: str, demo: bool) -> dict:
    if demo:
        text = f"{text}<br><span style='color:#b00020;font-size:12px'>{DEMO_NOTE}</span>"
    return {"text": text, "x": 0.01, "xanchor": "left"}


def _layout(fig: go.Figure, title: str, demo: bool, **kw) -> go.Figure:
    kw = {"margin": dict(l=50, r=20, t=70, b=45), "legend": dict(orientation="v"), **kw}
    fig.update_layout(title=_title(title, demo), template="plotly_white", **kw)
    return fig


def empty_figure(message: str) -> go.Figure:
    """A blank figure that says why there is nothing to show."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=14))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(template="plotly_white", height=300, margin=dict(l=10, r=10, t=10, b=10))
    return fig


def own_thresholds(thresholds: dict[str, float] | None, labels) -> dict[str, float]:
    """label -> threshold for the shown labels, or {} when every one is 0.5 (then one shared 0.5 line says it)."""
    own = {m: float(thresholds[m]) for m in labels if thresholds and m in thresholds}
    return own if any(abs(t - 0.5) > 1e-9 for t in own.values()) else {}


def probability_bars(table: pd.DataFrame, demo: bool, thresholds: dict[str, float] | None = None) -> go.Figure:
    """p_fake per method (rows with a score, the one method order), coloured by method, with the decision line.

    The word in each bar is the table's verdict (the method's own calibrated threshold, "uncertain" in its
    band), so the plot never contradicts the table. `thresholds` (label -> threshold): a dotted tick at each
    method's threshold over its bar; without them, one 0.5 line. The value sits inside the bar's top and
    the line's label at the right edge, so the line never strikes a label through."""
    from .style import label_colors
    scored = table.dropna(subset=["p_fake"])
    if scored.empty:
        return empty_figure("No method has a score: see the table for what is missing.")
    colors = label_colors()
    verdicts = (scored["verdict"].astype(str).str.split(" ").str[0] if "verdict" in scored
                else pd.Series([""] * len(scored), index=scored.index))
    words = [v or ("fake" if p >= 0.5 else "real") for v, p in zip(verdicts, scored["p_fake"])]
    fig = go.Figure(go.Bar(x=_l(scored["method"]), y=_l(scored["p_fake"]),
                           marker_color=[colors.get(m, "#777") for m in scored["method"]],
                           text=[f"{p:.3f} {w}" for p, w in zip(scored["p_fake"], words)],
                           textposition="inside", insidetextanchor="end", textfont=dict(color="white"),
                           hovertemplate="%{x}<br>p_fake %{y:.4f}<extra></extra>"))
    own = own_thresholds(thresholds, scored["method"])
    if own:
        for i, m in enumerate(scored["method"]):
            if m in own:
                fig.add_shape(type="line", x0=i - 0.48, x1=i + 0.48, y0=own[m], y1=own[m], xref="x", yref="y",
                              line=dict(color="#222", dash="dot", width=2))
        fig.add_annotation(text="dotted: each method's threshold", xref="paper", yref="paper", x=1, y=1.02,
                           showarrow=False, xanchor="right", yanchor="bottom", font=dict(size=11, color="#555"))
    else:
        fig.add_hline(y=0.5, line_dash="dot", line_color="#555", annotation_text="0.5 = decision",
                      annotation_position="right", layer="below")
    return _layout(fig, "p(fake) per method", demo, yaxis=dict(range=[0, 1.0], title="p(fake)"), height=320,
                   margin=dict(l=50, r=90, t=70, b=45))


def frame_timeline(times: np.ndarray, scores: dict[str, np.ndarray], demo: bool,
                   thresholds: dict[str, float] | None = None) -> go.Figure:
    """Per-frame p_fake over time, one line per method; each method's own threshold (label -> value)
    dotted in its colour, else one 0.5 line."""
    from .style import label_colors
    colors = label_colors()
    fig = go.Figure()
    own = own_thresholds(thresholds, scores)
    for i, (label, p) in enumerate(scores.items()):
        color = colors.get(label, PALETTE[i % len(PALETTE)])
        fig.add_trace(go.Scatter(x=_l(times), y=_l(p), mode="lines+markers", name=label, line=dict(color=color),
                                 hovertemplate=f"{label}<br>t=%{{x:.2f}} s<br>p_fake %{{y:.4f}}<extra></extra>"))
        if label in own:
            fig.add_hline(y=own[label], line_dash="dot", line_color=color, line_width=1)
    if not own:
        fig.add_hline(y=0.5, line_dash="dot", line_color="#555")
    return _layout(fig, "p(fake) per frame", demo, xaxis=dict(title="time (s)"),
                   yaxis=dict(range=[0, 1], title="p(fake)"), height=340)


def roc_figure(curves: list[dict], demo: bool, threshold: float | dict[str, float] | None = None
               ) -> go.Figure | FigureDict:
    """ROC curves, colour = method (the one colour it has everywhere), dash = dataset; AUROC and n in the
    legend, which sits beside the plot; the operating point at `threshold` (one for all, or method -> its
    own) is a ringed dot on each curve.
    The curves are plain trace dicts (validating 16 curves of 1,000 points costs a second on a busy CPU)."""
    from .style import dataset_dash, method_color
    if not curves:
        return empty_figure("Pick at least one method and one dataset.")
    datasets = sorted({c["dataset"] for c in curves})
    fig = go.Figure()
    traces = [dict(type="scatter", x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dash", color="#aaa"),
                   name="chance (AUROC 0.500)", hoverinfo="skip")]
    for c in curves:
        color = method_color(c.get("spec", c.get("method", "")))
        thr = thresholds_array(c["thresholds"])
        fpr, tpr = np.asarray(c["fpr"], dtype=float), np.asarray(c["tpr"], dtype=float)
        keep = decimate(fpr, tpr)
        n = f", n={c['n']}" if c.get("n") else ""
        traces.append(dict(
            type="scatter", x=_l(np.round(fpr[keep], 5)), y=_l(np.round(tpr[keep], 5)), mode="lines",
            line=dict(color=color, shape="hv", width=2, dash=dataset_dash(datasets, c["dataset"])),
            name=f"{c['name']} (AUROC {c['auroc']:.3f}{n})", legendgroup=c["name"],
            customdata=_l(np.round(np.where(np.isfinite(thr[keep]), thr[keep], 1.0), 5)),
            hovertemplate=f"{c['name']}<br>FPR %{{x:.3f}}<br>TPR %{{y:.3f}}<br>threshold %{{customdata:.3f}}"
                          "<extra></extra>"))
        t = threshold.get(c.get("method"), 0.5) if isinstance(threshold, dict) else threshold
        if t is not None:
            j = operating_point(thr, t)
            traces.append(dict(type="scatter", x=[float(fpr[j])], y=[float(tpr[j])], mode="markers",
                               showlegend=False, legendgroup=c["name"], name=f"{c['name']} at threshold",
                               marker=dict(size=11, color=color, line=dict(color="black", width=2)),
                               hovertemplate=f"{c['name']}<br>threshold {t:.2f}<br>FPR %{{x:.3f}}<br>"
                                             "TPR %{y:.3f}<extra></extra>"))
    title = "ROC" + (" (dots: each method at its own validation threshold)" if isinstance(threshold, dict)
                     else f" (dots: operating point at threshold {threshold:.2f})" if threshold is not None else "")
    fig = _layout(fig, title, demo, xaxis=dict(title="false positive rate", range=[0, 1], constrain="domain"),
                  yaxis=dict(title="true positive rate", range=[0, 1.02]), height=480)
    fig.update_layout(legend=dict(orientation="v", yanchor="top", y=1, xanchor="left", x=1.02, font=dict(size=11)),
                      margin=dict(l=50, r=10, t=70, b=45))
    out = FigureDict(fig.to_plotly_json())
    out["data"] = traces
    return out


def thresholds_array(thresholds) -> np.ndarray:
    """roc.json thresholds (None = +inf) as floats."""
    if isinstance(thresholds, np.ndarray):
        return thresholds.astype(float, copy=False)
    return np.array([np.inf if t is None else t for t in thresholds], dtype=float)


def decimate(fpr: np.ndarray, tpr: np.ndarray, n: int = ROC_POINTS) -> np.ndarray:
    """Indices of about n points spread evenly along the curve (by FPR + TPR), ends and corners kept:
    what is drawn; every number (AUROC, operating point) is read from the full curve."""
    if len(fpr) <= n:
        return np.arange(len(fpr))
    s = fpr + tpr
    idx = np.searchsorted(s, np.linspace(0.0, s[-1], n // 2), side="left")  # each with the point before it
    return np.unique(np.r_[0, np.clip(idx, 0, len(s) - 1), np.clip(idx - 1, 0, len(s) - 1), len(s) - 1])


def operating_point(thresholds: np.ndarray, threshold: float) -> int:
    """Index of the ROC point for `score >= threshold`: the last curve threshold still >= it."""
    ok = np.nonzero(np.asarray(thresholds, dtype=float) >= threshold)[0]
    return int(ok[-1]) if len(ok) else 0


def color_groups(df: pd.DataFrame, color_by: str, score_col: str | None, threshold: float = 0.5) -> pd.Series:
    """The group each point is coloured by: label, dataset, source, or correct/wrong."""
    if color_by == "label":
        return df["label"].astype(int).map(CLASS_NAMES)
    if color_by == "correct":
        if score_col is None:
            return pd.Series(["unknown"] * len(df), index=df.index)
        pred = (df[score_col].to_numpy() >= threshold).astype(int)
        return pd.Series(np.where(pred == df["label"].astype(int).to_numpy(), "correct", "wrong"), index=df.index)
    return df[color_by].astype(str)


class FigureDict(dict):
    """A finished plotly figure as a plain dict (data, layout).

    Building a go.Figure validates every point; for a 2,000-face sphere that costs more than the
    view's whole time budget. The sphere is validated once, kept as this dict, and SLERP paths are
    appended to a shallow copy. It serialises like a figure (to_json / to_plotly_json).
    """

    def to_plotly_json(self) -> dict:
        return self

    def to_json(self) -> str:
        import json
        try:  # plain lists and strings (how this module builds figures): the C encoder, 3x faster
            return json.dumps(self, allow_nan=False)
        except (TypeError, ValueError):
            from plotly.utils import PlotlyJSONEncoder
            return json.dumps(self, cls=PlotlyJSONEncoder)


def draw_rows(strata: np.ndarray, n: int, keep: np.ndarray | None = None, first: np.ndarray | None = None,
              seed: int = 0) -> np.ndarray:
    """At most n rows (sorted) to draw: every `keep` row, then up to half the budget of `first` rows (the
    errors), then the rest, each part stratified by `strata` (every stratum shows, in proportion)."""
    from .projection import stratified_sample
    total = len(strata)
    if total <= n:
        return np.arange(total)
    keep = np.unique(np.asarray([] if keep is None else keep, dtype=np.int64))
    chosen = [keep]
    budget = n - len(keep)
    pools = []
    if first is not None and len(first):
        pools.append((np.setdiff1d(first, keep), budget // 2))
    rest_mask = np.ones(total, bool)
    rest_mask[keep] = False
    if pools:
        rest_mask[pools[0][0]] = False
    for pool, b in pools:
        pick = pool[stratified_sample(strata[pool], b, seed)] if len(pool) > b else pool
        chosen.append(pick)
        budget -= len(pick)
    rest = np.nonzero(rest_mask)[0]
    if budget > 0 and len(rest):
        chosen.append(rest[stratified_sample(strata[rest], budget, seed)] if len(rest) > budget else rest)
    return np.unique(np.concatenate(chosen))[: max(n, len(keep))]


def density_trace(coords: np.ndarray, bins: int = 90) -> dict:
    """Every face as a grey 2-D density (fixed size at any N), drawn under the sampled points."""
    h, xe, ye = np.histogram2d(coords[:, 0], coords[:, 1], bins=bins)
    z = np.log1p(h.T)
    z = np.round(z / max(z.max(), 1e-9), 3)
    return go.Heatmap(x=_l(np.round((xe[1:] + xe[:-1]) / 2, 4)), y=_l(np.round((ye[1:] + ye[:-1]) / 2, 4)), z=_l(z),
                      colorscale=[[0, "rgba(0,0,0,0)"], [0.001, "rgba(120,120,120,0.08)"], [1, "rgba(60,60,60,0.55)"]],
                      showscale=False, hoverinfo="skip", name=f"density of all {len(coords)} faces", zsmooth="best",
                      showlegend=True).to_plotly_json()


def sphere_figure(coords: np.ndarray, groups: pd.Series, hover: list[str], thumbs: list[str] | None,
                  demo: bool, title: str, rows: np.ndarray | None = None, density: np.ndarray | None = None,
                  ) -> FigureDict:
    """Scatter of the projected embeddings (2-D or 3-D), one trace per colour group.

    customdata holds [row, thumbnail data-URI or ""] per point: the app's hover script shows the face.
    `rows`: the run rows these points are (default 0..n-1); `density`: every face's 2-D coordinates,
    drawn as a density under the points when only a sample of them is drawn.
    """
    dims = coords.shape[1]
    fig = go.Figure()
    rows = np.arange(len(coords)) if rows is None else np.asarray(rows)
    traces = [density_trace(density)] if density is not None and dims == 2 else []
    names = sorted(groups.unique(), key=str)
    thumbs_arr = np.array(thumbs, dtype=object) if thumbs else np.full(len(coords), "", dtype=object)
    hover_arr = np.array(hover, dtype=object)
    for i, name in enumerate(names):
        m = (groups == name).to_numpy()
        color = CLASS_COLORS.get(name, PALETTE[i % len(PALETTE)])
        custom = np.stack([rows[m].astype(str), thumbs_arr[m].astype(str)], axis=1).tolist()
        # plain trace dicts: plotly's per-point validation of 8,000 points costs seconds, and they are plain lists
        trace = dict(name=f"{name} ({m.sum()})", mode="markers", customdata=custom, text=hover_arr[m].tolist(),
                     hovertemplate="%{text}<extra></extra>", x=_l(np.round(coords[m, 0], 4)),
                     y=_l(np.round(coords[m, 1], 4)))
        if dims == 3:
            trace.update(type="scatter3d", z=_l(np.round(coords[m, 2], 4)),
                         marker=dict(size=3, color=color, opacity=0.75))
        else:  # SVG up to a few thousand points: WebGL contexts are slow to start and scarce in a page
            small = len(coords) <= SVG_MAX_POINTS and density is None
            trace.update(type="scatter" if small else "scattergl", marker=dict(size=6, color=color, opacity=0.75))
        traces.append(trace)
    fig = _layout(fig, title, demo, height=560, hovermode="closest", dragmode="zoom" if dims == 2 else "orbit")
    if dims == 2:
        fig.update_xaxes(showticklabels=False, title="UMAP 1")
        fig.update_yaxes(showticklabels=False, title="UMAP 2")
    else:
        axis = dict(showticklabels=False)
        fig.update_layout(scene=dict(xaxis=dict(title="UMAP 1", **axis), yaxis=dict(title="UMAP 2", **axis),
                                     zaxis=dict(title="UMAP 3", **axis)))
    out = FigureDict(fig.to_plotly_json())
    out["data"] = traces
    return out


def with_path(base: FigureDict, path: np.ndarray, t: np.ndarray, p: np.ndarray | None) -> FigureDict:
    """The sphere with the SLERP path (coloured by p_fake when known) and its ends A and B on top."""
    dims = path.shape[1]
    label = [f"t={ti:.2f}" + (f"<br>p_fake {pi:.3f}" if pi is not None and np.isfinite(pi) else "")
             for ti, pi in zip(t, p if p is not None else [None] * len(t))]
    line = dict(mode="lines+markers", name="SLERP path", text=label, hovertemplate="%{text}<extra></extra>")
    marker = dict(size=4 if dims == 3 else 6, color=_l(p) if p is not None else "#111",
                  colorscale="Viridis", cmin=0, cmax=1, showscale=p is not None,
                  colorbar=dict(title="path p_fake", len=0.5))
    ends = dict(mode="markers+text", text=["A", "B"], textposition="top center", name="A / B", hoverinfo="skip",
                marker=dict(size=14 if dims == 2 else 7, symbol="diamond", color="#ffd400",
                            line=dict(color="black", width=1)))
    xyz = {k: _l(path[:, i]) for i, k in enumerate("xyz"[:dims])}
    end_xyz = {k: [float(path[0, i]), float(path[-1, i])] for i, k in enumerate("xyz"[:dims])}
    if dims == 3:
        traces = [go.Scatter3d(**xyz, line=dict(color="#111", width=4), marker=marker, **line),
                  go.Scatter3d(**end_xyz, **ends)]
    else:
        traces = [go.Scatter(**xyz, line=dict(color="#111", width=2), marker=marker, **line),
                  go.Scatter(**end_xyz, **ends)]
    out = FigureDict(base)
    out["data"] = list(base["data"]) + [tr.to_plotly_json() for tr in traces]
    return out


def slerp_curve(t: np.ndarray, p: np.ndarray | None, label: str, demo: bool,
                recorded: tuple[float, float] | None = None, message: str = "", threshold: float = 0.5) -> go.Figure:
    """p_fake of the method's head along the path; the run's recorded scores of A and B as markers; the
    method's own decision threshold as the dotted line."""
    if p is None:
        return empty_figure(message or "No head available for this method.")
    from .style import label_colors
    fig = go.Figure(go.Scatter(x=_l(t), y=_l(p), mode="lines+markers", name=f"{label} head on slerp(A, B, t)",
                               line=dict(color=label_colors().get(label, "#111")), hovertemplate="t=%{x:.2f}<br>p_fake %{y:.4f}<extra></extra>"))
    if recorded is not None:
        fig.add_trace(go.Scatter(x=[0, 1], y=list(recorded), mode="markers+text", text=["A", "B"],
                                 textposition="top center", name="recorded in the run",
                                 marker=dict(size=12, symbol="diamond-open", color="#ff7f0e", line=dict(width=2))))
    fig.add_hline(y=threshold, line_dash="dot", line_color="#555", annotation_text=f"threshold {threshold:.2f}",
                  annotation_position="bottom right")
    return _layout(fig, "p(fake) along the great circle A → B", demo, xaxis=dict(title="t", range=[-0.02, 1.02]),
                   yaxis=dict(title="p(fake)", range=[0, 1]), height=380)
