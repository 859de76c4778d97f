"""A small version of bench/load_test.py: concurrent clients with mixed requests get no errors, and an
overloaded queue refuses the excess at once with a message instead of letting requests time out.

The full run (50 clients x 20 requests, latency percentiles, server memory) is the benchmark:
    python bench/load_test.py
"""
from __future__ import annotations

import json

import pandas as pd
import pytest

from bench.load_test import MIX, Context, overload, run_load
from corpus import CASES, Corpus
from dfdet.data.manifest import scan_folder
from test_app_helpers import make_synthetic_run
from test_reliability_helpers import serve

# The hypersphere and SLERP views need UMAP fits (a numba compile of ~20 s): left to the benchmark.
SMOKE_MIX = {k: v for k, v in MIX.items() if k not in ("hypersphere", "slerp_path")}
QUEUE = 6  # a small queue bound, so overflowing it takes a handful of requests
SESSIONS = 4  # a small cap on visitor sessions held in memory


@pytest.fixture(autouse=True)
def _gradio_tmp():
    yield


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, tiny_cfg, shared):
    tmp = tmp_path_factory.mktemp("load")
    mp = pytest.MonkeyPatch()
    mp.setenv("GRADIO_TEMP_DIR", str(tmp / "gradio"))
    mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    run = make_synthetic_run(tmp / "runs" / "synthetic", n=40, methods=("linear_probe", "ln_tuning", "ln_norm",
                                                                       "ln_norm_slerp"))
    preds = pd.read_csv(run / "predictions.csv")  # point the rows at real faces, so every view has images
    preds["path"] = scan_folder(shared / "datasets")["path"].iloc[::40].head(len(preds)).to_numpy()
    preds.to_csv(run / "predictions.csv", index=False)
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "data_root": str(shared / "datasets")}))
    served = serve(tmp, tiny_cfg, runs=run.parent, app_attrs={"QUEUE_MAX_SIZE": QUEUE,
                                                                     "STATE_SESSIONS": SESSIONS})
    corpus = Corpus(tmp / "inputs", shared)
    face = tmp / "face.png"
    corpus.photo().save(face)
    video = corpus.path(next(c for c in CASES if c.name == "video_one_frame"))
    ctx = Context("synthetic", 40, len(served.session.samples), ["DS0", "DS1"], str(face), str(video))
    yield served, ctx
    served.close()
    mp.undo()


def test_concurrent_clients_with_mixed_requests_get_no_errors(loaded):
    served, ctx = loaded
    report = run_load(served.app.local_url, ctx, clients=6, requests=4, mix=SMOKE_MIX)
    assert len(report.results) == 24
    assert report.errors == [], report.errors[:3]
    assert {r.api for r in report.results} >= {"predict_sample", "roc", "errors"}
    served.client.predict("samples", 1, api_name="/predict_sample")  # and it still serves


def test_an_overloaded_queue_refuses_at_once_with_a_message(loaded, monkeypatch):
    """The model is held busy by one request (a known point: its handler has started) while 24 more arrive,
    so exactly QUEUE of them wait and the rest are refused, however fast the machine is."""
    import threading

    import httpx
    served, _ = loaded
    assert served.app._queue.max_size == QUEUE  # the bound is the app's setting
    entered, release = threading.Event(), threading.Event()
    store = served.session.compare.store  # the handler asks the store for the model on every call
    real = store.require_bank

    def held(*args, **kwargs):
        entered.set()
        release.wait(120)
        return real(*args, **kwargs)
    monkeypatch.setattr(store, "require_bank", held)
    first = httpx.post(f"{served.app.local_url}gradio_api/call/predict_sample", json={"data": ["samples", 0]})
    assert first.status_code == 200 and entered.wait(120)
    over = overload(served.app.local_url, 24, after_posting=release.set)
    assert over["refused"] == 24 - QUEUE and over["accepted"] == QUEUE
    assert over["messages"] == [f"503 Queue is full. Max size is {QUEUE} and size is {QUEUE}."]
    assert over["max_refusal_s"] < 10  # a refusal is an answer, not a timeout
    assert over["completed"] == over["accepted"]  # every queued request was answered


def test_gradio_client_users_read_the_refusal_too(loaded):
    """The Python client turns the 503 into an exception with a message (no hang, no retry storm)."""
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client
    served, _ = loaded
    clients = [Client(served.app.local_url, verbose=False) for _ in range(16)]

    def one(c):
        try:
            c.predict("samples", 2, api_name="/predict_sample")
            return "ok"
        except Exception as err:  # noqa: BLE001
            return str(err)
    with ThreadPoolExecutor(16) as ex:
        answers = list(ex.map(one, clients))
    assert "ok" in answers
    refused = [a for a in answers if a != "ok"]
    assert all("Queue is full" in a for a in refused), refused


def test_visitor_sessions_held_in_memory_are_capped(loaded):
    """Gradio keeps every session's last outputs (~1.5 MB with this app's views); app.py caps how many."""
    from gradio_client import Client
    served, _ = loaded
    for _ in range(SESSIONS + 4):
        Client(served.app.local_url, verbose=False).predict("samples", 3, api_name="/predict_sample")
    assert 0 < len(served.app.state_holder.session_data) <= SESSIONS
