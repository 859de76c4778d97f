"""Hostile files and paths: pickles where weights are expected, paths out of the allowed folders, oversize
uploads, and the upload folder being cleaned.

The pickles are live: unpickling one creates a marker file (the test first proves that on a copy of
the payload), so "the marker was never created" shows the file was refused without being unpickled.
"""
from __future__ import annotations

import base64
import io
import json
import os
import pickle
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from dfdet.artifacts import write_run
from dfdet.backbone import load_clip
from dfdet.inference import DetectorBank
from dfdet.methods import PAPER_METHODS, get_method
from dfdet.metrics import metric_table
from dfdet.viz.media import MAX_UPLOAD_MB
from test_app_helpers import make_checkpoints
from test_reliability_helpers import TINY_ARGS, deadline, run_cli, serve

SECRET_COLOUR = (255, 0, 255)  # the secret image is one flat magenta: easy to recognise if it ever leaks


class Payload:
    """Unpickling this opens `marker` for writing, i.e. creates it: a stand-in for arbitrary code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def live_pickle(marker: Path, tmp: Path) -> bytes:
    """A pickle that would create `marker`; proven live by unpickling a twin that targets another file."""
    twin = tmp / "proof_the_payload_is_live"
    pickle.loads(pickle.dumps(Payload(twin))).close()
    assert twin.is_file()
    return pickle.dumps(Payload(marker))


def torch_pickle(marker: Path) -> bytes:
    """The same payload in torch.save's zip format, as a .bin / .ckpt would hold it."""
    buf = io.BytesIO()
    torch.save({"state_dict": Payload(marker)}, buf)
    return buf.getvalue()


@pytest.fixture(autouse=True)
def _gradio_tmp():
    yield  # one server per module keeps one upload folder


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_cfg, shared):
    """A data root with a good face and a symlink out, a secret outside it, a run whose rows point out,
    checkpoints with three hostile entries, and the app over all of it (upload cache aged out in 1 s)."""
    tmp = tmp_path_factory.mktemp("hostile")
    mp = pytest.MonkeyPatch()
    mp.setenv("GRADIO_TEMP_DIR", str(tmp / "gradio"))
    mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    marker = tmp / "PWNED"
    secret = tmp / "secret"
    secret.mkdir()
    Image.new("RGB", (64, 64), SECRET_COLOUR).save(secret / "secret.png")
    (secret / "secret.txt").write_text("TOP-SECRET-7f3a")
    data = tmp / "data"
    face = sorted((shared / "datasets" / "FF" / "real").glob("*/*.png"))[0]
    for rel in ("DS/real/v0/000.png", "DS/real/v2/000.png"):
        (data / rel).parent.mkdir(parents=True)
        Image.open(face).save(data / rel)
    (data / "DS/fake/v1").mkdir(parents=True)
    (data / "DS/fake/v1/000.png").symlink_to(secret / "secret.png")
    rows = ["DS/real/v0/000.png", "../secret/secret.png", str(secret / "secret.png"), "DS/fake/v1/000.png",
            "DS/../../secret/secret.png", "DS/real/v2/000.png"]
    labels = [0, 1, 1, 1, 1, 0]
    preds = pd.DataFrame({"path": rows, "dataset": "DS", "source": ["real" if y == 0 else "fake" for y in labels],
                          "video": [f"DS/x/v{i}" for i in range(len(rows))], "label": labels, "split": "test"})
    rng = np.random.default_rng(0)
    emb = {}
    for m in ("linear_probe", "ln_norm"):
        preds[f"p_fake__{m}"] = rng.uniform(0.05, 0.95, len(rows)).round(4)
        z = rng.normal(size=(len(rows), 8))
        emb[m] = (z / np.linalg.norm(z, axis=1, keepdims=True), np.linalg.norm(z, axis=1))
    metrics, roc = metric_table(preds, ["linear_probe", "ln_norm"])
    info = {"backbone": {"model": "synthetic", "weights": "none"}, "data_root": str(data), "threshold": 0.5,
            "methods": {m: {"method": m, "label": get_method(m).label} for m in ("linear_probe", "ln_norm")}}
    write_run(tmp / "runs" / "hostile", info, preds, metrics, roc, emb)
    pickled_run = write_run(tmp / "runs" / "pickled", info, preds, metrics, roc, emb)
    np.savez(pickled_run / "embeddings" / "ln_norm.npz", z=np.array([Payload(marker)], dtype=object),
             norm=np.ones(1))

    ck = make_checkpoints(load_clip(tiny_cfg), tmp / "checkpoints")
    payload = live_pickle(marker, tmp)
    (ck / "evil_safetensors").mkdir()
    (ck / "evil_safetensors" / "model.safetensors").write_bytes(payload)  # a pickle under the expected name
    (ck / "evil_safetensors" / "dfdet.json").write_text(json.dumps(
        {"format": "dfdet-checkpoint/1", "method": "ln_norm",
         "backbone": {"model": tiny_cfg.model, "weights": "random-init-seed0"}}))
    (ck / "evil_bin").mkdir()
    (ck / "evil_bin" / "pytorch_model.bin").write_bytes(torch_pickle(marker))
    (ck / "evil_ckpt").mkdir()
    (ck / "evil_ckpt" / "model.ckpt").write_bytes(torch_pickle(marker))
    for name, spoil in (("typed_wrong", lambda m, t: ({**m, "backbone": "ViT"}, t)),  # issue #11 §2 in the app
                        ("headless", lambda m, t: (m, {k: v for k, v in t.items() if not k.startswith("head.")}))):
        meta, tensors = spoil(json.loads((ck / "ln_norm" / "dfdet.json").read_text()),
                              load_file(str(ck / "ln_norm" / "model.safetensors")))
        (ck / name).mkdir()
        save_file(tensors, str(ck / name / "model.safetensors"))
        (ck / name / "dfdet.json").write_text(json.dumps(meta))
    (tmp / "evil.ckpt").write_bytes(torch_pickle(marker))
    (tmp / "evil.bin").write_bytes(torch_pickle(marker))

    # The app's own DELETE_CACHE: a 1 s cache age here made every test that downloads an output race the cleaner.
    served = serve(tmp, tiny_cfg, runs=tmp / "runs", checkpoints=ck, data_root=str(data))
    yield {"tmp": tmp, "marker": marker, "secret": secret, "data": data, "ck": ck, "served": served,
           "face": face, "rows": rows}
    served.close()
    mp.undo()


def not_pwned(world):
    assert not world["marker"].exists(), "a pickle was unpickled"


# ---------------------------------------------------------------------------------------------- pickles
def test_pickles_in_the_checkpoints_folder_are_refused_without_unpickling(world, tiny_cfg):
    bank = DetectorBank(load_clip(tiny_cfg), world["ck"], list(PAPER_METHODS))
    e = bank.entries
    assert e["evil_safetensors"].status == "error" and "not a valid safetensors file" in e["evil_safetensors"].message
    for name, file in (("evil_bin", "pytorch_model.bin"), ("evil_ckpt", "model.ckpt")):
        assert e[name].status == "error"
        assert "not a dfdet checkpoint" in e[name].message and file in e[name].message
        assert "import-checkpoint" in e[name].message  # says what to do
    assert set(bank.ready) == set(PAPER_METHODS)  # the rest keep working
    not_pwned(world)


def test_the_cli_refuses_pickles_and_still_scores_with_the_good_checkpoints(world):
    res = run_cli(["predict", str(world["face"]), "--checkpoints", str(world["ck"]), *TINY_ARGS])
    assert res.rc == 0 and not res.crashed and "Traceback" not in res.text
    assert "evil_safetensors: " in res.out and "not a valid safetensors file" in res.out
    assert all(get_method(m).label in res.out for m in PAPER_METHODS)
    not_pwned(world)


def test_import_checkpoint_reads_a_hostile_ckpt_without_running_it(world):
    res = run_cli(["import-checkpoint", str(world["tmp"] / "evil.ckpt"), "--out", str(world["tmp"] / "imported")])
    assert res.rc == 2 and not res.crashed and "Traceback" not in res.text
    assert "never unpickles" in res.err
    not_pwned(world)


def test_clip_weights_that_are_a_pickle_are_refused(world):
    res = run_cli(["predict", str(world["face"]), "--checkpoints", str(world["ck"]), "--clip-weights",
                   str(world["tmp"] / "evil.bin"), "--model", "dfdet-tiny-vit", "--device", "cpu"])
    assert res.rc == 2 and not res.crashed and "Traceback" not in res.text
    assert "could not load CLIP weights from" in res.err and "evil.bin" in res.err
    not_pwned(world)


def test_the_app_lists_refused_checkpoints_and_serves_with_the_rest(world):
    c = world["served"].client
    banner = c.predict(api_name="/status")[0]
    listed = [line.split(": ")[0] for line in banner.splitlines() if line.startswith("- ")]
    for name in ("evil_safetensors", "evil_bin", "evil_ckpt"):
        assert any(name in label for label in listed), listed  # under "Not available", named by its folder
    assert "not a valid safetensors file" in banner and "not a dfdet checkpoint" in banner
    assert "'backbone' must be a JSON object" in banner and "not a ln_norm checkpoint: missing 2 tensor" in banner
    assert "CLIP weights are not available" not in banner
    out = c.predict("samples", 0, api_name="/predict_sample")
    scored = [r for r in out[2]["data"] if r[2] is not None]
    assert {r[0] for r in scored} == {get_method(m).label for m in PAPER_METHODS}
    not_pwned(world)


def test_an_embeddings_file_holding_a_pickle_is_refused(world):
    with pytest.raises(Exception) as err:
        world["served"].client.predict("pickled", "ln_norm", "label", "2-D", api_name="/hypersphere")
    assert "not a dfdet embeddings file" in str(err.value) and "Traceback" not in str(err.value)
    not_pwned(world)


# ---------------------------------------------------------------------------------------------- paths
def test_no_file_outside_the_allowed_folders_is_served_over_http(world):
    app, secret = world["served"].app, world["secret"]
    upload = world["served"].upload_dir
    (upload / "planted").mkdir(parents=True, exist_ok=True)
    link = upload / "planted" / "link.txt"
    if not link.exists():
        link.symlink_to(secret / "secret.txt")  # a symlink inside the upload folder pointing out of it
    attempts = [str(secret / "secret.txt"), "../secret/secret.txt", "../../../../../../etc/passwd",
                "%2e%2e/%2e%2e/%2e%2e/etc/passwd", str(upload / ".." / "secret" / "secret.txt"), str(link),
                str(world["data"] / "DS/real/v0/000.png"), str(world["data"] / "DS/fake/v1/000.png"),
                str(Path(__file__).resolve().parents[1] / "app.py"), "app.py", "/etc/passwd"]
    for a in attempts:
        for route in ("gradio_api/file=", "file=", "gradio_api/static/", "static/"):
            r = httpx.get(app.local_url + route + a)
            assert r.status_code in (403, 404), (route, a, r.status_code)
            assert "TOP-SECRET" not in r.text and "root:" not in r.text


def call_api(url: str, api: str, data: list) -> str:
    """One raw POST to /gradio_api/call/<api> and its whole event stream, as an attacker's script sees it."""
    r = httpx.post(f"{url}gradio_api/call/{api}", json={"data": data}, timeout=30)
    if r.status_code != 200:
        return f"HTTP {r.status_code}: {r.text}"
    return httpx.get(f"{url}gradio_api/call/{api}/{r.json()['event_id']}", timeout=60).text


def stream_error(events: str) -> str:
    """The error message of an event stream ('' if it did not end in an error)."""
    if "event: error" not in events:
        return ""
    data = json.loads(events.split("event: error", 1)[1].split("data:", 1)[1].strip().splitlines()[0])
    return (data.get("error") if isinstance(data, dict) else data) or "?"


FILE_META = {"_type": "gradio.FileData"}


@pytest.fixture(scope="module")
def url_server():
    """A local web server that counts the requests it gets: a file payload that is a URL must never be fetched."""
    import http.server
    import threading
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", hits
    srv.shutdown()


def server_file_payloads(world, url_server) -> dict[str, tuple[str, dict]]:
    """(api, file payload) naming a file that was not uploaded: the red-team variants of issue #11 §1."""
    secret = world["secret"] / "secret.png"
    upload = world["served"].upload_dir
    planted = upload / "planted_png" / "link.png"  # a symlink inside the upload folder pointing out
    if not planted.exists():
        planted.parent.mkdir(parents=True, exist_ok=True)
        planted.symlink_to(secret)
    video = sorted((Path(world["face"]).parents[4] / "videos" / "FF" / "real").glob("*.mp4"))[0]
    base, _ = url_server
    return {
        "no-meta": ("predict_image", {"path": str(secret)}),  # the exact request of the report
        "meta-string": ("predict_image", {"path": str(secret), "meta": "gradio.FileData"}),
        "meta-other-type": ("predict_image", {"path": str(secret), "meta": {"_type": "gradio.Other"}}),
        "meta-list": ("predict_image", {"path": str(secret), "meta": [FILE_META]}),
        "with-meta": ("predict_image", {"path": str(secret), "meta": FILE_META}),
        "relative": ("predict_image", {"path": os.path.relpath(secret)}),
        "dotdot-from-upload-folder": ("predict_image", {"path": f"{upload}/../secret/secret.png"}),
        "symlink-in-upload-folder": ("predict_image", {"path": str(planted), "meta": FILE_META}),
        "symlink-no-meta": ("predict_image", {"path": str(planted)}),
        "missing-file": ("predict_image", {"path": str(world["secret"] / "no_such_file.png")}),
        "path-not-a-string": ("predict_image", {"path": ["/etc/passwd"]}),
        "bare-string": ("predict_image", str(secret)),
        "bare-string-video": ("predict_video", str(video)),
        "nul-byte": ("predict_image", {"path": str(secret) + "\x00.png"}),
        "url-as-path": ("predict_image", {"path": f"{base}/secret.png", "meta": FILE_META}),
        "data-url": ("predict_image", {"path": None, "url": "data:image/png;base64," +
                                       base64.b64encode(secret.read_bytes()).decode()}),
        "video-no-meta": ("predict_video", {"path": str(video)}),
        "video-with-meta": ("predict_video", {"path": str(video), "meta": FILE_META}),
        "video-as-image": ("predict_image", {"path": str(video)}),
        "video-url": ("predict_video", {"path": f"{base}/v.mp4", "meta": FILE_META}),
    }


VARIANTS = ["no-meta", "meta-string", "meta-other-type", "meta-list", "with-meta", "relative",
            "dotdot-from-upload-folder", "symlink-in-upload-folder", "symlink-no-meta", "missing-file",
            "path-not-a-string", "bare-string", "bare-string-video", "nul-byte", "url-as-path", "data-url", "video-no-meta", "video-with-meta",
            "video-as-image", "video-url"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_api_never_opens_a_server_path_a_client_sends(world, url_server, variant):
    """Issue #11 §1: any server file named in a payload is refused with one message, whatever the variant."""
    from dfdet.uploads import REFUSED
    api, payload = server_file_payloads(world, url_server)[variant]
    events = call_api(world["served"].app.local_url, api, [payload])
    assert stream_error(events) == REFUSED, events[:500]
    assert "event: complete" not in events and "gradio_api/file=" not in events
    assert str(world["tmp"]) not in events and os.getcwd() not in events  # no server path in the answer
    assert url_server[1] == []  # a URL in a payload is never fetched
    assert no_copy_of_the_secret(world)


def test_gradio_client_naming_a_server_file_gets_the_same_refusal(world):
    from dfdet.uploads import REFUSED
    c = world["served"].client
    for payload in ({"path": str(world["secret"] / "secret.png")}, str(world["secret"] / "secret.png")):
        with pytest.raises(Exception) as err:
            c.predict(payload, api_name="/predict_image")
        assert str(err.value) == REFUSED, str(err.value)
    assert no_copy_of_the_secret(world)


def test_error_messages_name_no_server_folder(world):
    """Working directory, temp and data folders are scrubbed from messages; the file name stays."""
    scrub = world["served"].module.scrub
    for folder in (os.getcwd(), str(world["served"].upload_dir), str(world["data"])):
        assert scrub(f"image not found: {folder}/sub/face.png (check it)") == "image not found: face.png (check it)"
    assert scrub("50 MB/s, a/b/c.png") == "50 MB/s, a/b/c.png"  # no path: unchanged


def no_copy_of_the_secret(world) -> bool:
    """No copy of the secret in gradio's cache or the app's image outputs: nothing of it can be served."""
    from dfdet.viz.media import image_dir
    secret = (world["secret"] / "secret.png").read_bytes()
    for folder in (world["served"].upload_dir, image_dir()):
        for p in folder.rglob("*"):
            if p.is_file() and not p.is_symlink():
                if p.read_bytes() == secret:
                    return False
                if p.suffix.lower() in (".png", ".webp", ".jpg", ".jpeg") and is_secret(Image.open(p)):
                    return False
    return True


@pytest.mark.parametrize("row", [1, 2, 3, 4], ids=["dotdot", "absolute", "symlink-out", "dotdot-inside"])
def test_run_rows_pointing_outside_the_data_root_are_refused(world, row):
    c = world["served"].client
    for api, args in (("/point", ("hostile", "ln_norm", row)), ("/predict_sample", ("run:hostile", row))):
        with pytest.raises(Exception) as err:
            c.predict(*args, api_name=api)
        assert "points outside the data root" in str(err.value), (api, str(err.value))
    image, text, _ = c.predict("hostile", "ln_norm", 0, api_name="/point")  # the good row still works
    assert world["rows"][0] in text and np.asarray(Image.open(image)).std() > 0


def is_secret(img: Image.Image) -> bool:
    a = np.asarray(img.convert("RGB")).reshape(-1, 3).astype(int)
    return bool((np.abs(a - SECRET_COLOUR).sum(1) < 30).mean() > 0.5)


def test_galleries_and_hover_thumbnails_never_show_a_file_outside_the_root(world):
    c = world["served"].client
    fp, fn, dis, _ = c.predict("hostile", "ln_norm", "all", 0.5, api_name="/errors")
    shown = [item["image"] for item in fp + fn + dis]
    assert shown and not any(is_secret(Image.open(p)) for p in shown)
    fig = json.loads(c.predict("hostile", "ln_norm", "label", "2-D", api_name="/hypersphere")["plot"])
    uris = [cd[1] for tr in fig["data"] if tr.get("customdata") for cd in tr["customdata"]]
    assert len(uris) == len(world["rows"])
    for uri in uris:
        img = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
        assert not is_secret(img)


def test_face_sources_are_names_not_paths(world):
    """The face source is a server-side name (runs appear after start, so the service checks it); anything else
    is refused before any file is opened."""
    c = world["served"].client
    for source in ("/etc/passwd", "run:../../etc", str(world["secret"] / "secret.png"), "run:hostile/../pickled"):
        with pytest.raises(Exception) as err:
            c.predict(source, 0, api_name="/predict_sample")
        assert "unknown face source" in str(err.value) or "unknown run" in str(err.value)
    with pytest.raises(Exception, match="unknown face source"):  # and the handler itself trusts no name either
        world["served"].session.face("/etc/passwd", 0)


# ---------------------------------------------------------------------------------------------- uploads
def test_max_file_size_is_set_and_an_oversize_upload_is_rejected(world):
    from gradio_client import handle_file
    served, tmp = world["served"], world["tmp"]
    assert served.app.max_file_size == MAX_UPLOAD_MB * 2 ** 20
    big = tmp / "big.png"
    with open(big, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.truncate(MAX_UPLOAD_MB * 2 ** 20 + 1024)
    with pytest.raises(ValueError, match="exceeds the maximum file size"):  # gradio_client refuses to send it
        served.client.predict(handle_file(str(big)), api_name="/predict_image")
    with open(big, "rb") as f:  # a client that does not care: the server refuses the upload itself
        r = httpx.post(served.app.local_url + "gradio_api/upload", files={"files": ("big.png", f, "image/png")},
                       timeout=60)
    assert r.status_code == 413 and "maximum" in r.text.lower()
    assert not any(p.name == "big.png" for p in served.upload_dir.rglob("*"))


def upload(url: str, path: Path, name: str) -> str:
    """Upload a file over raw HTTP, as the browser does: the server path it got."""
    with open(path, "rb") as f:
        r = httpx.post(url + "gradio_api/upload", files={"files": (name, f, "image/png")}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()[0]


def test_uploads_live_in_the_temp_folder_and_are_cleaned_up(world):
    """Uploads land in this server's upload folder and the cleaner gradio runs every DELETE_CACHE[0] s deletes
    them once older than DELETE_CACHE[1] s. The cleaner is called here as the schedule calls it (age 0), not
    waited for: waiting on a timer while other tests download outputs made them race it."""
    from gradio.route_utils import delete_files_created_by_app
    served = world["served"]
    assert served.app.delete_cache == served.module.DELETE_CACHE and served.module.DELETE_CACHE[1] <= 3600
    path = Path(upload(served.app.local_url, world["face"], "upload_me.png"))
    assert path.is_file() and path.is_relative_to(served.upload_dir)
    delete_files_created_by_app(served.app, 0)
    assert not path.exists()
    served.client.predict("samples", 0, api_name="/predict_sample")  # still serving


def test_real_uploads_are_scored_and_deleted_at_shutdown(tmp_path, monkeypatch, tiny_cfg, shared):
    """The file guard lets an upload through (gradio_client, or by hand: upload, then name it with or without
    meta), and the app deletes every upload when it stops."""
    from gradio_client import handle_file
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    served = serve(tmp_path, tiny_cfg)  # the app's own DELETE_CACHE (10 min / 1 h): nothing ages out meanwhile
    img = tmp_path / "at_shutdown.png"
    Image.open(sorted((shared / "datasets" / "FF" / "real").glob("*/*.png"))[0]).save(img)
    _, note, table, *_ = served.client.predict(handle_file(str(img)), api_name="/predict_image")
    assert sum(row[2] is not None for row in table["data"]) == len(PAPER_METHODS)  # a p_fake per method
    path = upload(served.app.local_url, img, "by_hand.png")
    for payload in ({"path": path, "meta": FILE_META}, {"path": path}):
        events = call_api(served.app.local_url, "predict_image", [payload])
        assert "event: complete" in events, events[:500]
    files = lambda: [p for p in served.upload_dir.rglob("*") if p.is_file()]  # noqa: E731
    assert {"at_shutdown.png", "by_hand.png"} <= {p.name for p in files()}
    served.close()
    assert files() == []


def test_csv_exports_do_not_pile_up(tmp_path):
    import os

    from dfdet.viz.compare import EXPORT_KEEP_S, table_csv
    table = pd.DataFrame({"method": ["x"], "p_fake": [0.5]})
    old = table_csv(table, False, folder=tmp_path)
    os.utime(old, (time.time() - EXPORT_KEEP_S - 5,) * 2)
    new = table_csv(table, False, folder=tmp_path)
    assert new.is_file() and not old.exists()


# ------------------------------------------------------------------------------ big photos, hollow photos
def hollow_jpeg(path: Path, side: int = 6000) -> Path:
    """A 7 KB JPEG whose header declares side x side pixels: a 64x64 picture with its size patched, padded with
    a comment. The decoder would fill the missing picture with grey, at full size."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 50, 60)).save(buf, "JPEG", quality=90)
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = side.to_bytes(2, "big") * 2  # height, width
    pad = 7000 - len(data)
    path.write_bytes(bytes(data[:2]) + b"\xff\xfe" + (pad + 2).to_bytes(2, "big") + b"x" * pad + bytes(data[2:]))
    return path


def pillow_allocated(reset: bool = False) -> int:
    """Bytes of image memory Pillow allocated since the last reset (its own allocator, unseen by tracemalloc)."""
    if reset:
        Image.core.reset_stats()
    return Image.core.get_stats()["allocated_blocks"] * Image.core.get_block_size()


def test_a_jpeg_declaring_more_pixels_than_its_bytes_hold_is_refused_without_decoding(world):
    from gradio_client import handle_file
    path = hollow_jpeg(world["tmp"] / "hollow.jpg")
    assert path.stat().st_size < 7200 and Image.open(path).size == (6000, 6000)
    pillow_allocated(reset=True)
    with pytest.raises(Exception, match=r"hollow.jpg: declares 6000x6000 pixels in only 7 KB, too few bytes"):
        world["served"].client.predict(handle_file(str(path)), api_name="/predict_image")
    assert pillow_allocated() == 0  # not one pixel decoded


def test_a_huge_flat_jpeg_is_decoded_at_the_scale_detection_needs(world):
    """A complete 6000x6000 JPEG of flat grey (140 KB) is scored (no face) from a decode at half scale, capped at
    UPLOAD_MAX_SIDE. The image memory Pillow allocated over the whole request (every copy counted) plus the peak
    of Python's (numpy) was 798 MB from the full-size decode, 185 MB from this one."""
    import tracemalloc

    from gradio_client import handle_file
    path = world["tmp"] / "flat.jpg"
    Image.new("L", (6000, 6000), 128).save(path, quality=1, optimize=True)
    pillow_allocated(reset=True)
    tracemalloc.start()
    try:
        _, note, table, *_ = world["served"].client.predict(handle_file(str(path)), api_name="/predict_image")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "no face found" in note and "scored the whole image" in note.lower()
    assert any(row[2] is not None for row in table["data"])
    used = (pillow_allocated() + peak) / 2 ** 20
    print(f"Pillow allocated + Python peak: {used:.0f} MB")
    assert used < 250, f"{used:.0f} MB"


def test_a_45_megapixel_phone_photo_still_finds_its_face(world):
    """Over MAX_PIXELS as declared, but decoded at half scale: the face of a real frame, upscaled 7x, is found."""
    import av
    from gradio_client import handle_file

    from dfdet.images import MAX_PIXELS, UPLOAD_MAX_SIDE, check_image_file, open_image
    with av.open(str(Path(world["face"]).parents[4] / "videos" / "FF" / "real" / "004.mp4")) as v:
        frame = next(v.decode(video=0)).to_image()
    path = world["tmp"] / "phone.jpg"
    frame.resize((frame.width * 7, frame.height * 7), Image.Resampling.BILINEAR).save(path, quality=90)
    w, h = check_image_file(path, UPLOAD_MAX_SIDE)[1]
    assert w * h > MAX_PIXELS and max(open_image(path, UPLOAD_MAX_SIDE).size) == UPLOAD_MAX_SIDE
    _, note, table, *_ = world["served"].client.predict(handle_file(str(path)), api_name="/predict_image")
    assert note.startswith("one face found and aligned") or "faces found" in note, note
    assert sum(row[2] is not None for row in table["data"]) >= len(PAPER_METHODS)


# -------------------------------------------------------------------------- upload bytes, per client and in all
@pytest.fixture()
def small_budget(world):
    """The world server's upload budget with small limits for one test: 2 MB per client, and room for 3 MB more
    than what the other tests left on disk. Clients are told apart by X-Forwarded-For (uvicorn trusts it from
    127.0.0.1, as it would from a proxy named in $FORWARDED_ALLOW_IPS)."""
    from dfdet.uploads import UploadLimits
    budget = world["served"].app.upload_budget
    old = budget.limits
    budget.forget_deleted()
    budget.limits = UploadLimits(client_mb=2, total_mb=budget.total_bytes() / 2 ** 20 + 3)
    yield budget
    budget.limits = old


def post_upload(url: str, client: str, name: str, data: bytes) -> httpx.Response:
    return httpx.post(url + "gradio_api/upload", files={"files": (name, data, "image/png")},
                      headers={"X-Forwarded-For": client}, timeout=60)


def test_upload_bytes_are_bounded_per_client_and_in_all(world, small_budget):
    url, folder = world["served"].app.local_url, world["served"].upload_dir
    mb = lambda seed: np.random.default_rng(seed).bytes(int(0.8 * 2 ** 20))  # noqa: E731 - distinct 0.8 MB files
    on_disk = lambda name: any(p.name == name for p in folder.rglob("*"))  # noqa: E731
    a, b, c = "198.51.100.1", "198.51.100.2", "198.51.100.3"
    assert all(post_upload(url, a, f"a{i}.png", mb(i)).status_code == 200 for i in range(2))
    r = post_upload(url, a, "a2.png", mb(2))  # 2.4 MB for client a: over its 2 MB
    assert r.status_code == 413 and "this visitor's limit of 2 MB of uploads in flight and kept" in r.text, r.text
    assert not on_disk("a2.png")
    assert post_upload(url, b, "b0.png", mb(10)).status_code == 200  # another client has its own 2 MB
    r = post_upload(url, c, "c0.png", mb(20))  # 3.2 MB in all: over the server's limit
    assert r.status_code == 413 and "uploads from all visitors, its limit" in r.text, r.text
    assert not on_disk("c0.png")
    from gradio.route_utils import delete_files_created_by_app
    delete_files_created_by_app(world["served"].app, 0)  # gradio's cache cleaner, as its schedule calls it
    assert post_upload(url, a, "a3.png", mb(3)).status_code == 200  # deleted uploads stop counting
    assert post_upload(url, c, "c1.png", mb(21)).status_code == 200


def test_bytes_in_flight_count_before_the_body_arrives_and_chunked_bodies_are_refused(world, small_budget):
    """A body is admitted by its Content-Length before a byte of it is read. A request that sent its headers
    and half its body holds its client's budget: a second one that would not fit beside it is refused at once.
    The known point of progress is the ledger itself (the server runs in this process), not a timer."""
    import socket
    import urllib.parse
    url = world["served"].app.local_url
    host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
    client = "198.51.100.9"
    boundary = "dfdetboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"slow.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + b"\0" * (1536 * 1024) + f"\r\n--{boundary}--\r\n".encode()
    head = (f"POST /gradio_api/upload HTTP/1.1\r\nHost: {host}:{port}\r\nX-Forwarded-For: {client}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection((host, port), timeout=60) as slow:
        slow.sendall(head + body[:1000])
        with deadline(60):
            while small_budget.in_flight.get(client, 0) != len(body):
                time.sleep(0.05)
        r = post_upload(url, client, "second.png", b"\0" * (700 * 1024))  # 1.5 + 0.7 MB > 2 MB
        assert r.status_code == 413 and "this visitor's limit" in r.text
        slow.sendall(body[1000:])
        answer = b""
        with deadline(60):
            while b"slow.png" not in answer and (chunk := slow.recv(65536)):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200") and b"slow.png" in answer, answer[:300]
    with deadline(60):  # the answer is out; the request's bytes are released right after
        while small_budget.in_flight.get(client, 0):
            time.sleep(0.05)
    r = httpx.post(url + "gradio_api/upload", content=iter([b"--x--\r\n"]),
                   headers={"Content-Type": "multipart/form-data; boundary=x"}, timeout=30)  # chunked: no length
    assert r.status_code == 411 and "Content-Length" in r.text


def test_an_upload_cut_off_midway_leaves_no_file(world, small_budget):
    """gradio's upload parser deletes its temp file only on a parse error; a client that hangs up leaves it.
    The gate removes such orphans once no upload is in flight."""
    import socket
    import urllib.parse
    url = world["served"].app.local_url
    host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
    folder = world["served"].upload_dir
    before = {p for p in folder.iterdir() if p.is_file()}
    head = (f"POST /gradio_api/upload HTTP/1.1\r\nHost: {host}:{port}\r\nX-Forwarded-For: 198.51.100.7\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 1000000\r\n\r\n"
            "--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"cut.png\"\r\n\r\n").encode()
    with socket.create_connection((host, port), timeout=60) as cut:
        cut.sendall(head + b"\0" * 300_000)
        with deadline(60):  # the parser has written part of the file: its temp file exists
            while not [p for p in folder.iterdir() if p.is_file() and p not in before]:
                time.sleep(0.05)
    with deadline(60):  # the hang-up reaches the server, the request ends, the orphan goes
        while small_budget.uploads_in_flight or small_budget.in_flight.get("198.51.100.7"):
            time.sleep(0.05)
    assert {p for p in folder.iterdir() if p.is_file()} <= before
