"""Load test of the dashboard: N concurrent clients x M mixed requests against `python app.py`.

The server is the real app.py (its own process, 127.0.0.1 only) on the tiny random-weight backbone
with seeded checkpoints of the four paper methods and a real `dfdet evaluate` run over ~90 shared
faces; the clients are gradio_client.Client objects, one per thread, in this process. Every request
is checked (an answer of the expected shape, not an error). Reported: errors, latency percentiles
per endpoint and overall, throughput, the server's memory before and after the run, and how an
overloaded model queue answers (HTTP 503 with a message, at once) when more requests arrive than the
queue holds.

    python bench/load_test.py                                   # 50 clients x 20 requests -> bench/results_load.md
    python bench/load_test.py --clients 8 --requests 5 --out /tmp/load_smoke.md   # a smoke run
    python bench/load_test.py --trace-memory 8     # + where the server's memory went (tracemalloc, malloc)

Scores are meaningless (random weights): this measures the serving, not the detector.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `bench` and `dfdet` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
METHODS = ["linear_probe", "ln_tuning", "ln_norm", "ln_norm_slerp"]
MEMORY_LIMIT_MB = 50  # allowed growth of the server's resident memory over the run


# -- artifacts ------------------------------------------------------------------------------------
def build_artifacts(work: Path) -> dict[str, Path]:
    """Tiny checkpoints, a real evaluation run over ~90 shared faces, a face photo and a 1-frame video."""
    import numpy as np
    import pandas as pd
    import torch

    from dfdet.backbone import TINY_MODEL, VisionBackbone, load_clip, weights_id
    from dfdet.checkpoint import save_checkpoint
    from dfdet.config import BackboneConfig
    from dfdet.data.manifest import scan_folder, shared_dir, write_manifest
    from dfdet.evaluate import EvalConfig, evaluate
    from dfdet.methods import get_method
    from dfdet.model import Detector, trainable_count, trainable_state
    shared = shared_dir()
    out = {"runs": work / "runs", "checkpoints": work / "checkpoints", "face": work / "face.png",
           "video": work / "one_frame.mp4"}
    cfg = BackboneConfig(model=TINY_MODEL, pretrained=None, seed=0)
    if not (out["runs"] / "tiny" / "run.json").is_file():
        clip = load_clip(cfg)
        for i, name in enumerate(METHODS):
            torch.manual_seed(i)
            det = Detector(VisionBackbone(clip.model.visual), get_method(name))
            state = {k: v + 0.3 * torch.randn_like(v) for k, v in trainable_state(det).items()}
            save_checkpoint(out["checkpoints"] / name, state, {
                "method": name, "label": get_method(name).label, "trainable_params": trainable_count(det),
                "backbone": {"model": cfg.model, "weights": weights_id(cfg)}})
        df = scan_folder(shared / "datasets")
        parts = [df[df["dataset"].isin(["FF", "CDFv2"])]]
        for dataset, k in (("DFDC", 16), ("GANFaces", 5)):
            d = df[df["dataset"] == dataset]
            parts += [d[d["label"] == c].head(k) for c in (0, 1)]
        small = pd.concat(parts).reset_index(drop=True)
        small["split"] = "test"
        manifest = write_manifest(small, work / "manifest.csv")
        evaluate(EvalConfig(manifest=str(manifest), data_root=str(shared / "datasets"), split="test",
                            checkpoints=str(out["checkpoints"]), methods=METHODS, backbone=cfg, batch_size=32,
                            out=str(out["runs"] / "tiny")))
    if not out["face"].is_file():
        from PIL import Image
        face = Image.open(sorted((shared / "datasets" / "FF" / "real").glob("*/*.png"))[0]).convert("RGB")
        canvas = Image.new("RGB", (480, 480), (200, 190, 170))
        canvas.paste(face, (112, 112))
        canvas.save(out["face"])
    if not out["video"].is_file():
        import av
        with av.open(str(shared / "videos" / "FF" / "real" / "004.mp4")) as v:
            frame = next(v.decode(video=0)).to_ndarray(format="rgb24")
        with av.open(str(out["video"]), "w") as o:
            s = o.add_stream("mpeg4", rate=25)
            s.width, s.height, s.pix_fmt = frame.shape[1], frame.shape[0], "yuv420p"
            for pkt in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                o.mux(pkt)
            for pkt in s.encode():
                o.mux(pkt)
    return out


# -- server ---------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(art: dict[str, Path], work: Path, trace_frames: int = 0) -> tuple[subprocess.Popen, str]:
    port = free_port()
    app = ["bench/load_test.py", "--serve-traced", str(trace_frames)] if trace_frames else ["app.py"]
    cmd = [sys.executable, *app, "--runs", str(art["runs"]), "--checkpoints", str(art["checkpoints"]),
           "--model", "dfdet-tiny-vit", "--pretrained", "none", "--cache-dir", str(work / "cache"), "--demo", "off",
           "--host", "127.0.0.1", "--port", str(port), "--no-warm-up", "--methods", *METHODS]
    env = {**os.environ, "GRADIO_TEMP_DIR": str(work / "gradio"), "GRADIO_ANALYTICS_ENABLED": "False",
           "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", TRACE_DIR: str(work / "trace")}
    log = open(work / "server.log", "w")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    wait_answering(proc, url, work / "server.log")
    return proc, url


def wait_answering(proc: subprocess.Popen, url: str, log: Path, timeout: float = 300) -> None:
    """Until the app's page answers 200; an app that exits or stays silent for `timeout` s ends the bench."""
    t0 = time.monotonic()
    while True:
        try:
            if urllib.request.urlopen(url, timeout=2).status == 200:
                return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() - t0 > timeout:
            proc.kill()
            sys.exit(f"the app did not start; see {log}")
        time.sleep(0.2)


# -- where the memory goes (--trace-memory) -------------------------------------------------------------
TRACE_DIR = "DFDET_LOAD_TRACE_DIR"  # the traced server writes its snapshots here


def mallinfo() -> dict[str, int]:
    """glibc's heap totals: bytes in use, free but kept in the arenas, and mmapped (what tracemalloc cannot see:
    torch and numpy buffers, and memory freed by Python but not returned to the system)."""
    import ctypes
    fields = ["arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
              "keepcost"]

    class Info(ctypes.Structure):
        _fields_ = [(f, ctypes.c_size_t) for f in fields]
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = Info
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return {}
    return {"in_use": info.uordblks + info.hblkhd, "free_in_arenas": info.fordblks, "mmapped": info.hblkhd}


def serve_traced(frames: int, app_argv: list[str]) -> None:
    """Run app.py; the first SIGUSR1 starts tracemalloc (FRAMES deep), the second writes a snapshot: what was
    allocated in between and is still alive. Each also writes glibc's heap totals. Into $DFDET_LOAD_TRACE_DIR."""
    import runpy
    import tracemalloc
    folder = Path(os.environ[TRACE_DIR])
    folder.mkdir(parents=True, exist_ok=True)
    count = iter(range(10 ** 6))

    def on_signal(signum, frame):
        n = next(count)
        (folder / f"malloc_{n}.json").write_text(json.dumps(mallinfo()))
        if n == 0:
            tracemalloc.start(frames)
            (folder / "tracing").write_text("")
            return
        tracemalloc.take_snapshot().dump(str(folder / ".snapshot.tmp"))
        os.replace(folder / ".snapshot.tmp", folder / "snapshot.pickle")
    signal.signal(signal.SIGUSR1, on_signal)
    sys.argv = ["app.py", *app_argv]
    runpy.run_path(str(REPO / "app.py"), run_name="__main__")


def trace_signal(proc: subprocess.Popen, work: Path, name: str) -> None:
    """Signal the traced server and wait until it has written `name` (tracing started, or the snapshot)."""
    path = work / "trace" / name
    proc.send_signal(signal.SIGUSR1)
    while not path.is_file():
        if proc.poll() is not None:
            sys.exit("the traced server died")
        time.sleep(0.5)


def trace_report(work: Path, top: int = 25) -> str:
    """Python allocations made during the load run and still alive after it (our own snapshot, written above),
    by line and by call stack, and glibc's heap totals before and after."""
    import tracemalloc
    snap = tracemalloc.Snapshot.load(str(work / "trace" / "snapshot.pickle"))
    snap = snap.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    stats = snap.statistics("lineno")
    total = sum(st.size for st in stats)
    m0, m1 = (json.loads((work / "trace" / f"malloc_{n}.json").read_text()) for n in (0, 1))
    lines = [f"Python allocations made during the run and still alive after it (tracemalloc): {total / 2 ** 20:.1f} MB",
             "", "glibc heap, MB (before -> after): " + ", ".join(
                 f"{k} {m0.get(k, 0) / 2 ** 20:.1f} -> {m1.get(k, 0) / 2 ** 20:.1f}" for k in m1), "",
             f"Top {top} lines:"]
    lines += [f"  {st.size / 2 ** 20:8.2f} MB {st.count:7d} blocks  {st.traceback[0]}" for st in stats[:top]]
    lines += ["", "Top 8 call stacks:"]
    for st in snap.statistics("traceback")[:8]:
        lines += [f"  {st.size / 2 ** 20:.2f} MB {st.count} blocks"]
        lines += [f"      {f}" for f in st.traceback.format()[-16:]]
    return "\n".join(lines)


def rss_mb(pid: int) -> float:
    import psutil
    return psutil.Process(pid).memory_info().rss / 2 ** 20


# -- requests -------------------------------------------------------------------------------------
@dataclass
class Context:
    run: str  # run name in the app
    n_rows: int  # rows of the run
    n_samples: int  # rows of the sample manifest
    datasets: list[str]
    face: str  # local photo to upload
    video: str  # local 1-frame video to upload


# endpoint: (weight in the mix, uses the model queue)
MIX = {"predict_sample": (4, True), "predict_image": (2, True), "predict_video": (1, True), "slerp_path": (2, True),
       "hypersphere": (2, False), "point": (2, False), "roc": (3, False), "errors": (2, False),
       "random_pair": (1, False), "random_face": (1, False), "status": (1, False)}


def plan(client: int, n: int, mix: dict[str, tuple[int, bool]] = MIX) -> list[str]:
    """The endpoints one client calls, in order: the weighted mix, shuffled per client (seeded)."""
    rng = random.Random(client)
    names = list(mix)
    return rng.choices(names, weights=[mix[k][0] for k in names], k=n)


def call(client, api: str, ctx: Context, rng: random.Random):
    """One request with plausible arguments; raises if the answer is an error or of the wrong shape."""
    from gradio_client import handle_file
    m = rng.choice(METHODS)
    if api == "predict_sample":
        out = client.predict("samples", rng.randrange(ctx.n_samples), api_name="/predict_sample")
    elif api == "predict_image":
        out = client.predict(handle_file(ctx.face), api_name="/predict_image")
    elif api == "predict_video":
        out = client.predict(handle_file(ctx.video), api_name="/predict_video")
    elif api == "slerp_path":
        a, b = rng.sample(range(ctx.n_rows), 2)
        out = client.predict(ctx.run, m, a, b, "label", "2-D", api_name="/slerp_path")
        assert len(json.loads(out[1]["plot"])["data"][0]["x"]) == 41
        return
    elif api == "hypersphere":
        out = client.predict(ctx.run, m, rng.choice(["label", "dataset", "correct"]), "2-D", api_name="/hypersphere")
        assert json.loads(out["plot"])["data"]
        return
    elif api == "point":
        out = client.predict(ctx.run, m, rng.randrange(ctx.n_rows), api_name="/point")
        assert out[0]
        return
    elif api == "roc":
        out = client.predict(ctx.run, rng.sample(METHODS, 2), ctx.datasets, rng.choice(["frame", "video"]),
                             round(rng.random(), 2), api_name="/roc")
        assert out[1]["data"]
        return
    elif api == "errors":
        out = client.predict(ctx.run, m, "all", 0.5, api_name="/errors")
        assert len(out) == 4
        return
    elif api == "random_pair":
        a, b = client.predict(ctx.run, rng.choice(["same class", "different class"]), api_name="/random_pair")
        assert a != b
        return
    elif api == "random_face":
        out = client.predict("any", "any", rng.choice(["real", "fake"]), api_name="/random_face")
        assert out[0] == "samples"
        return
    elif api == "status":
        banner = client.predict(api_name="/status")[0]
        assert "DEMO MODE" in banner or "Models" in banner  # the models are up (random weights: demo)
        return
    else:
        raise ValueError(api)
    rows = out[2]["data"]  # the probability table of Compare
    assert len(rows) == len(METHODS) and all(r[2] is not None for r in rows), rows


@dataclass
class Result:
    api: str
    seconds: float
    error: str = ""


@dataclass
class LoadReport:
    results: list[Result] = field(default_factory=list)
    wall: float = 0.0

    def latencies(self, api: str | None = None) -> list[float]:
        return sorted(r.seconds for r in self.results if not r.error and (api is None or r.api == api))

    @property
    def errors(self) -> list[Result]:
        return [r for r in self.results if r.error]


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def connect(url: str, n: int) -> list:
    """n clients, each its own gradio session (a visitor)."""
    return [new_client(url) for _ in range(n)]


DOWNLOADS = Path(tempfile.gettempdir())  # main() points this into its work folder, removed at the end
_visitors = itertools.count(1)


def visitor_address(i: int) -> str:
    """A distinct address per simulated visitor (sent as X-Forwarded-For, which uvicorn trusts from 127.0.0.1):
    the app gives each visitor a fair share of the model queue, and 50 clients on one address would be one."""
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def new_client(url: str):
    """A gradio_client with a long HTTP timeout: on a loaded machine an upload can take longer than httpx's 5 s
    default, which is the client giving up, not the server failing (latencies are reported as measured)."""
    from gradio_client import Client
    DOWNLOADS.mkdir(parents=True, exist_ok=True)
    return Client(url, verbose=False, download_files=tempfile.mkdtemp(prefix="client_", dir=DOWNLOADS),
                  headers={"X-Forwarded-For": visitor_address(next(_visitors))}, httpx_kwargs={"timeout": 300})


def run_load(url: str, ctx: Context, clients: int | list, requests: int,
             mix: dict[str, tuple[int, bool]] = MIX, seed: int = 0) -> LoadReport:
    """Client threads (given, or `clients` new ones) start together and make `requests` requests each."""
    report = LoadReport()
    lock = threading.Lock()
    connected = clients if isinstance(clients, list) else connect(url, clients)
    clients = len(connected)
    start = threading.Barrier(clients)

    def worker(i: int) -> None:
        rng = random.Random(1000 * seed + i)
        start.wait()
        for api in plan(1000 * seed + i, requests, mix):
            t = time.perf_counter()
            try:
                call(connected[i], api, ctx, rng)
                res = Result(api, time.perf_counter() - t)
            except Exception as err:  # noqa: BLE001 - every failure is counted and reported
                res = Result(api, time.perf_counter() - t, f"{type(err).__name__}: {err}"[:300])
            with lock:
                report.results.append(res)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as ex:
        list(ex.map(worker, range(clients)))
    report.wall = time.perf_counter() - t0
    return report


def overload(url: str, n: int, after_posting=None) -> dict:
    """Fire n model requests at once through the plain HTTP API: each is queued (200) or refused (503 with a
    message) at once; every queued one is then answered. after_posting(): called once all n have an answer
    and before waiting for the queued ones (a test frees the model it held busy)."""
    import httpx
    t_refuse: list[float] = []
    accepted: list[str] = []
    messages: set[str] = set()
    lock = threading.Lock()

    def post(i: int) -> None:
        t = time.perf_counter()
        r = httpx.post(f"{url}gradio_api/call/predict_sample", json={"data": ["samples", i % 50]}, timeout=60,
                       headers={"X-Forwarded-For": visitor_address(100_000 + i)})  # n visitors, one request each
        dt = time.perf_counter() - t
        with lock:
            if r.status_code == 200:
                accepted.append(r.json()["event_id"])
            else:
                t_refuse.append(dt)
                messages.add(f"{r.status_code} {r.json().get('detail', r.text)}"[:160])

    with ThreadPoolExecutor(n) as ex:
        list(ex.map(post, range(n)))
    if after_posting is not None:
        after_posting()
    completed = 0
    t0 = time.perf_counter()
    for eid in accepted:
        with httpx.stream("GET", f"{url}gradio_api/call/predict_sample/{eid}", timeout=300) as r:
            text = "".join(r.iter_text())
        completed += "event: complete" in text
    return {"fired": n, "accepted": len(accepted), "refused": len(t_refuse), "messages": sorted(messages),
            "max_refusal_s": max(t_refuse, default=float("nan")), "completed": completed,
            "drain_s": time.perf_counter() - t0}


def context(url: str, art: dict[str, Path]) -> Context:
    import pandas as pd

    from dfdet.artifacts import load_run
    from dfdet.data.manifest import SHARED_MANIFEST
    run = load_run(art["runs"] / "tiny")
    n_samples = len(pd.read_csv(SHARED_MANIFEST)) if SHARED_MANIFEST.is_file() else 100
    return Context("tiny", len(run.predictions), n_samples, sorted(run.predictions["dataset"].unique())[:2],
                   str(art["face"]), str(art["video"]))


def stop_server(proc: subprocess.Popen) -> None:
    """Ctrl-C, as a person stops the server (its clean-up runs), then a kill if it has not left in 30 s."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def wait_loaded(url: str) -> None:
    """Until /status no longer says the models are loading (a plain HTTP call: no visitor session)."""
    import httpx
    t0 = time.perf_counter()
    while True:
        r = httpx.post(f"{url}gradio_api/call/status", json={"data": []}, timeout=60)
        eid = r.json()["event_id"]
        with httpx.stream("GET", f"{url}gradio_api/call/status/{eid}", timeout=60) as s:
            text = "".join(s.iter_text())
        if "Loading" not in text:
            return
        if time.perf_counter() - t0 > 300:
            sys.exit("the models did not load within 300 s")
        time.sleep(0.5)


def warm(url: str, ctx: Context, clients: list) -> float:
    """Before anything is measured: every endpoint twice (every method's projection fitted), then a short
    burst of the load's own clients, so first-use costs (numba, UMAP, caches, worker threads, the
    clients' sessions) are not counted as growth."""
    client = new_client(url)
    t0 = time.perf_counter()
    while "Loading" in client.predict(api_name="/status")[0]:
        if time.perf_counter() - t0 > 300:
            sys.exit("the models did not load within 300 s")
        time.sleep(0.5)
    rng = random.Random(0)
    for m in METHODS:
        client.predict(ctx.run, m, "label", "2-D", api_name="/hypersphere")
    for api in MIX:
        for _ in range(2):
            call(client, api, ctx, rng)
    burst = run_load(url, ctx, clients, 3, seed=1)
    if burst.errors:
        sys.exit(f"errors during warm-up: {burst.errors[:3]}")
    return time.perf_counter() - t0


def app_setting(name: str) -> int:
    """A module-level setting of app.py (read from the file the server runs)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("dfdet_app", REPO / "app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return int(getattr(mod, name))


def queue_max_size() -> int:
    return app_setting("QUEUE_MAX_SIZE")


def files_under(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=50, help="concurrent clients")
    p.add_argument("--requests", type=int, default=20, help="requests per client")
    p.add_argument("--overload", type=int, default=0, help="requests fired at once at the end (0 = queue size + 36)")
    p.add_argument("--visitors", type=int, default=25, help="new sessions after the run, to measure memory per visitor")
    p.add_argument("--work", default="", help="folder for artifacts, caches and the server log (default: a temp dir)")
    p.add_argument("--out", default=str(REPO / "bench" / "results_load.md"), help="results markdown file")
    p.add_argument("--trace-memory", type=int, default=0, metavar="FRAMES",
                   help="trace the server's Python allocations (FRAMES deep) during the load run and write what is "
                        "still alive after it to OUT.trace.txt (slower: for finding a leak, not for the numbers)")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve-traced"]:
        serve_traced(int(argv[1]), argv[2:])
        return 0
    args = p.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="dfdet_load_"))
    work.mkdir(parents=True, exist_ok=True)
    global DOWNLOADS
    DOWNLOADS = work / "downloads"  # every client's downloads in one place, removed at the end
    try:
        return measure(args, work)
    finally:
        shutil.rmtree(DOWNLOADS, ignore_errors=True)
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)  # artifacts, caches, uploads, the server log: nothing left


def measure(args, work: Path) -> int:
    t_build = time.perf_counter()
    art = build_artifacts(work)
    t_build = time.perf_counter() - t_build
    proc, url = start_server(art, work, args.trace_memory)
    try:
        ctx = context(url, art)
        wait_loaded(url)  # the app loads its models after the page is up: "start" is once they are in
        rss_start = rss_mb(proc.pid)
        clients = connect(url, args.clients)
        warm_s = warm(url, ctx, clients)
        time.sleep(1.0)
        rss_before = rss_mb(proc.pid)
        if args.trace_memory:
            trace_signal(proc, work, "tracing")
        report = run_load(url, ctx, clients, args.requests, seed=2)
        time.sleep(2.0)
        rss_after = rss_mb(proc.pid)
        if args.trace_memory:
            trace_signal(proc, work, "snapshot.pickle")
            trace = trace_report(work)
            Path(args.out + ".trace.txt").write_text(f"RSS {rss_before:.1f} -> {rss_after:.1f} MB\n\n{trace}\n")
            print(trace)
        visitors = new_visitors(url, ctx, args.visitors)
        time.sleep(1.0)
        rss_visitors = rss_mb(proc.pid)
        uploads_during = files_under(work / "gradio")
        over = overload(url, args.overload or queue_max_size() + 36)
        rss_end = rss_mb(proc.pid)
    finally:
        stop_server(proc)
    uploads_after = files_under(work / "gradio")

    memory = {"start": rss_start, "before": rss_before, "after": rss_after, "visitors": rss_visitors, "end": rss_end}
    body = render(args, report, memory, visitors, over, warm_s, t_build, uploads_during, uploads_after)
    from bench.common import write_report
    import torch
    defaults = {"clients": 50, "requests": 20, "visitors": 25}
    cmd = "python bench/load_test.py" + "".join(f" --{k} {getattr(args, k)}" for k, v in defaults.items()
                                                 if getattr(args, k) != v)
    write_report(args.out, "Dashboard load test (app.py, tiny backbone, CPU, 127.0.0.1)", cmd, torch.device("cpu"),
                 body)
    print(body)
    print(f"\nwritten to {args.out}")
    growth = rss_after - rss_before
    ok = (not report.errors and not visitors.errors and growth < MEMORY_LIMIT_MB and over["completed"] == over["accepted"]
          and over["refused"] > 0 and over["max_refusal_s"] < 5)
    return 0 if ok else 1


def new_visitors(url: str, ctx: Context, n: int) -> LoadReport:
    """n new sessions, each visiting every view once: what one more visitor costs in server memory."""
    mix = {k: (1, v[1]) for k, v in MIX.items()}
    return run_load(url, ctx, n, len(mix), mix=mix, seed=3)


def render(args, report: LoadReport, memory: dict, visitors: LoadReport, over: dict, warm_s: float,
           t_build: float, uploads_during: int, uploads_after: int) -> str:
    from bench.common import table
    n = len(report.results)
    rows = []
    for api in MIX:
        lat = report.latencies(api)
        errs = sum(1 for r in report.results if r.api == api and r.error)
        if not lat and not errs:
            continue
        rows.append([api, "model" if MIX[api][1] else "views", len(lat) + errs, errs,
                     *(f"{percentile(lat, q) * 1000:.0f}" for q in (50, 90, 99)), f"{max(lat) * 1000:.0f}"])
    lat = report.latencies()
    rows.append(["**all**", "", n, len(report.errors), *(f"**{percentile(lat, q) * 1000:.0f}**" for q in (50, 90, 99)),
                 f"{max(lat) * 1000:.0f}" if lat else "n/a"])
    growth = memory["after"] - memory["before"]
    per_visitor = (memory["visitors"] - memory["after"]) / max(1, args.visitors)
    sessions = app_setting("STATE_SESSIONS")
    lines = [
        f"{args.clients} concurrent clients x {args.requests} requests = {n} requests in {report.wall:.1f} s "
        f"({n / report.wall:.1f} requests/s); **{len(report.errors)} errors**.",
        "",
        "Latency in ms, client side (queueing and the download of image outputs included), per endpoint. The model "
        "queue runs one request at a time (concurrency_limit=1: the bank swaps LayerNorm overlays into one shared "
        f"ViT); the views run {app_setting('VIEW_CONCURRENCY')} at a time.",
        "",
        table(["endpoint", "queue", "requests", "errors", "p50", "p90", "p99", "max"], rows),
        "",
        "| server memory (RSS) | MB |",
        "|---|---|",
        f"| models loaded (waited for /status), no visitor yet | {memory['start']:.1f} |",
        f"| after warm-up (every endpoint twice; then the {args.clients} clients, 3 requests each) | "
        f"{memory['before']:.1f} |",
        f"| 2 s after the load run (same {args.clients} clients) | {memory['after']:.1f} |",
        f"| **growth over the run** | **{growth:+.1f}** (limit {MEMORY_LIMIT_MB}) |",
        f"| after {args.visitors} new visitors (every view once each; {len(visitors.errors)} errors) | "
        f"{memory['visitors']:.1f} |",
        f"| per new visitor (gradio keeps each session's last outputs) | {per_visitor:+.2f} |",
        f"| after the overload burst | {memory['end']:.1f} |",
        "",
        f"Memory target: the server grew **{growth:+.1f} MB** over the run, which "
        f"**{'meets' if growth < MEMORY_LIMIT_MB else 'misses'} the {MEMORY_LIMIT_MB} MB target**.",
        "",
        f"Sessions kept in memory are capped at STATE_SESSIONS = {sessions} (app.py), so visitor state is bounded "
        f"at about {sessions} x {max(per_visitor, 0):.2f} MB = {sessions * max(per_visitor, 0):.0f} MB; gradio's "
        "default would keep 10,000.",
        "",
        f"Overload: {over['fired']} model requests fired at once at the plain HTTP API (queue max_size "
        f"{queue_max_size()}): "
        f"{over['accepted']} queued, {over['refused']} refused at once (slowest refusal "
        f"{over['max_refusal_s'] * 1000:.0f} ms) with {'; '.join(over['messages']) or 'no message'}; "
        f"{over['completed']} of the {over['accepted']} queued ones answered (queue drained in {over['drain_s']:.1f} s).",
        "",
        f"Upload/output files under GRADIO_TEMP_DIR: {uploads_during} after the run (deleted after 1 h, every "
        f"10 min), {uploads_after} after the server stopped.",
        "",
        f"Setup: artifacts built in {t_build:.1f} s, warm-up {warm_s:.1f} s (numba compile + UMAP fits), not timed.",
    ]
    errors = report.errors + visitors.errors
    if errors:
        lines += ["", "Errors (first 10):", ""] + [f"- {r.api}: {r.error}" for r in errors[:10]]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
