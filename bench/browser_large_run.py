"""A large run's Hypersphere and ROC views in a real browser: the tab's JS heap, time to drawn points, points drawn.

    python bench/make_large_run.py 100000 /tmp/lr/r100000 && python -m dfdet project /tmp/lr/r100000
    python bench/browser_large_run.py --run-folder /tmp/lr/r100000 --out /tmp/browser_large_run.md

The dashboard is started as `python app.py --runs DIR --demo off` (DIR: a temp folder holding a link to the
run folder, so the run is the only one served), on a free local port. Debian's Chromium, headless, launched by
Playwright as tests/test_browser.py does, opens each link in a fresh browser context (no shared cache):

  baseline     `/`                                   the page with its first tab (nothing of the run drawn)
  hypersphere  `/?tab=hypersphere&run=NAME`          waits until `#hs-plot .js-plotly-plot` has drawn points
  roc          `/?tab=roc&run=NAME`                  waits until `#roc-plot .js-plotly-plot` has drawn points

"drawn" = the figure's data (`gd.data`) holds points and plotly has rendered them (an SVG `.scatterlayer`
with paths, or a WebGL canvas for scattergl/3-D). Time to draw counts from `page.goto` to that moment, so it
includes the server's view. The heap is the tab's, read by CDP `Performance.getMetrics` (JSHeapUsedSize,
JSHeapTotalSize), then again after CDP `HeapProfiler.collectGarbage`; `performance.memory.usedJSHeapSize`
(precise: Chromium runs with --enable-precise-memory-info) is reported beside it. Points = the sum over the
figure's point traces (scatter, scattergl, scatter3d) of len(x); a density grid (heatmap) is not counted
as points, its cells are listed with the per-trace counts. For the baseline row the time is to `#status-line`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `bench` and `dfdet` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_dashboard import CHROMIUM, LAUNCH_ARGS as DASHBOARD_ARGS  # noqa: E402
from bench.load_test import REPO, free_port, stop_server, wait_answering  # noqa: E402

LAUNCH_ARGS = [*DASHBOARD_ARGS, "--enable-precise-memory-info"]
PLOTS = {"hypersphere": "#hs-plot", "roc": "#roc-plot"}

# the figure's traces: name, type, point count; and whether plotly has rendered points (SVG paths or a GL canvas)
PROBE = """(sel) => {
  const gd = document.querySelector(sel + ' .js-plotly-plot');
  if (!gd || !gd.data) return null;
  const grid = t => /^(heatmap|histogram2d|contour)/.test(t.type || '');
  const n = t => { if (grid(t)) return t.z ? t.z.length * ((t.z[0] || []).length || 1) : 0;
                   for (const k of ['x', 'lat', 'r']) if (t[k] && t[k].length !== undefined) return t[k].length;
                   return 0; };
  const traces = gd.data.map(t => ({name: t.name || '', type: t.type || 'scatter', n: n(t), grid: grid(t)}));
  const svgPts = gd.querySelectorAll('.scatterlayer path.point, .scatterlayer path.js-line').length;
  const gl = gd.querySelectorAll('canvas').length;
  return {traces, points: traces.reduce((a, t) => a + (t.grid ? 0 : t.n), 0), svg: svgPts, canvases: gl,
          title: (gd.layout && gd.layout.title && (gd.layout.title.text || gd.layout.title)) || ''};
}"""


def start_server(runs: Path, cache: Path, port: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "app.py", "--runs", str(runs), "--demo", "off", "--cache-dir", str(cache),
           "--checkpoints", str(cache / "no-checkpoints"), "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    wait_answering(proc, f"http://127.0.0.1:{port}/", log)
    return proc


def heap(page, cdp) -> dict:
    m = {x["name"]: x["value"] for x in cdp.send("Performance.getMetrics")["metrics"]}
    return {"used_mb": m["JSHeapUsedSize"] / 2**20, "total_mb": m["JSHeapTotalSize"] / 2**20,
            "perf_memory_mb": page.evaluate("performance.memory.usedJSHeapSize") / 2**20}


def measure(browser, url: str, view: str, timeout_s: float) -> dict:
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    cdp = ctx.new_cdp_session(page)
    cdp.send("Performance.enable")
    try:
        t0 = time.perf_counter()
        page.goto(url, timeout=timeout_s * 1000)
        probe = None
        if view in PLOTS:
            page.wait_for_function(f"""() => {{ const p = ({PROBE})('{PLOTS[view]}');
                return p && p.points > 0 && (p.svg > 0 || p.canvases > 0); }}""", timeout=timeout_s * 1000,
                                   polling=100)
            drawn = time.perf_counter() - t0
            probe = page.evaluate(PROBE, PLOTS[view])
        else:
            page.locator("#status-line").wait_for(timeout=timeout_s * 1000)
            drawn = time.perf_counter() - t0
        page.wait_for_timeout(2000)  # the rest of the page's updates (run lists, filters) land before the reading
        before = heap(page, cdp)
        cdp.send("HeapProfiler.collectGarbage")
        after = heap(page, cdp)
        return {"view": view, "url": url, "drawn_s": drawn, "probe": probe, "heap": before, "heap_gc": after}
    finally:
        ctx.close()


def table(rows: list[dict]) -> str:
    out = ["| view | link | time to drawn points | points drawn (traces) | JS heap used | after GC | "
           "heap total | performance.memory |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p = r["probe"]
        pts = "–" if p is None else f"{p['points']:,} ({len(p['traces'])})"
        link = r["url"].split("/", 3)[-1] or "/"
        out.append(f"| {r['view']} | `/{link.lstrip('/')}` | {r['drawn_s']:.2f} s | {pts} | {r['heap']['used_mb']:.1f} MB"
                   f" | {r['heap_gc']['used_mb']:.1f} MB | {r['heap']['total_mb']:.1f} MB"
                   f" | {r['heap']['perf_memory_mb']:.1f} MB |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-folder", required=True, help="a run folder with stored projections (dfdet project)")
    ap.add_argument("--out", default="", help="also write the markdown table (and per-trace counts) here")
    ap.add_argument("--repeats", type=int, default=1, help="fresh browser contexts per view")
    ap.add_argument("--timeout", type=float, default=300, help="seconds a view may take to draw")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    run = Path(args.run_folder).resolve()
    if not (run / "predictions.csv").is_file():
        ap.error(f"{run} is not a run folder (no predictions.csv)")
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="dfdet-browser-") as tmp:
        tmp = Path(tmp)
        (tmp / "runs").mkdir()
        (tmp / "runs" / run.name).symlink_to(run)
        port = free_port()
        log = tmp / "server.log"
        t0 = time.perf_counter()
        proc = start_server(tmp / "runs", tmp / "cache", port, log)
        started = time.perf_counter() - t0
        base = f"http://127.0.0.1:{port}/"
        rows = []
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
                try:
                    for _ in range(args.repeats):
                        rows.append(measure(browser, base, "baseline", args.timeout))
                        for view in PLOTS:
                            rows.append(measure(browser, f"{base}?tab={view}&run={run.name}", view, args.timeout))
                            print(json.dumps({k: rows[-1][k] for k in ("view", "drawn_s", "heap", "heap_gc")}),
                                  file=sys.stderr, flush=True)
                finally:
                    browser.close()
        finally:
            stop_server(proc)
            server_log = log.read_text(errors="replace")
    load1 = os.getloadavg()
    text = [table(rows), "",
            f"Server start (spawn -> first HTTP 200): {started:.1f} s. Load average (1/5/15 min): "
            f"{load0[0]:.2f} / {load0[1]:.2f} / {load0[2]:.2f} at start, "
            f"{load1[0]:.2f} / {load1[1]:.2f} / {load1[2]:.2f} at end.", ""]
    for r in rows:
        if r["probe"] and r is next(x for x in rows if x["view"] == r["view"]):  # one listing per view
            tr = ", ".join(f"{t['name'] or '(unnamed)'} [{t['type']}] {t['n']:,}" + (" cells" if t["grid"] else "")
                           for t in r["probe"]["traces"])
            text.append(f"- {r['view']} ({r['probe']['title']!s:.120}): {tr}")
    md = "\n".join(text)
    print(md)
    if args.out:
        Path(args.out).write_text(md + "\n")
    if "Traceback" in server_log:
        print("server log had a traceback:\n" + server_log[-3000:], file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
