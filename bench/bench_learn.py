"""The Learn tab's panels: response time of each on the demo run and on a 10^4-face run.

Targets (issue 21): each panel answers in ≤ 2 s on a demo run and ≤ 3 s on a 10^4-face run, on this
machine. Each panel is timed as the tab calls it (dfdet.learn.service.LearnService): the first call
(cold: projections, geometry and stack counts computed) and the median of --rounds repeats (warm).
The large run comes from bench/make_large_run.py (synthetic, 1024-d, labelled demo); its backbone is
not the loaded one, so its boundary uses the class-mean direction and the pair panel draws no p_fake
(as the tab does for such a run).

    python -m bench.bench_learn [--faces 10000] [--rounds 5]
"""
from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common
from bench.common import fmt, table

TARGET = {"demo": 2.0, "large": 3.0}


def panels(svc, run: str, n: int) -> dict:
    """Each panel's calls, as the Learn tab makes them."""
    a, b = 1, n // 2
    return {
        "1 what trains (diagram + Δγ/Δβ)": lambda: (svc.what_trains("ln_norm_slerp"), svc.deltas()),
        "2 norms + boundary + sweep": lambda: (svc.norms(run, "ln_norm"), svc.boundary(run, "ln_norm", 3),
                                               svc.sweep(run, 3)),
        "3 SLERP vs LERP (one t)": lambda: svc.pair(run, "ln_norm_slerp", a, b, 0.3),
        "4 alignment/uniformity": lambda: svc.geometry(run),
        "5 side by side (click)": lambda: (svc.boundary(run, "ln_norm", 5), svc.boundary(run, "ln_tuning", 5)),
        "6 reported vs measured": lambda: svc.reported(run),
    }


def serialise(out) -> None:
    """What gradio does with a figure: to JSON (part of the response time)."""
    import json
    items = out if isinstance(out, tuple) else (out,)
    for x in items:
        if isinstance(x, tuple):
            serialise(x)
        elif hasattr(x, "to_plotly_json"):
            json.dumps(x.to_plotly_json(), default=str)


def time_panels(svc, run: str, n: int, rounds: int) -> list[list[str]]:
    rows = []
    for name, fn in panels(svc, run, n).items():
        t0 = time.perf_counter()
        serialise(fn())
        cold = time.perf_counter() - t0
        warm = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            serialise(fn())
            warm.append(time.perf_counter() - t0)
        med = statistics.median(warm)
        rows.append([name, fmt(cold), fmt(med), "yes" if max(cold, med) <= TARGET["large" if n > 1000 else "demo"]
                     else "NO"])
    return rows


def main(argv: list[str] | None = None) -> Path:
    p = common.base_parser("Learn tab panel response times", "results_learn.md")
    p.add_argument("--faces", type=int, default=10_000, help="faces of the large run (bench/make_large_run.py)")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    device = common.setup(args)
    from dfdet.backbone import TINY_MODEL
    from dfdet.config import BackboneConfig
    from dfdet.demo import ensure_demo
    from dfdet.learn.service import LearnService
    from dfdet.viz.session import Session
    from dfdet.viz.store import AppConfig
    demo = ensure_demo()
    tmp = Path(tempfile.mkdtemp(prefix="bench_learn_"))
    try:
        shutil.copytree(demo.run_dir, tmp / "runs" / "demo")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(common.BENCH_DIR / "make_large_run.py"), str(args.faces),
                        str(tmp / "runs" / "large")], check=True, capture_output=True)
        made = time.perf_counter() - t0
        s = Session(AppConfig(runs=str(tmp / "runs"), checkpoints=str(demo.checkpoints_dir),
                              backbone=BackboneConfig(model=TINY_MODEL, pretrained=None, seed=0),
                              cache_dir=str(tmp / "cache"), demo="off", warm_up=False))
        svc = LearnService(s.store)
        n_demo = len(s.store.run("demo").predictions)
        n_large = len(s.store.run("large").predictions)
        body = [f"Demo run: {n_demo} faces (tiny random-weight ViT, heads loaded). Large run: {n_large} faces, "
                f"1024-d, written by bench/make_large_run.py in {made:.1f} s (class-mean boundary, no head). "
                f"Cold = first call (caches empty; the stack counts build ViT-L/14 on the meta device), warm = "
                f"median of {args.rounds}. Times include the figures' JSON encoding. Targets: ≤ 2 s demo, "
                "≤ 3 s on 10^4 faces.", ""]
        for label, run, n in (("demo run", "demo", n_demo), (f"{n_large}-face run", "large", n_large)):
            body += [f"## {label}", "", table(["panel", "cold s", "warm s (median)", "within target"],
                                               time_panels(svc, run, n, args.rounds)), ""]
        return common.write_report(args.out, "Learn tab: panel response times",
                                   common.command_line("bench.bench_learn", argv), device, "\n".join(body))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    print(main())
