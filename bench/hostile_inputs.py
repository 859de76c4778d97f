"""Hostile requests and bad inputs against app.py and the CLI (issue 19): how many were tried, how many
tracebacks they caused (target 0) and how many bytes they left on disk.

    python bench/hostile_inputs.py            # writes bench/results_hostile.md

The app runs as `python app.py` on 127.0.0.1 (tiny backbone, the load test's artifacts), with its own
GRADIO_TEMP_DIR and TMPDIR so every byte it keeps can be counted. Loopback only.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.load_test import METHODS, build_artifacts, start_server, stop_server, wait_loaded  # noqa: E402

MB = 2 ** 20


def du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def raw(url: str, head: str, body: bytes = b"", wait_s: float = 30) -> bytes:
    """One request over a socket: headers first, the body offered after; returns whatever came back."""
    parts = urllib.parse.urlsplit(url)
    answer = b""
    with socket.create_connection((parts.hostname, parts.port), timeout=wait_s) as s:
        s.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        try:
            s.sendall(body)
            while chunk := s.recv(65536):
                answer += chunk
        except OSError:
            pass
    return answer


def chunked(data: bytes, size: int = 65536) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + size]), data[i:i + size])
                    for i in range(0, len(data), size)) + b"0\r\n\r\n"


def http_attacks(url: str) -> dict[str, tuple[int, int]]:
    """name -> (requests tried, answers that let the attack through)."""
    import httpx
    out: dict[str, tuple[int, int]] = {}
    upload = "POST /gradio_api/upload HTTP/1.1\nHost: x\nContent-Type: multipart/form-data; boundary=b\n"
    form = b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"x.png\"\r\n\r\n"
    big = form + b"\0" * (8 * MB) + b"\r\n--b--\r\n"
    answers = [raw(url, upload + f"Content-Length: 100\nTransfer-Encoding: chunked\nX-Forwarded-For: 10.9.0.{i}\n"
                   "Connection: close\n", chunked(big)) for i in range(20)]
    out["Content-Length + Transfer-Encoding upload (8 MB chunked body)"] = (20, sum(b" 200 " in a[:20] for a in answers))
    answers = [raw(url, upload + "Transfer-Encoding: chunked\nConnection: close\n", chunked(big)) for _ in range(10)]
    out["chunked upload without a length"] = (10, sum(b" 200 " in a[:20] for a in answers))
    answers = [raw(url, upload + "Content-Length: 1000\nConnection: close\n", big) for _ in range(10)]
    out["body longer than its Content-Length"] = (10, sum(a.count(b"HTTP/1.1 200") > 1 for a in answers))
    answers = [raw(url, upload + "Content-Length: 10\ncontent-length: 8000000\nConnection: close\n", big)
               for _ in range(5)]
    out["two Content-Length headers"] = (5, sum(b" 200 " in a[:20] for a in answers))
    rec = [httpx.post(url + "gradio_api/process_recording", timeout=60,
                      files={"video": ("v.mp4", b"\0" * 500_000, "video/mp4")}) for _ in range(30)]
    out["POST /gradio_api/process_recording (500 KB each)"] = (30, sum(r.status_code != 404 for r in rec))
    closed = [("POST", "gradio_api/vibe-edit"), ("POST", "gradio_api/vibe-code"), ("GET", "gradio_api/vibe-code"),
              ("POST", "gradio_api/undo-vibe-edit"), ("POST", "gradio_api/vibe-starter-queries"),
              ("GET", "gradio_api/proxy=http://127.0.0.1:1/"), ("GET", "monitoring"), ("GET", "monitoring/summary"),
              ("POST", "gradio_api/component_server"), ("POST", "gradio_api/stream/x"), ("GET", "gradio_api/dev/reload"),
              ("POST", "gradio_api/run-history/connect"), ("GET", "gradio_api/run-history/buckets"),
              ("GET", "gradio_api/token"), ("POST", "login"), ("GET", "logout"),
              ("GET", "gradio_api/custom_component/a/b/c/d.js")]
    rs = [httpx.request(m, url + p, timeout=30) for m, p in closed]
    out["routes the dashboard does not need (17 kinds)"] = (len(rs), sum(r.status_code != 404 for r in rs))
    answers = [raw(url, "POST /gradio_api/queue/join HTTP/1.1\nHost: x\nContent-Type: application/json\n"
                   f"Content-Length: {50 * MB}\nConnection: close\n") for _ in range(10)]
    out["50 MB JSON body to queue/join"] = (10, sum(b" 413 " not in a[:20] for a in answers))
    slow = []

    def trickle(i: int) -> None:  # declares 100 MB, sends 1 KB, then nothing: cut off at the rate's deadline
        slow.append(raw(url, upload + f"Content-Length: {100 * MB}\nX-Forwarded-For: 10.8.0.{i}\n", form, wait_s=60))
    threads = [threading.Thread(target=trickle, args=(i,)) for i in range(18)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out["slow bodies (declare 100 MB, send 1 KB)"] = (18, sum(b" 408 " not in a[:20] for a in slow))
    traversal = ["gradio_api/file=/etc/passwd", "gradio_api/file=../../../../etc/passwd",
                 "gradio_api/file=%2e%2e/%2e%2e/etc/passwd", "gradio_api/file/etc/passwd", "assets/../../etc/passwd",
                 "gradio_api/file=" + str(REPO / "README.md"), "static/%2e%2e/%2e%2e/README.md"]
    rs = [httpx.get(url + t, timeout=30) for t in traversal]
    out["file traversals"] = (len(rs), sum(r.status_code == 200 and b"root:" in r.content for r in rs))
    out.update(queue_flood(url))
    return out


def queue_flood(url: str) -> dict[str, tuple[int, int]]:
    """70 model requests from one visitor at once: beyond its share they are refused, and a view still answers."""
    import httpx
    from concurrent.futures import ThreadPoolExecutor

    def post(i: int) -> int:
        return httpx.post(f"{url}gradio_api/call/predict_sample", json={"data": ["samples", i % 50]}, timeout=120,
                          headers={"X-Forwarded-For": "10.7.0.1"}).status_code
    with ThreadPoolExecutor(70) as ex:
        codes = list(ex.map(post, range(70)))
    t = time.perf_counter()
    r = httpx.post(f"{url}gradio_api/call/status", json={"data": []}, timeout=120)
    view_ok = r.status_code == 200
    return {f"70 model requests from one visitor ({codes.count(200)} queued, then a view answered in "
            f"{time.perf_counter() - t:.2f} s)": (71, int(codes.count(200) > 4 or not view_ok))}


def status_paths(url: str, work: Path) -> tuple[int, int]:
    import httpx
    eid = httpx.post(f"{url}gradio_api/call/status", json={"data": []}, timeout=60).json()["event_id"]
    text = httpx.get(f"{url}gradio_api/call/status/{eid}", timeout=60).text
    return 1, int(str(work) in text)


# -- the CLI and the library -----------------------------------------------------------------------------
def cli(argv: list[str]) -> tuple[int, bool]:
    """(exit code, traceback escaped)."""
    from dfdet.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            return int(main(argv) or 0), False
        except SystemExit as e:
            return int(e.code or 0) if isinstance(e.code, int) else 2, False
        except BaseException:  # noqa: BLE001 - what we count
            return 1, True


TINY = ["--model", "dfdet-tiny-vit", "--pretrained", "none", "--device", "cpu"]
SETS = ["epochs=0", "epochs=-1", "batch_size=0", "batch_size=-5", "lr=.nan", "lr=-1", "lr=.inf", "betas=[2, 0.5]",
        "seed=-1", "seed=99999999999", "out=/proc/x", "device=gpu7", "cache_features=/proc/c", "calibration.rule=x",
        "calibration.alpha=2", "weight_decay=.nan", "slerp_t=[0.9, 0.1]", "datasets=" + "[" * 5000 + "]" * 5000,
        "lr=abc", "epochs=1.5", "backbone=5", "lr=!!python/object/apply:os.system [x]", "nokey"]
BAD_FIELDS = [("calibration", {"n": "abc"}), ("calibration", {"threshold": "x"}), ("calibration", {"threshold": 2}),
              ("calibration", {"temperature": float("nan")}), ("calibration", {"band": [0.9, 0.1]}),
              ("calibration", {"band": [0.1]}), ("calibration", {"rule": {"a": 1}}), ("calibration", {"alpha": True}),
              ("best_epoch", -1), ("train_seconds", float("inf")), ("label", "a\nb"), ("val_metrics", [1]),
              ("config", {"top_k": "many"}), ("descriptions", {"name": "x", "real": "a", "fake": []}),
              ("trainable_params", "many"), ("backbone", "ViT")]


def cli_attacks(work: Path, art: dict[str, Path]) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    runs = [cli(["train", "--method", "linear_probe", "--manifest", str(work / "m.csv"), "--out",
                 str(work / "t"), "--set", s, *TINY]) for s in SETS]
    out[f"`dfdet train --set` values no run can use ({len(SETS)})"] = (len(SETS), sum(t for _, t in runs))
    rc, tb = cli(["train", "--method", "linear_probe", "--manifest", "m.csv", "--config", "/dev/zero", *TINY])
    out["`--config /dev/zero`"] = (1, int(tb))
    rc, tb = cli(["predict", str(art["face"]), "--checkpoints", str(art["checkpoints"]), "--csv", "/dev/full", *TINY])
    out["`predict --csv /dev/full` (a full disk)"] = (1, int(tb))
    base = art["checkpoints"] / "ln_norm"
    meta = json.loads((base / "dfdet.json").read_text())
    cal = {"rule": "eer", "threshold": 0.4, "temperature": 1.3, "band": [0.3, 0.5], "alpha": 0.1, "split": "val",
           "n": 32}
    bad = 0
    for key, value in BAD_FIELDS:
        ck = work / "bad_ck"
        shutil.rmtree(ck, ignore_errors=True)
        shutil.copytree(art["checkpoints"], ck)
        spoilt = {**meta, key: {**cal, **value} if key == "calibration" else value}
        (ck / "ln_norm" / "dfdet.json").write_text(json.dumps(spoilt))
        rc, tb = cli(["predict", str(art["face"]), "--checkpoints", str(ck), *TINY])
        bad += tb or rc != 0
    out[f"`predict` with one bad dfdet.json field ({len(BAD_FIELDS)})"] = (len(BAD_FIELDS), bad)
    return out


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="dfdet_hostile_"))
    try:
        return measure(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(work: Path) -> int:
    art = build_artifacts(work)
    server_tmp = work / "tmp"
    server_tmp.mkdir()
    old = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(server_tmp)  # the server's own temp files, counted
    try:
        proc, url = start_server(art, work)
    finally:
        os.environ.pop("TMPDIR") if old is None else os.environ.__setitem__("TMPDIR", old)
    try:
        wait_loaded(url)
        before = du(work / "gradio") + du(server_tmp)
        http = http_attacks(url)
        http["/status naming a server folder"] = status_paths(url, work)
        after = du(work / "gradio") + du(server_tmp)
    finally:
        stop_server(proc)
    after_stop = du(work / "gradio") + du(server_tmp)
    log_text = (work / "server.log").read_text(errors="replace")
    server_tracebacks = log_text.count("Traceback")
    if server_tracebacks:
        Path(tempfile.gettempdir(), "dfdet_hostile_server.log").write_text(log_text)  # to read them
    lib = cli_attacks(work, art)
    rows = [f"| {name} | {n} | {through} |" for name, (n, through) in {**http, **lib}.items()]
    n_http, n_lib = sum(n for n, _ in http.values()), sum(n for n, _ in lib.values())
    lib_tb = sum(t for _, t in lib.values())
    body = "\n".join([
        f"{n_http} hostile HTTP requests against `app.py` and {n_lib} bad CLI and library inputs "
        f"(methods {', '.join(METHODS)} on the tiny backbone).", "",
        "| attack | tried | got through (or a traceback, for the CLI rows) |", "|---|---|---|", *rows, "",
        f"- tracebacks in the server's log: **{server_tracebacks}**",
        f"- CLI inputs that ended in a traceback or a wrong exit: **{lib_tb}**",
        f"- bytes the server kept on disk (its GRADIO_TEMP_DIR and TMPDIR) after the attack: "
        f"**{(after - before) / MB:.2f} MB** ({after - before:,} bytes; {after_stop:,} after a clean stop)"])
    from bench.common import write_report
    import torch
    out = REPO / "bench" / "results_hostile.md"
    write_report(out, "Hostile requests and bad inputs (app.py on 127.0.0.1, tiny backbone, CPU)",
                 "python bench/hostile_inputs.py", torch.device("cpu"), body)
    print(body)
    through = sum(t for _, t in http.values())
    return 0 if not (through or server_tracebacks or lib_tb) else 1


if __name__ == "__main__":
    sys.exit(main())
