"""Demo-mode start of `python app.py` on a machine without CLIP weights: how long until the page is
usable, and until every view has the demo run; first start (empty cache) and a restart (cached).

    python bench/bench_demo_start.py [--compare-full]

--compare-full also builds the demo assets with the previous sizes (every shared face, 8 steps per
method), in the same process, right after the shipped build: the ratio of the two is the saving.
Writes its section into bench/results_dashboard.md (between the demo-start markers).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `bench` and `dfdet` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.load_test import free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- demo-start:begin -->", "<!-- demo-start:end -->"


def start_once(demo_dir: Path, cache: Path, timeout: float = 900) -> dict[str, float]:
    """Spawn app.py; seconds to HTTP 200 and to the status saying DEMO MODE (every view has the demo run)."""
    from gradio_client import Client
    port = free_port()
    env = {**os.environ, "DFDET_DEMO_DIR": str(demo_dir), "DFDET_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
           "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--port", str(port), "--host", "127.0.0.1",
                             "--runs", str(cache / "no_runs")], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out: dict[str, float] = {}
    try:
        url = f"http://127.0.0.1:{port}/"
        while time.perf_counter() - t0 < timeout:
            try:
                if urllib.request.urlopen(url, timeout=2).status == 200:
                    out["page"] = time.perf_counter() - t0
                    break
            except OSError:
                time.sleep(0.2)
        client = None
        while time.perf_counter() - t0 < timeout:
            try:  # on a loaded machine one status call can time out: ask again
                client = client or Client(url, verbose=False)
                banner = client.predict(api_name="/status")[0]
            except Exception:  # noqa: BLE001
                time.sleep(1)
                continue
            if "DEMO MODE" in banner:
                out["demo"] = time.perf_counter() - t0
                break
            time.sleep(0.5)
    finally:
        proc.terminate()
        try:
            proc.wait(180)  # SIGTERM: the app closes its server and deletes its temp files
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
    return out


def full_build(root: Path) -> float:
    """The previous demo build: every shared face, 8 steps per method."""
    import dfdet.demo as demo
    saved = (demo.TRAIN_FACES, demo.VAL_FACES, demo.TEST_FACES, demo.MAX_STEPS, demo.DEMO_VERSION)
    demo.TRAIN_FACES = demo.VAL_FACES = demo.TEST_FACES = 10 ** 6
    demo.MAX_STEPS = 8
    try:
        t0 = time.perf_counter()
        demo.ensure_demo(root)
        return time.perf_counter() - t0
    finally:
        demo.TRAIN_FACES, demo.VAL_FACES, demo.TEST_FACES, demo.MAX_STEPS, demo.DEMO_VERSION = saved


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--compare-full", action="store_true", help="also time the previous (full-size) build")
    p.add_argument("--out", default=str(REPO / "bench" / "results_dashboard.md"))
    args = p.parse_args(argv)
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        first = start_once(tmp / "demo", tmp / "cache")
        timings = json.loads((tmp / "demo" / "timings.json").read_text())
        stamp = json.loads((tmp / "demo" / "demo.json").read_text())
        again = start_once(tmp / "demo", tmp / "cache")
        full = None
        if args.compare_full:
            import dfdet.demo as demo
            t0 = time.perf_counter()
            demo.ensure_demo(tmp / "shipped")
            shipped = time.perf_counter() - t0
            full = (shipped, full_build(tmp / "full"))
    load1 = os.getloadavg()
    lines = [BEGIN, "## Demo-mode start (`python app.py` without CLIP weights)", "",
             f"- command: `python bench/bench_demo_start.py{' --compare-full' if args.compare_full else ''}`",
             f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; 2 CPU cores shared with other work",
             f"- load average (1/5/15 min) at start: {'/'.join(f'{x:.1f}' for x in load0)}; "
             f"at end: {'/'.join(f'{x:.1f}' for x in load1)}", "",
             "| what | s |", "|---|---|",
             f"| first start: spawn -> page usable (HTTP 200, every view served) | {first.get('page', float('nan')):.1f} |",
             f"| first start: spawn -> demo mode ready (build + load) | {first.get('demo', float('nan')):.1f} |",
             f"| of which the build (demo.json) | {stamp.get('seconds', float('nan')):.1f} |",
             f"| restart (assets cached): spawn -> page usable | {again.get('page', float('nan')):.1f} |",
             f"| restart (assets cached): spawn -> demo mode ready | {again.get('demo', float('nan')):.1f} |", "",
             "Seconds per build step (mean per kind, the next build's estimate): "
             + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()) + "."]
    if full:
        lines += ["", "| build, same process, one after the other | s |", "|---|---|",
                  f"| shipped: {96} faces per class to train, <= 60 per class and dataset to test, 6 steps | "
                  f"{full[0]:.1f} |",
                  f"| previous: every shared face, 8 steps | {full[1]:.1f} |", "",
                  f"The shipped build takes {full[0] / full[1]:.2f}x the previous one's time."]
    lines += ["", "Single measurements on a shared machine: the absolute times vary with its load.", END]
    out = Path(args.out)
    text = out.read_text() if out.is_file() else "# Dashboard latency\n"
    if BEGIN in text:
        text = text[:text.index(BEGIN)] + "\n".join(lines) + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + "\n".join(lines) + "\n"
    out.write_text(text)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
