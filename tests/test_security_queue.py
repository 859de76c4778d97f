"""Issue 19 item 6: one visitor cannot fill the model queue, and the cheap views keep answering.

A tiny gradio app with the dashboard's queue settings: a model event (the dashboard's one-at-a-time model
queue) that blocks until the test releases it, and a view event. Known points of progress: the model call
has started (an Event it sets), and each join's answer. Visitors are told apart by X-Forwarded-For, as
uvicorn trusts it from 127.0.0.1. Loopback only."""
from __future__ import annotations

import threading

import gradio as gr
import httpx
import pytest

from ui.common import MODEL_KW
from ui.guards import fair_queue


@pytest.fixture(scope="module")
def queued():
    started, release = threading.Event(), threading.Event()

    def model(x):
        started.set()
        release.wait(60)
        return x

    with gr.Blocks() as app:
        box = gr.Textbox()
        out = gr.Textbox()
        gr.Button("model").click(model, box, out, api_name="model", **MODEL_KW)
        gr.Button("view").click(lambda x: x, box, out, api_name="view")
    app.queue(default_concurrency_limit=4, max_size=6)
    fair_queue(app, share=2)
    app.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    index = {fn.api_name: i for i, fn in app.fns.items()}
    yield app, index, started, release
    release.set()
    app.close()


def join(app, fn_index: int, client: str, session: str) -> httpx.Response:
    return httpx.post(app.local_url + "gradio_api/queue/join", timeout=30, headers={"X-Forwarded-For": client},
                      json={"data": ["x"], "fn_index": fn_index, "session_hash": session, "event_data": None})


def test_one_visitor_gets_a_fair_share_and_views_keep_answering(queued):
    app, index, started, release = queued
    first = join(app, index["model"], "198.51.100.1", "a0")
    assert first.status_code == 200
    assert started.wait(60)  # the model is busy: every later model request waits
    answers = [join(app, index["model"], "198.51.100.1", f"a{i}").status_code for i in range(1, 6)]
    assert answers == [200, 200, 503, 503, 503]  # two waiting, then refused
    refused = join(app, index["model"], "198.51.100.1", "a9")
    assert "each visitor may have 2" in refused.json()["detail"]
    others = [join(app, index["model"], f"198.51.100.{i}", f"b{i}").status_code for i in range(2, 6)]
    assert others == [200, 200, 200, 200]  # other visitors still get in (6 waiting: the queue's size)
    assert join(app, index["model"], "198.51.100.9", "c").status_code == 503  # the model queue is full...
    for i in range(3):
        view = join(app, index["view"], "198.51.100.1", f"v{i}")  # ...and a view is still admitted
        assert view.status_code == 200, view.text
    release.set()


def test_load_test_clients_are_distinct_visitors_and_download_into_its_work_folder(queued, tmp_path, monkeypatch):
    """bench/load_test.py left one temp folder per client (76, 112 MB) and, all on 127.0.0.1, its 50 clients
    would be one visitor to the fair queue. Now each client downloads under the run's work folder (removed at
    the end) and is its own visitor."""
    from pathlib import Path

    import bench.load_test as lt
    app, *_ = queued
    monkeypatch.setattr(lt, "DOWNLOADS", tmp_path / "downloads")
    a, b = lt.new_client(app.local_url), lt.new_client(app.local_url)
    for c in (a, b):
        assert Path(c.output_dir).parent == tmp_path / "downloads"
    assert a.headers["X-Forwarded-For"] != b.headers["X-Forwarded-For"]
