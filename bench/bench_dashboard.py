"""Dashboard latency: cold start, tab switch, SLERP path, and upload -> probability table (ViT-L/14, CPU).

Targets (issue 4): cold start to first page <= 20 s with artifacts present, view switch <= 300 ms,
SLERP path <= 200 ms server time. Every number is a median over repeats.

What is measured, and on what:
  cold start     `python app.py ...` spawned until (a) HTTP 200 on / and (b) Chromium shows the page's banner.
                 Artifacts present: a run of all ~2,000 shared faces (tiny backbone, `dfdet evaluate`) with its
                 UMAP projections already cached. The ViT-L/14 (random weights) loads after the page is up.
  tab switch     Chromium, click a tab -> its content visible. "first visit" fills the view from the server
                 (cached projection / stored metrics); "switch" is a later visit (client side).
  SLERP path     Session.slerp_path server time (41 points: great circle, placement in the UMAP picture,
                 the method's head along it, and the full sphere figure) on a 2,032-face run with 1024-d
                 embeddings; then the same through gradio_client (adds transport and JSON).
  upload         Session.analyse_image on a 256x256 face crop: dlib alignment + 4 methods on ViT-L/14 with
                 random weights (scores meaningless; the time is what matters), and the face alignment alone.

    python bench/bench_dashboard.py                # writes bench/results_dashboard.md
    python bench/bench_dashboard.py --quick        # fewer repeats (a smoke run)
"""
from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `bench` and `dfdet` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from bench import common
from bench.common import fmt, table
from bench.load_test import free_port

REPO = common.REPO
CHROMIUM = os.environ.get("DFDET_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]
TARGETS = {"cold": 20.0, "switch": 0.300, "slerp": 0.200}


# -- artifacts --------------------------------------------------------------------------------------
def tiny_artifacts(work: Path) -> tuple[Path, Path]:
    """(runs folder, checkpoints) for the tiny backbone: every shared face evaluated by dfdet evaluate."""
    from dfdet.artifacts import list_runs
    from dfdet.backbone import TINY_MODEL, load_clip
    from dfdet.config import BackboneConfig
    from dfdet.data.manifest import scan_folder, shared_dir, write_manifest
    from dfdet.evaluate import EvalConfig, evaluate
    runs, ckpt = work / "runs", work / "tiny_checkpoints"
    if list_runs(runs):
        return runs, ckpt
    cfg = BackboneConfig(model=TINY_MODEL, pretrained=None, seed=0)
    make_checkpoints(load_clip(cfg), ckpt)
    df = scan_folder(shared_dir() / "datasets")
    df["split"] = "test"
    manifest = write_manifest(df, work / "manifest.csv")
    evaluate(EvalConfig(manifest=str(manifest), data_root=str(shared_dir() / "datasets"), split="test",
                        checkpoints=str(ckpt), methods=["linear_probe", "ln_tuning", "ln_norm", "ln_norm_slerp"],
                        backbone=cfg, batch_size=128, out=str(runs / "shared_tiny")))
    return runs, ckpt


def make_checkpoints(clip, folder: Path) -> None:
    """Seeded, untrained checkpoints of the four paper methods (timing only: scores are meaningless)."""
    from dfdet.backbone import VisionBackbone, weights_id
    from dfdet.checkpoint import save_checkpoint
    from dfdet.methods import PAPER_METHODS, get_method
    from dfdet.model import Detector, trainable_count, trainable_state
    for i, name in enumerate(PAPER_METHODS):
        torch.manual_seed(i)
        det = Detector(VisionBackbone(clip.model.visual), get_method(name))
        state = {k: v + 0.01 * torch.randn_like(v) for k, v in trainable_state(det).items()}
        save_checkpoint(folder / name, state, {"method": name, "label": get_method(name).label,
                                               "backbone": {"model": clip.config.model,
                                                            "weights": weights_id(clip.config)},
                                               "trainable_params": trainable_count(det)})


def vitl_run(work: Path, tiny_run: Path) -> Path:
    """The tiny run's rows with 1024-d embeddings, recorded as made on ViT-L/14 (random weights).

    The SLERP path's cost depends on the number of faces and the feature width, not on how the
    features were computed; evaluating 2,000 faces with ViT-L/14 on 2 CPU cores would take hours.
    """
    from dfdet.artifacts import load_run, write_run
    out = work / "vitl_runs" / "shared_vitl_synthetic"
    if (out / "run.json").is_file():
        return out
    run = load_run(tiny_run)
    rng = np.random.default_rng(0)
    n = len(run.predictions)
    labels = run.predictions["label"].to_numpy()
    emb = {}
    for m in run.methods:
        z = rng.normal(size=(n, 1024)) + labels[:, None] * 0.5
        norm = np.linalg.norm(z, axis=1)
        emb[m] = (z / norm[:, None], norm)
    info = {**run.info, "backbone": {"model": "ViT-L-14", "weights": "random-init-seed0"},
            "note": "synthetic 1024-d embeddings for timing"}
    info.pop("layout_version", None)
    return write_run(out, info, run.predictions, run.metrics.to_dict("records"), run.roc, emb)


# -- measurements -----------------------------------------------------------------------------------
def cold_start(runs: Path, ckpt: Path, cache: Path, repeats: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright
    out = {"http": [], "page": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        for _ in range(repeats):
            port = free_port()
            cmd = [sys.executable, "app.py", "--runs", str(runs), "--checkpoints", str(ckpt), "--model", "ViT-L-14",
                   "--pretrained", "none", "--cache-dir", str(cache), "--port", str(port), "--host", "127.0.0.1",
                   "--methods", "linear_probe", "ln_tuning", "ln_norm", "ln_norm_slerp"]
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                url = f"http://127.0.0.1:{port}/"
                while True:
                    try:
                        if urllib.request.urlopen(url, timeout=1).status == 200:
                            break
                    except OSError:
                        time.sleep(0.05)
                    if time.perf_counter() - t0 > 180:
                        raise RuntimeError("app did not start within 180 s")
                out["http"].append(time.perf_counter() - t0)
                page = browser.new_page()
                page.goto(url)
                page.locator("#banner").wait_for(timeout=120_000)
                out["page"].append(time.perf_counter() - t0)
                page.close()
            finally:
                proc.terminate()
                proc.wait(30)
        browser.close()
    return out


def tab_switch(url: str, repeats: int) -> dict[str, list[float]]:
    """Client-measured: click -> the tab's main content visible."""
    from playwright.sync_api import sync_playwright
    probes = {"Hypersphere": "#hs-plot .js-plotly-plot", "ROC browser": "#roc-plot .legend",
              "Errors": "#er-dis button", "About": "text=104,450", "Compare": "text=Analyse photo"}
    first, later = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        for r in range(repeats):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.locator("#banner").wait_for(timeout=60_000)
            for visit in range(2):
                for tab, probe in probes.items():
                    t0 = time.perf_counter()
                    page.get_by_role("tab", name=tab).click()
                    page.locator(probe).first.wait_for(state="visible", timeout=60_000)
                    dt = time.perf_counter() - t0
                    (first if visit == 0 and tab != "Compare" else later).append(dt)
            page.close()
        browser.close()
    return {"first visit": first, "switch": later}


def timed(fn, repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats (smoke run)")
    p.add_argument("--work", default=str(REPO / "bench" / "out" / "dashboard"), help="artifacts and caches")
    p.add_argument("--out", default=str(REPO / "bench" / "results_dashboard.md"), help="results markdown")
    args = p.parse_args(argv)
    reps = 2 if args.quick else 5
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["GRADIO_TEMP_DIR"] = str(work / "gradio")
    load_start = common.load_average()

    from dfdet.backbone import load_clip
    from dfdet.config import BackboneConfig
    from dfdet.viz.session import AppConfig, Session
    from dfdet.viz.umap_cache import warm_up
    runs, tiny_ckpt = tiny_artifacts(work)
    tiny_run = next(iter(sorted(runs.glob("*/run.json")))).parent
    vrun = vitl_run(work, tiny_run)
    cache = work / "cache"

    # ViT-L/14 bank (random weights) + the four paper methods
    vit_cfg = BackboneConfig(model="ViT-L-14", pretrained=None, seed=0)
    vit_ckpt = work / "vitl_checkpoints"
    t0 = time.perf_counter()
    clip = load_clip(vit_cfg)
    load_s = time.perf_counter() - t0
    if not (vit_ckpt / "ln_norm_slerp" / "dfdet.json").is_file():
        make_checkpoints(clip, vit_ckpt)
    methods = ["linear_probe", "ln_tuning", "ln_norm", "ln_norm_slerp"]
    s = Session(AppConfig(runs=str(vrun.parent), checkpoints=str(vit_ckpt), methods=methods, backbone=vit_cfg,
                          cache_dir=str(cache), demo="off"), clip=clip)
    warm_s = warm_up()
    name = next(iter(s.runs))
    n_faces = len(s.runs[name].predictions)
    # one-off costs, measured on an empty cache (the session's own cache is kept for the cold starts)
    from dfdet.viz.media import data_uri, load_face
    from dfdet.viz.umap_cache import UmapCache
    fresh = UmapCache(Path(tempfile.mkdtemp(dir=work)))
    t0 = time.perf_counter()
    for m in s.runs[name].methods:
        fresh.get(s.runs[name].folder / "embeddings" / f"{m}.npz", s.embeddings(name, m)[0], 2)
    fit_s = time.perf_counter() - t0
    root = s.run_data_root(s.runs[name])
    t0 = time.perf_counter()
    for rel in s.runs[name].predictions["path"]:
        data_uri(load_face(root, rel))
    thumbs_s = time.perf_counter() - t0
    for m in s.runs[name].methods:  # the session's cache: what the app finds at start
        s.projection(name, m, 2)
    s.thumbnails(name)

    # the sphere figure: first build of a view, then the cached one
    def build_sphere():
        s.store.spheres.clear()
        return s.hypersphere(name, "ln_norm_slerp", "label", 2)
    hs_build = timed(build_sphere, reps)
    hs = timed(lambda: s.hypersphere(name, "ln_norm_slerp", "label", 2), reps)

    # SLERP path, server time; and side by side with the math left multi-threaded (alternating order)
    import contextlib

    import dfdet.viz.session as session_mod
    pairs = [s.random_pair(name, "different class", seed=i) for i in range(reps * 4)]
    it = iter(pairs * 3)
    slerp = timed(lambda: s.slerp_path(name, "ln_norm_slerp", *next(it)), reps * 4, warmup=2)
    one_thread = session_mod.single_threaded

    def default_threads():
        session_mod.single_threaded = contextlib.nullcontext
        try:
            s.slerp_path(name, "ln_norm_slerp", *pairs[0])
        finally:
            session_mod.single_threaded = one_thread
    side = common.alternate({"one thread (shipped)": lambda: s.slerp_path(name, "ln_norm_slerp", *pairs[0]),
                             "torch/BLAS default threads": default_threads}, rounds=reps * 2, warmup=1,
                            device=torch.device("cpu"))

    # upload -> probability table
    face = sorted((Path(s.samples_root) / "FF" / "real").glob("*/*.png"))[0]
    upload = work / "face.png"
    upload.write_bytes(face.read_bytes())
    predict = timed(lambda: s.analyse_image(upload), reps)
    from dfdet.images import open_image
    img = open_image(upload)
    align = timed(lambda: s._align(img), reps)

    # the same through the app, in-process, via gradio_client
    sys.path.insert(0, str(REPO))
    import app as dash
    from gradio_client import Client, handle_file
    demo = dash.build_app(s)
    dash.launch(demo, prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    client = Client(demo.local_url, verbose=False, download_files=str(work / "downloads"))
    it = iter(pairs * 3)
    slerp_api = timed(lambda: client.predict(name, "ln_norm_slerp", *next(it), "label", "2-D",
                                             api_name="/slerp_path"), reps * 2)
    predict_api = timed(lambda: client.predict(handle_file(str(upload)), api_name="/predict_image"), reps)
    switches = tab_switch(demo.local_url, 2 if args.quick else 3)
    demo.close()

    # cold start: a fresh `python app.py` process, artifacts and projections on disk
    cold = cold_start(vrun.parent, vit_ckpt, cache, 2 if args.quick else 3)

    rows = [
        ["cold start: spawn -> HTTP 200", fmt(med(cold["http"])), f"<= {TARGETS['cold']:.0f}",
         f"{len(cold['http'])} starts"],
        ["cold start: spawn -> page shown in Chromium", fmt(med(cold["page"])), f"<= {TARGETS['cold']:.0f}",
         f"{len(cold['page'])} starts"],
        ["tab switch (later visits), click -> content", fmt(med(switches["switch"]), 3),
         f"<= {TARGETS['switch']:.1f}", f"{len(switches['switch'])} switches"],
        ["tab first visit (server fills the view)", fmt(med(switches["first visit"]), 3), "-",
         f"{len(switches['first visit'])} visits"],
        ["SLERP path, server time", fmt(med(slerp), 3), f"<= {TARGETS['slerp']:.1f}", f"{len(slerp)} paths"],
        ["SLERP path via gradio_client", fmt(med(slerp_api), 3), "-", f"{len(slerp_api)} calls"],
        ["hypersphere view, first build of the figure (UMAP cached), server time", fmt(med(hs_build), 3), "-",
         f"{len(hs_build)} builds"],
        ["hypersphere view, figure kept, server time", fmt(med(hs), 4), "-", f"{len(hs)} calls"],
        ["upload -> probability table, server time (ViT-L/14, 4 methods)", fmt(med(predict)), "-",
         f"{len(predict)} calls"],
        ["  of which face detection + alignment (dlib)", fmt(med(align)), "-", f"{len(align)} calls"],
        ["upload -> probability table via gradio_client", fmt(med(predict_api)), "-", f"{len(predict_api)} calls"],
    ]
    one_off = [
        ["ViT-L/14 load (random weights, in the background after the page is up)", fmt(load_s)],
        ["numba warm-up (tiny UMAP fit, background at start)", fmt(warm_s)],
        [f"UMAP 2-D fits, 4 methods x {n_faces} faces, empty cache (first start only; then cached on disk)",
         fmt(fit_s)],
        [f"hover thumbnails of {n_faces} faces, empty cache (first start only)", fmt(thumbs_s)],
    ]
    side_rows = [[k, fmt(side.median(k), 3), str(len(v))] for k, v in side.runs.items()]
    verdict = []
    for key, label, val in (("cold", "cold start (page shown)", med(cold["page"])),
                            ("switch", "tab switch", med(switches["switch"])),
                            ("slerp", "SLERP path server time", med(slerp))):
        ok = "met" if val <= TARGETS[key] else "NOT met"
        verdict.append(f"- {label}: {val:.3f} s against {TARGETS[key]} s: {ok}")
    body = "\n".join([
        "## Medians (seconds)", "",
        table(["what", "median s", "target s", "n"], rows), "",
        "## One-off costs (seconds, single measurement)", "",
        table(["what", "s"], one_off), "",
        "## SLERP path: one thread vs the default thread pools (same pair, alternating order)", "",
        table(["variant", "median s", "n"], side_rows), "",
        f"Default threads take {side.ratio('torch/BLAS default threads', 'one thread (shipped)'):.1f}x as long "
        "(median of per-round ratios): for a 41 x 1024 path, waking the pools costs more than the math.", "",
        "## Targets", "", *verdict, "",
        "## Notes", "",
        f"- Run for the sphere and SLERP views: {n_faces} faces (every shared face), 1024-d embeddings "
        "(synthetic, recorded as ViT-L/14), UMAP cached. Scores of the random-weight models are meaningless; "
        "only the times matter.",
        "- The upload time is dominated by four full ViT-L/14 forward passes: each method has its own LayerNorms, "
        "so the encoder runs once per method.",
        f"- Load average (1/5/15 min) at start: {load_start}; at end: {common.load_average()}. The machine is "
        "shared with other work, so absolute times vary between runs.",
    ])
    cmd = "python bench/bench_dashboard.py" + (" --quick" if args.quick else "")
    extra = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--quick"]
    if extra:
        cmd += " " + " ".join(shlex.quote(a) for a in extra)
    path = common.write_report(args.out, "Dashboard latency", cmd, torch.device("cpu"), body)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
