"""Large runs through the dashboard's services: each view's first response, its payload, the server's RSS.

    python bench/make_large_run.py 10000 /tmp/lr/r10000 && python -m dfdet project /tmp/lr/r10000
    git worktree add /tmp/main_base 9af335d        # today's main, read-only, for the side-by-side
    python bench/bench_large_runs.py --runs /tmp/lr/r10000 /tmp/lr/r100000 --base /tmp/main_base \\
        --out bench/results_large_runs.md

Each (code, run) is measured in a fresh process (a server's first visitor, after the imports a started
server has done: torch for the models, umap and scipy for the warm-up): the views are called in
the order a researcher opens them, each one's wall time and payload (the figure's JSON; for the
Errors galleries, the JPEG bytes of their faces) recorded, and the process's peak RSS after each.
A process that runs past --timeout is stopped; the views it did not reach are reported as such.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VIEWS = ("roc", "errors", "filter", "hypersphere", "slerp")


def payload(obj) -> int:
    if hasattr(obj, "to_json"):
        return len(obj.to_json())
    return len(json.dumps(obj))


def gallery_bytes(items) -> int:
    total = 0
    for im, _, _ in items:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, "JPEG", quality=90)
        total += buf.tell()
    return total


def child(runs_dir: str, run: str, cache: str) -> None:
    """Runs in the code tree on sys.path[0]; prints one JSON line per view."""
    t0 = time.perf_counter()
    import scipy.stats  # noqa: F401 - what a started server has imported already (models, UMAP warm-up)
    import torch  # noqa: F401
    import umap  # noqa: F401
    emit("imports", time.perf_counter() - t0, 0)
    from dfdet.viz.store import AppConfig, Store
    t0 = time.perf_counter()
    store = Store(AppConfig(runs=runs_dir, cache_dir=cache, demo="off", warm_up=False))
    emit("load", time.perf_counter() - t0, 0)
    from dfdet.viz.services.errors import ErrorsService
    from dfdet.viz.services.roc import RocService
    from dfdet.viz.services.sphere import SphereService
    r = store.run(run)
    methods = list(r.methods)
    datasets = sorted(r.predictions["dataset"].unique())
    main_ds = [r.predictions["dataset"].value_counts().idxmax()]
    steps = {
        "roc": lambda: payload(RocService(store).view(run, methods, main_ds, "frame", 0.5).figure),
        "errors": lambda: sum(gallery_bytes(v) for v in ErrorsService(store).cases(run, "ln_norm").items.values()),
        "filter": lambda: payload(RocService(store).view(run, methods, datasets[:2], "video", 0.3).figure)
        + sum(gallery_bytes(v) for v in ErrorsService(store).cases(run, "ln_norm", datasets[0], 0.3).items.values()),
        "hypersphere": lambda: payload(SphereService(store).figure(run, "ln_norm", "label", 2)),
        "slerp": lambda: payload(SphereService(store).slerp(run, "ln_norm", 3, len(r.predictions) // 2).sphere),
    }
    for name in VIEWS:
        t = time.perf_counter()
        size = steps[name]()
        emit(name, time.perf_counter() - t, size)


def emit(view: str, seconds: float, size: int) -> None:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MB (Linux reports KB)
    print(json.dumps({"view": view, "s": round(seconds, 2), "bytes": size, "rss_mb": round(rss)}), flush=True)


def measure(code: Path, run_folder: Path, timeout: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-lr-") as tmp:
        runs = Path(tmp) / "runs"
        runs.mkdir()
        (runs / "big").symlink_to(run_folder.resolve())
        env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "2"}
        cmd = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(code)!r}); "
               f"sys.argv=['x']; import runpy; m = runpy.run_path({str(ROOT / 'bench' / 'bench_large_runs.py')!r});"
               f"m['child']({str(runs)!r}, 'big', {str(Path(tmp) / 'cache')!r})"]
        out = {}
        try:
            proc = subprocess.run(cmd, env=env, cwd=str(code), capture_output=True, text=True, timeout=timeout)
            text, err = proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as e:
            text = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            err = f"timed out after {timeout} s"
        for line in text.splitlines():
            if line.startswith("{"):
                rec = json.loads(line)
                out[rec["view"]] = rec
        out["_error"] = "" if len(out) == len(VIEWS) + 2 else (err or "")[-300:]
        return out


def cell(rec: dict | None, key: str, timeout: int) -> str:
    if rec is None:
        return f"not reached (> {timeout} s)"
    if key == "bytes":
        return f"{rec['bytes'] / 1e6:.2f} MB"
    return f"{rec[key]:.2f} s"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", type=Path, required=True, help="run folders (with projections stored)")
    ap.add_argument("--base", type=Path, default=None, help="a worktree of today's main, measured beside this code")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per (code, run) process")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    trees = [("this branch", ROOT)] + ([("main 9af335d", a.base)] if a.base else [])
    lines = ["# Large runs through the dashboard's services", "",
             "Command: `python bench/bench_large_runs.py " + " ".join(sys.argv[1:] if argv is None else argv) + "`",
             f"Load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs, shared machine)", ""]
    for run in a.runs:
        import pandas as pd
        n = len(pd.read_csv(run / "predictions.csv", usecols=["label"]))
        lines += [f"## {n:,} faces ({run.name}), four methods, 1024-d", "",
                  "| view | " + " | ".join(f"{name}: first response | {name}: payload" for name, _ in trees) + " |",
                  "|---|" + "---|---|" * len(trees)]
        results = []
        for name, code in trees:
            print(f"measuring {name} on {run} ...", flush=True)
            results.append(measure(code, run, a.timeout))
            print(json.dumps(results[-1]), flush=True)
        for view in ("imports", "load", *VIEWS):
            row = [view]
            for res in results:
                rec = res.get(view)
                row += [cell(rec, "s", a.timeout), "" if view in ("imports", "load") else cell(rec, "bytes", a.timeout)]
            lines.append("| " + " | ".join(row) + " |")
        rss = [max((r.get("rss_mb", 0) for k, r in res.items() if k != "_error"), default=0) for res in results]
        lines += ["", "Server peak RSS: " + "; ".join(f"{name} {m / 1024:.2f} GB" for (name, _), m in zip(trees, rss))]
        errs = [f"{name}: {res['_error']}" for (name, _), res in zip(trees, results) if res.get("_error")]
        lines += [f"Stopped: {e}" for e in errs] + [""]
    lines.append(f"Load average at end: {os.getloadavg()[0]:.1f}")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        a.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
