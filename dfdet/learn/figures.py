"""The Learn view's figures (plotly), built from dfdet.learn's numbers. Each says "demo" when it is."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..viz.plots import CLASS_COLORS, FigureDict, _l, _layout, empty_figure
from ..viz.style import method_color
from .sphere import Head, Paths, circle_on_sphere
from .stack import stack_parts

SHORT = {"patch": "patch emb.", "embed": "cls + pos", "proj": "proj (unused)", "head": "head", "text": "text tower"}
KIND_LABEL = {"patch": "patch embedding", "embed": "class + position embedding", "ln": "LayerNorm γ/β",
              "attn": "attention", "mlp": "MLP", "proj": "CLIP projection", "head": "head", "text": "text tower"}


def stack_figure(method: str, model: str, label: str) -> go.Figure:
    """The ViT stack as a grid: one row per block (ln_1, attention, ln_2, MLP), the stem below, ln_post and the
    head on top. Lit boxes are what `method` trains; the hover gives each part's exact count."""
    parts = stack_parts(method, model)
    cols = {"ln_1": 0, "attn": 1, "ln_2": 2, "mlp": 3}
    xs, ys, colors, hover, text = [], [], [], [], []
    n_blocks = 1 + max((p.block for p in parts if 0 <= p.block < 10**6), default=-1)
    for p in parts:
        if 0 <= p.block < 10**6:
            x, y = cols[p.name.split()[-1]], p.block + 1
        elif p.block < 0:
            x, y = {"patch": 0, "embed": 1, "ln": 2}.get(p.kind, 3), 0
        else:
            x, y = {"ln": 0, "proj": 1, "head": 2, "text": 3}.get(p.kind, 3), n_blocks + 1
        lit = p.trained > 0
        xs.append(x), ys.append(y)
        colors.append("#d62728" if lit and p.kind == "head" else ("#ff7f0e" if lit else "#d9d9d9"))
        hover.append(f"{p.name}<br>{p.params:,} parameters<br>{'TRAINED: ' + format(p.trained, ',') if lit else 'frozen'}")
        outside = p.block < 0 or p.block >= 10**6  # the stem and the top are labelled; the blocks by the y axis
        text.append(("" if not outside else p.name if p.kind == "ln" else SHORT.get(p.kind, p.name)))
    fig = go.Figure(go.Scatter(x=xs, y=ys, mode="markers+text", text=text, textposition="middle right",
                               textfont=dict(size=10), hovertext=hover, hoverinfo="text",
                               marker=dict(symbol="square", size=16, color=colors, line=dict(color="#555", width=1))))
    total = sum(p.trained for p in parts)
    every = sum(p.params for p in parts)
    title = f"{label} on {model}: trains {total:,} of {every:,} parameters ({100 * total / every:.3f}%); grey is frozen"
    fig = _layout(fig, title, False, height=max(360, 18 * (n_blocks + 2) + 120), showlegend=False,
                  hovermode="closest", margin=dict(l=60, r=140, t=60, b=40))
    fig.update_xaxes(tickvals=[0, 1, 2, 3], ticktext=["ln_1", "attention", "ln_2", "MLP"], range=[-0.5, 4.5],
                     showgrid=False, zeroline=False)
    fig.update_yaxes(tickvals=[0, *range(1, n_blocks + 1, max(1, n_blocks // 12)), n_blocks + 1],
                     ticktext=["stem", *[f"block {i - 1}" for i in range(1, n_blocks + 1, max(1, n_blocks // 12))],
                               "top"], showgrid=False, zeroline=False)
    return fig


def delta_figure(tables: dict[str, pd.DataFrame], labels: dict[str, str], what: str) -> go.Figure:
    """‖Δγ‖/‖γ₀‖ per LayerNorm, one bar series per method: which layers adapted."""
    if not tables:
        return empty_figure("no LN checkpoint loaded: nothing moved to show")
    fig = go.Figure()
    for m, df in tables.items():
        fig.add_trace(go.Bar(x=_l(df["layer"]), y=_l(df["‖Δγ‖/‖γ₀‖"].astype(float)), name=labels.get(m, m),
                             marker_color=method_color(m),
                             customdata=np.stack([df["mean |Δγ|"], df["mean |Δβ|"].astype(float)], 1).tolist(),
                             hovertemplate="%{x}: ‖Δγ‖/‖γ₀‖ %{y:.4f}<br>mean |Δγ| %{customdata[0]:.4g}, "
                                           "mean |Δβ| %{customdata[1]:.4g}<extra></extra>"))
    fig = _layout(fig, f"How far each LayerNorm's γ moved, relative to {what}", False, height=340, barmode="group")
    fig.update_yaxes(title="‖Δγ‖ / ‖γ₀‖")
    return fig


def _sphere_mesh() -> list[go.Scatter3d]:
    """A light wireframe unit sphere (latitude and longitude circles)."""
    out, phi = [], np.linspace(0, 2 * np.pi, 61)
    for lat in np.linspace(-60, 60, 5):
        r, zc = np.cos(np.radians(lat)), np.sin(np.radians(lat))
        out.append((r * np.cos(phi), r * np.sin(phi), np.full_like(phi, zc)))
    th = np.linspace(-np.pi / 2, np.pi / 2, 31)
    for lon in np.linspace(0, np.pi, 6, endpoint=False):
        out.append((np.cos(th) * np.cos(lon), np.cos(th) * np.sin(lon), np.sin(th)))
    return [go.Scatter3d(x=_l(x), y=_l(y), z=_l(z), mode="lines", line=dict(color="#cccccc", width=1),
                         hoverinfo="skip", showlegend=False) for x, y, z in out]


def _scene(fig: go.Figure, names: tuple[str, str, str]) -> None:
    ax = dict(range=[-1.1, 1.1], showticklabels=False, showbackground=False)
    fig.update_layout(scene=dict(xaxis=dict(title=names[0], **ax), yaxis=dict(title=names[1], **ax),
                                 zaxis=dict(title=names[2], **ax), aspectmode="cube"))


def slerp_sphere(paths: Paths, B: np.ndarray, head: Head | None, t_now: float, boundary_norm: float,
                 title: str, demo: bool) -> FigureDict:
    """Both paths in the exact plane of A and B, on the unit sphere; the head's boundary circle; t marked."""
    fig = go.Figure(_sphere_mesh())
    sl, le = paths.slerp @ B.T, paths.lerp @ B.T
    i = int(round(t_now * (len(paths.t) - 1)))
    fig.add_trace(go.Scatter3d(x=_l(sl[:, 0]), y=_l(sl[:, 1]), z=_l(sl[:, 2]), mode="lines", name="SLERP (great circle)",
                               line=dict(color="#2ca02c", width=6)))
    fig.add_trace(go.Scatter3d(x=_l(le[:, 0]), y=_l(le[:, 1]), z=_l(le[:, 2]), mode="lines", name="LERP (chord, mixup)",
                               line=dict(color="#9467bd", width=6, dash="dash")))
    fig.add_trace(go.Scatter3d(x=[0, sl[i, 0], le[i, 0]], y=[0, sl[i, 1], le[i, 1]], z=[0, sl[i, 2], le[i, 2]],
                               mode="markers", name=f"t = {t_now:.2f}", marker=dict(size=[3, 7, 7],
                               color=["#000", "#2ca02c", "#9467bd"])))
    fig.add_trace(go.Scatter3d(x=[sl[0, 0], sl[-1, 0]], y=[sl[0, 1], sl[-1, 1]], z=[sl[0, 2], sl[-1, 2]],
                               mode="markers+text", text=["A", "B"], name="faces A, B",
                               marker=dict(size=8, color="#1f77b4")))
    if head is not None:
        # in the slice, u·(Bᵀx) = (Bu)·x: the circle is exact for the points drawn
        circ = circle_on_sphere(B @ head.u, head.boundary_offset(boundary_norm) * np.linalg.norm(head.u))
        if circ is not None:
            fig.add_trace(go.Scatter3d(x=_l(circ[:, 0]), y=_l(circ[:, 1]), z=_l(circ[:, 2]), mode="lines",
                                       name="decision boundary (p_fake = 0.5)", line=dict(color="#d62728", width=4)))
    fig = _layout(fig, title, demo, height=520, margin=dict(l=0, r=0, t=70, b=0))
    _scene(fig, ("A", "B ⟂ A", "head ⟂"))
    return FigureDict(fig.to_plotly_json())


def along_t(paths: Paths, t_now: float, p: dict[str, np.ndarray] | None, why: str, demo: bool) -> tuple[go.Figure, go.Figure]:
    """‖·‖ along t (LERP dips inside the ball, SLERP stays on it) and p_fake along t for each path."""
    t = paths.t
    nf = go.Figure([go.Scatter(x=_l(t), y=_l(np.linalg.norm(paths.slerp, axis=1)), name="SLERP", line=dict(color="#2ca02c")),
                    go.Scatter(x=_l(t), y=_l(np.linalg.norm(paths.lerp, axis=1)), name="LERP",
                               line=dict(color="#9467bd", dash="dash"))])
    nf.add_vline(x=t_now, line=dict(color="#888", dash="dot"))
    nf = _layout(nf, f"Norm along t (angle A–B {paths.angle:.1f}°): the chord leaves the sphere", demo, height=300)
    low = float(np.linalg.norm(paths.lerp, axis=1).min())
    nf.update_yaxes(title="‖x(t)‖ (unit directions)", range=[max(0.0, low - 0.1 * (1 - low) - 0.02), 1.02])
    nf.update_xaxes(title="t")
    if not p:
        return nf, empty_figure(why or "p_fake along t needs the method's head")
    pf = go.Figure([go.Scatter(x=_l(t), y=_l(p["slerp"]), name="SLERP", line=dict(color="#2ca02c")),
                    go.Scatter(x=_l(t), y=_l(p["lerp"]), name="LERP", line=dict(color="#9467bd", dash="dash"))])
    pf.add_hline(y=0.5, line=dict(color="#d62728", dash="dot"))
    pf.add_vline(x=t_now, line=dict(color="#888", dash="dot"))
    pf = _layout(pf, "p_fake along t" + (f" ({why})" if why else ""), demo, height=300)
    pf.update_yaxes(title="p_fake", range=[0, 1])
    pf.update_xaxes(title="t")
    return nf, pf


def norm_figure(df: pd.DataFrame, title: str, demo: bool) -> go.Figure:
    """‖z_cls‖ per dataset, one box per class."""
    fig = go.Figure()
    for cls, g in df.groupby("class"):
        fig.add_trace(go.Box(x=_l(g["dataset"]), y=_l(g["norm"]), name=cls, marker_color=CLASS_COLORS.get(cls),
                             boxpoints=False))
    fig = _layout(fig, title, demo, height=340, boxmode="group")
    fig.update_yaxes(title="‖z_cls‖ before normalisation")
    return fig


def boundary_sphere(coords: np.ndarray, labels: np.ndarray, offset: float, title: str, demo: bool,
                    marked: int | None = None, hover: list[str] | None = None) -> FigureDict:
    """Faces projected into the ball (x = along the head's direction, exact), the boundary circle x = offset.

    Built as plain trace dicts: validating thousands of points through plotly's objects costs seconds."""
    traces = [t.to_plotly_json() for t in _mesh_cached()]
    rows = np.arange(len(coords))
    for cls, name in ((0, "real"), (1, "fake")):
        m = labels == cls
        traces.append({"type": "scatter3d", "mode": "markers", "name": f"{name} ({int(m.sum())})",
                       "x": _l(coords[m, 0]), "y": _l(coords[m, 1]), "z": _l(coords[m, 2]),
                       "customdata": _l(rows[m]), "text": [hover[i] for i in rows[m]] if hover else None,
                       "hovertemplate": "%{text}<extra></extra>" if hover else "row %{customdata}<extra></extra>",
                       "marker": {"size": 3, "color": CLASS_COLORS[name], "opacity": 0.7}})
    circ = circle_on_sphere(np.array([1.0, 0, 0]), offset)
    if circ is not None:
        traces.append({"type": "scatter3d", "mode": "lines", "name": "decision boundary", "x": _l(circ[:, 0]),
                       "y": _l(circ[:, 1]), "z": _l(circ[:, 2]), "line": {"color": "#d62728", "width": 5}})
    if marked is not None and 0 <= marked < len(coords):
        c = coords[marked]
        traces.append({"type": "scatter3d", "mode": "markers", "name": f"row {marked}", "x": [float(c[0])],
                       "y": [float(c[1])], "z": [float(c[2])],
                       "marker": {"size": 10, "color": "rgba(0,0,0,0)", "line": {"color": "#000", "width": 4}}})
    fig = _layout(go.Figure(), title, demo, height=460, margin=dict(l=0, r=0, t=70, b=0))
    _scene(fig, ("head direction", "PC 1 of the rest", "PC 2 of the rest"))
    out = FigureDict(fig.to_plotly_json())
    out["data"] = traces
    return out


_MESH: list = []


def _mesh_cached() -> list:
    if not _MESH:
        _MESH.extend(_sphere_mesh())
    return _MESH


def sweep_figure(sweep: dict, labels: dict[str, str], demo: bool) -> go.Figure:
    fig = go.Figure()
    for m, p in sweep.items():
        if m == "scales":
            continue
        fig.add_trace(go.Scatter(x=_l(sweep["scales"]), y=_l(p), name=labels.get(m, m), line=dict(color=method_color(m))))
    fig.add_vline(x=1.0, line=dict(color="#888", dash="dot"))
    fig = _layout(fig, "One face, its ‖z‖ scaled: p_fake with and without Norm", demo, height=300)
    fig.update_xaxes(title="‖z‖ scaled by")
    fig.update_yaxes(title="p_fake", range=[0, 1])
    return fig


def geometry_plane(df: pd.DataFrame, labels: dict[str, str], title: str, demo: bool) -> go.Figure:
    """Methods on the alignment–uniformity plane, one marker per dataset (lower-left is GenD's aim)."""
    fig = go.Figure()
    symbols = ["circle", "square", "diamond", "triangle-up", "x", "cross", "star"]
    dsets = sorted(set(df["dataset"]) - {"*"})
    for m, g in df.groupby("method", sort=False):
        g = g[g["dataset"] != "*"]
        fig.add_trace(go.Scatter(x=_l(g["alignment"]), y=_l(g["uniformity"]), mode="markers", name=labels.get(m, m),
                                 text=_l(g["dataset"]), marker=dict(size=11, color=method_color(m),
                                 symbol=[symbols[dsets.index(d) % len(symbols)] for d in g["dataset"]]),
                                 hovertemplate="%{text}: alignment %{x:.4f}, uniformity %{y:.4f}<extra>" +
                                               labels.get(m, m) + "</extra>"))
    fig = _layout(fig, title, demo, height=380, hovermode="closest")
    fig.update_xaxes(title="alignment (same-class distance², lower = tighter)")
    fig.update_yaxes(title="uniformity (lower = more spread)")
    return fig
