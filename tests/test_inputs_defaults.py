"""Defaults that must be true: the SLERP view's nearest faces along the path are real faces only."""
from __future__ import annotations

import numpy as np

from dfdet.viz.services.sphere import nearest_rows


def test_nearest_rows_keeps_to_the_allowed_rows_across_chunks():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 8)).astype(np.float32)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    real = np.arange(50) % 3 == 0
    queries = z[[1, 2, 4]]  # each query is a fake row itself: unrestricted, it finds itself
    assert nearest_rows(z, queries, chunk=7) == [1, 2, 4]
    got = nearest_rows(z, queries, chunk=7, allowed=real)
    want = [int(np.flatnonzero(real)[np.argmax(z[real] @ q)]) for q in queries]
    assert got == want and all(real[got])
    assert nearest_rows(z, queries, allowed=np.zeros(50, dtype=bool)) == [-1, -1, -1]


def test_faithfulness_robustness_and_reliability_plots_use_the_registry_order_and_colours():
    """One order and one colour per method everywhere: the explain plots too (they had their own palettes)."""
    import pandas as pd

    from dfdet.explain.service import FaceExplanation, curves_figure, reliability_figure
    from dfdet.methods import METHODS
    from dfdet.robustness import probe_figure
    from dfdet.viz.style import label_colors
    names = list(METHODS)[:3][::-1]  # given in reverse registry order
    labels = {n: METHODS[n].label for n in names}
    want = [METHODS[n].label for n in list(METHODS)[:3]]
    colors = label_colors()

    def check(traces, suffix=""):
        named = [(t.name.split(" (")[0], t.line.color) for t in traces if t.showlegend is not False and t.name
                 and t.name.split(" (")[0] in want]
        assert [n for n, _ in named] == want and all(c == colors[n] for n, c in named), named
    curve = {"fractions": [0, 1], "deletion": [1, 0], "insertion": [0, 1], "deletion_random": [1, 0],
             "insertion_random": [0, 1], "auc": {k: 0.5 for k in ("deletion", "insertion", "deletion_random",
                                                                    "insertion_random")}}
    expl = FaceExplanation.__new__(FaceExplanation)
    expl.curves, expl.labels, expl.kind, expl.demo = {n: curve for n in names}, labels, "gradcam", False
    check(curves_figure(expl).data)
    rel = {"mean_p": [0.2, 0.8], "frac_fake": [0.1, 0.9], "count": [3, 3], "ece": 0.1}
    check(reliability_figure([{"method": labels[n], "dataset": "D", "level": "frame", "reliability": rel}
                              for n in names], "D").data)
    table = pd.DataFrame([{"face": 0, "method": n, "perturbation": p, "p_fake": 0.3, "threshold": 0.5,
                           "flipped": False} for n in names for p in ("original", "jpeg90")])
    check(probe_figure(table, labels).data)


def test_readme_says_what_the_default_runtime_costs_and_that_the_fast_figure_is_opt_in():
    """The README and bench/RESULTS.md quote the default (torch-fp32) cost in forwards from its results file."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    rows = [r.split("|") for r in (root / "bench" / "results_cpu_runtimes.md").read_text().splitlines()
            if r.startswith("| torch-fp32 |")]
    default = rows[0][4].strip()  # the "vs 1 fwd" column
    readme, results = (root / "README.md").read_text(), (root / "bench" / "RESULTS.md").read_text()
    assert f"The default runtime, `torch-fp32`, runs the four methods on one face in {default}x" in readme
    assert "`onnx-int8`, which is opt-in" in readme and "up to 0.025" in readme
    assert f"default `torch-fp32`: **{default}x** (not met)" in results
