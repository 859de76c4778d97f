"""The Learn view's back end: each panel's numbers and figures from a Store (runs, loaded checkpoints).

Heads come from the loaded checkpoints' own tensors (numpy: no model call, no lock), and only when the
run was made on the same backbone; otherwise a panel says why it draws no p_fake. Per-run results
that cost more than a few milliseconds (projections, geometry tables) are kept.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..artifacts import PRED_PREFIX, Run
from ..errors import DataError
from ..methods import METHODS, get_method
from ..viz.plots import DEMO_NOTE
from ..viz.store import Store, check_row, md_escape
from . import figures, geometry, reported, sphere
from .stack import ln_deltas, stack_parts

MAX_BOUNDARY_FACES = 4000  # faces drawn in a boundary sphere (a seeded sample beyond; WebGL stays responsive)


class LearnService:
    def __init__(self, store: Store):
        self.store = store
        self._cache: dict = {}

    # -- helpers -----------------------------------------------------------------------------------------------
    def _run(self, run_name: str, method: str | None = None) -> Run:
        run = self.store.run(run_name)
        if method is not None and method not in run.methods:
            raise DataError(f"run {run_name} has no method {method!r}; it has {', '.join(self.store.methods_of(run))}")
        return run

    def demo(self, run: Run | None = None) -> bool:
        bank = self.store.bank
        return bool(run.info.get("demo")) if run is not None else bool(bank is not None and bank.demo)

    def head(self, run: Run, method: str) -> tuple[sphere.Head | None, str]:
        """The method's head for this run's features, or why there is none (never a head of another backbone)."""
        bank = self.store.bank
        spec = METHODS.get(run.info.get("methods", {}).get(method, {}).get("method", method))
        if spec is None or spec.family != "ln":
            return None, f"{method} has no linear head"
        if bank is None:
            return None, "no model is loaded, so no head to score with"
        entry = bank.entries.get(method)
        if entry is None or entry.status != "ready" or not entry.tensors:
            return None, f"the {method} checkpoint is not loaded"
        bb, cfg = run.info.get("backbone", {}), bank.clip.config
        if bb.get("model") != cfg.model or bb.get("weights") != bank.clip.weights_id:
            return None, (f"this run was made on {bb.get('model')}/{bb.get('weights')}, the loaded backbone is "
                          f"{cfg.model}/{bank.clip.weights_id}")
        t = {k: v.float().cpu().numpy() for k, v in entry.tensors.items() if k.startswith("head.")}
        return sphere.head_from_tensors(t, spec.normalize, f"the loaded {method} head"), ""

    # -- 1. what trains ----------------------------------------------------------------------------------------
    def what_trains(self, method: str, model: str = "ViT-L-14") -> tuple[object, str]:
        if method not in METHODS:
            raise DataError(f"unknown method {str(method)[:40]!r}; known: {', '.join(METHODS)}")
        spec = get_method(method)
        parts = stack_parts(method, model)
        total, every = sum(p.trained for p in parts), sum(p.params for p in parts)
        lit = sorted({p.kind for p in parts if p.trained})
        text = (f"**{md_escape(spec.label)}** trains **{total:,}** of {every:,} parameters of {model} "
                f"({100 * total / every:.3f}%): {', '.join(figures.KIND_LABEL.get(k, k) for k in lit) or 'nothing'}. "
                "Everything grey stays exactly as CLIP learnt it.")
        return figures.stack_figure(method, model, spec.label), text

    def deltas(self) -> tuple[object, pd.DataFrame, str]:
        """|Δγ|, |Δβ| per LayerNorm of every loaded LN checkpoint against the loaded backbone's own values."""
        bank = self.store.bank
        if bank is None:
            return figures.delta_figure({}, {}, ""), pd.DataFrame(), "No model is loaded: no checkpoint to inspect."
        ref = {k: v.float().cpu().numpy() for k, v in bank.clip.pristine.items()}
        what = ("the demo's random-weight backbone it was trained from (not CLIP's values)" if bank.demo
                else f"CLIP's own {bank.clip.config.model}/{bank.clip.weights_id} values")
        tables, labels = {}, {}
        for name, e in bank.entries.items():
            if e.status == "ready" and e.tensors and e.spec.trains == "layernorm":
                got = {k: v.float().cpu().numpy() for k, v in e.tensors.items() if k.startswith("backbone.visual.")}
                tables[name], labels[name] = ln_deltas(got, ref), e.label
        fig = figures.delta_figure(tables, labels, what)
        long = pd.concat([df.assign(method=labels[m]) for m, df in tables.items()]) if tables else pd.DataFrame()
        note = f"Δ = checkpoint − {what}." + (f" {DEMO_NOTE}." if bank.demo else "")
        return fig, long, note

    # -- 2. why the sphere -------------------------------------------------------------------------------------
    def norms(self, run_name: str, method: str) -> object:
        """‖z_cls‖ per dataset and class. A Norm method's stored norm is its head's input (1 for every face),
        so the run's first method without Norm shows z_cls's own norms instead, and the title says so."""
        run = self._run(run_name, method)
        _, norm = self.store.embeddings(run_name, method)
        if np.allclose(norm, 1.0, atol=1e-3):
            other = next((m for m in ("ln_tuning", "linear_probe") if m in run.methods), None)
            if other is not None:
                note = f"{md_escape(method)} sees unit vectors (‖·‖ = 1); z_cls norms of {other}"
                _, norm = self.store.embeddings(run_name, other)
                method = other
                return self._norm_fig(run, norm, note)
        return self._norm_fig(run, norm, md_escape(method))

    def _norm_fig(self, run: Run, norm: np.ndarray, what: str) -> object:
        p = run.predictions
        df = pd.DataFrame({"dataset": p["dataset"].astype(str), "norm": norm,
                           "class": np.where(p["label"].astype(int) == 1, "fake", "real")})
        return figures.norm_figure(df, f"‖z_cls‖ per dataset and class ({len(df)} faces)<br><sub>{what}</sub>",
                                   self.demo(run))

    def _boundary_coords(self, run_name: str, method: str) -> tuple[np.ndarray, np.ndarray, float, str]:
        key = ("boundary", run_name, method)
        if key not in self._cache:
            run = self._run(run_name, method)
            z, norm = self.store.embeddings(run_name, method)
            labels = run.predictions["label"].astype(int).to_numpy()
            head, why = self.head(run, method)
            if head is None:
                head = sphere.head_from_means(z, labels)
            B = sphere.boundary_view(z, head)
            offset = head.boundary_offset(float(np.median(norm)))
            src = head.source + ("" if head.normalize else ", drawn at the run's median ‖z‖ (without Norm the "
                                 "boundary moves with each face's norm)")
            self._cache[key] = (sphere.onto_sphere(z @ B.T), labels, offset, src + (f"; {why}" if why else ""))
        return self._cache[key]

    def boundary(self, run_name: str, method: str, marked=None) -> tuple[object, str]:
        coords, labels, offset, src = self._boundary_coords(run_name, method)
        run = self._run(run_name)
        idx = np.arange(len(coords))
        if len(idx) > MAX_BOUNDARY_FACES:
            idx = np.sort(np.random.default_rng(0).choice(idx, MAX_BOUNDARY_FACES, replace=False))
        row = check_row(marked, len(coords), f"run {run_name}") if marked not in (None, "") else None
        keep = idx if row is None or row in idx else np.sort(np.append(idx, row))
        local = None if row is None else int(np.searchsorted(keep, row))
        hover = [f"row {i}" for i in keep]
        short = "the class means (no head loaded)" if "class means" in src else "its head"
        fig = figures.boundary_sphere(coords[keep], labels[keep], offset,
                                      f"{md_escape(method)}: the boundary of {short}", self.demo(run), local, hover)
        for tr in fig["data"]:  # customdata: the run's own row numbers (clicks mark the same face in both views)
            if tr.get("customdata") is not None and tr.get("mode") == "markers":
                tr["customdata"] = keep[np.asarray(tr["customdata"], dtype=int)].tolist()
        agree = np.mean((coords[:, 0] > offset) == (run.predictions[PRED_PREFIX + method].to_numpy() >= 0.5))
        text = (f"Boundary from {md_escape(src)}. Each face sits on the sphere at its exact coordinate along the "
                f"head's direction (the first axis); its place around that axis comes from the two principal "
                f"directions of the rest. Faces past the red circle's plane are called fake. "
                f"Side of the plane agrees with the recorded verdict for {100 * agree:.1f}% of {len(coords)} faces"
                + (" (the rest: faces whose norm differs from the median, for a head without Norm)." if agree < 1 else "."))
        return fig, text

    def sweep(self, run_name: str, row) -> tuple[object, str]:
        """One face's ‖z‖ scaled: p_fake of LN-tuning moves, of LN + Norm does not (the heads that are loaded)."""
        run = self._run(run_name)
        row = check_row(row, len(run.predictions), f"run {run_name}")
        heads, labels, whys = {}, {}, []
        for m in ("ln_tuning", "ln_norm"):
            if m not in run.methods:
                whys.append(f"{m}: not in this run")
                continue
            h, why = self.head(run, m)
            if h is None:
                whys.append(f"{m}: {why}")
                continue
            z, norm = self.store.embeddings(run_name, m)
            heads[m], labels[m] = (h, z[row], float(norm[row])), get_method(m).label
        if not heads:
            return figures.empty_figure("no LN / LN + Norm head for this run: " + "; ".join(whys)), "; ".join(whys)
        out = {}
        for m, (h, zu, n) in heads.items():
            s = sphere.norm_sweep(zu, n, {m: h})
            out["scales"], out[m] = s["scales"], s[m]
        return figures.sweep_figure(out, labels, self.demo(run)), md_escape("; ".join([*whys, self.same_faces(run_name)]))

    def same_faces(self, run_name: str) -> str:
        """LN vs LN + Norm on the run's own faces: how often their verdicts agree, and how much LN-tuning's
        p_fake follows ‖z_cls‖ (rank correlation); empty when the run lacks either method."""
        run = self._run(run_name)
        if not {"ln_tuning", "ln_norm"} <= set(run.methods):
            return ""
        p = run.predictions
        a, b = p[PRED_PREFIX + "ln_tuning"].to_numpy(), p[PRED_PREFIX + "ln_norm"].to_numpy()
        _, norm = self.store.embeddings(run_name, "ln_tuning")
        rho = pd.Series(norm).rank().corr(pd.Series(a).rank())
        return (f"On this run's {len(p)} faces, LN-tuning and LN + Norm give the same verdict for "
                f"{100 * np.mean((a >= 0.5) == (b >= 0.5)):.1f}%; LN-tuning's p_fake follows its ‖z_cls‖ with "
                f"rank correlation {rho:+.2f}")

    # -- 3. SLERP against LERP ---------------------------------------------------------------------------------
    def pair(self, run_name: str, method: str, a, b, t: float = 0.5) -> tuple[object, object, object, str]:
        run = self._run(run_name, method)
        z, norm = self.store.embeddings(run_name, method)
        a = check_row(a, len(z), f"run {run_name}")
        b = check_row(b, len(z), f"run {run_name}")
        if a == b:
            raise DataError(f"face A and face B are the same row ({a}): a path needs two different faces")
        t = float(min(1.0, max(0.0, float(t))))
        paths = sphere.interpolate(z[a], z[b], float(norm[a]), float(norm[b]))
        head, why = self.head(run, method)
        B = sphere.pair_view(paths.slerp[0], paths.slerp[-1], head)
        p = None
        if head is not None:
            feed = (paths.slerp, paths.lerp) if head.normalize else (paths.slerp_raw, paths.lerp_raw)
            p = {"slerp": head.p_fake(feed[0]), "lerp": head.p_fake(feed[1])}
        demo = self.demo(run)
        la, lb = (("fake" if int(run.predictions["label"].iloc[r]) else "real") for r in (a, b))
        sph = figures.slerp_sphere(paths, B, head, t, float(np.median(norm)),
                                   f"A = row {a} ({la}), B = row {b} ({lb}): {md_escape(method)}", demo)
        nf, pf = figures.along_t(paths, t, p, why, demo)
        i = int(round(t * (len(paths.t) - 1)))
        text = (f"{'Same' if la == lb else 'Different'}-class pair, {paths.angle:.1f}° apart. At t = {t:.2f}: "
                f"‖SLERP‖ = 1.000, ‖LERP‖ = {np.linalg.norm(paths.lerp[i]):.3f}")
        if p is not None:
            text += f"; p_fake SLERP {p['slerp'][i]:.3f}, LERP {p['lerp'][i]:.3f}"
            if not head.normalize:
                text += " (no Norm: the head sees each path scaled by the interpolated ‖z‖)"
        else:
            text += f". No p_fake: {why}"
        return sph, nf, pf, md_escape(text) + (f" {DEMO_NOTE}." if demo else "")

    # -- 4. alignment and uniformity ---------------------------------------------------------------------------
    def geometry(self, run_name: str) -> tuple[pd.DataFrame, object]:
        key = ("geometry", run_name)
        run = self._run(run_name)
        if key not in self._cache:
            self._cache[key] = geometry.geometry_table(run)
        df = self._cache[key]
        labels = {m: md_escape(m) for m in df["method"].unique()}
        fig = figures.geometry_plane(df, labels, f"{md_escape(run_name)}: methods on the alignment–uniformity plane",
                                     self.demo(run))
        return df.round(4), fig

    # -- 6. reported numbers ---------------------------------------------------------------------------------
    def reported(self, run_name: str | None) -> tuple[pd.DataFrame, str]:
        run = self.store.run(run_name) if run_name else None
        return reported.beside_measured(run), reported.citation_markdown()
