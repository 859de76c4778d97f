"""Every bad or odd input of tests/corpus.py, through the dashboard API and through the CLI.

Each must get a clear, specific answer (the corpus says which), never a traceback, never a hang,
and the app must go on serving: after each case a real model request is made and must succeed.
Random bytes (hypothesis) check the same promise where a fixed corpus cannot reach.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corpus import CASES, MAX_SECONDS, Case, Corpus, HEADER, _good_rows
from dfdet.errors import DataError
from dfdet.images import MIN_SIDE, open_image
from dfdet.methods import PAPER_METHODS, get_method
from test_reliability_helpers import TINY_ARGS, run_cli, serve

APP_CASES = [c for c in CASES if c.app is not None]
LABELS = [get_method(m).label for m in PAPER_METHODS]


@pytest.fixture(autouse=True)
def _gradio_tmp():
    """One server per module keeps one upload folder (overrides conftest's per-test one)."""
    yield


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, shared) -> Corpus:
    return Corpus(tmp_path_factory.mktemp("corpus"), shared)


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_cfg, shared):
    tmp = tmp_path_factory.mktemp("served")
    mp = pytest.MonkeyPatch()
    mp.setenv("GRADIO_TEMP_DIR", str(tmp / "gradio"))
    mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    s = serve(tmp, tiny_cfg)
    yield s
    s.close()
    mp.undo()


def test_the_corpus_covers_the_issue():
    assert len(CASES) >= 30
    names = {c.name for c in CASES}
    required = {"empty_jpg", "text_as_jpg", "truncated_jpg", "truncated_png", "png_bomb", "huge_20000", "one_pixel",
                "png16", "cmyk_jpg", "rgba_png", "palette_png", "grayscale_jpg", "animated_gif", "webp", "heic", "tiff",
                "no_face", "five_faces", "video_no_face", "video_corrupt", "video_one_frame", "video_long",
                "manifest_missing_files", "manifest_bad_label", "manifest_duplicates", "descriptions_empty"}
    assert required <= names, required - names
    assert len(names) == len(CASES)  # ids are unique


# ---------------------------------------------------------------------------------------------- app
def data_root(case: Case, path: Path, shared: Path) -> Path:
    return path.parent if case.name == "manifest_symlink_out" else shared / "datasets"


def app_answer(served, corpus: Corpus, case: Case) -> tuple[bool, str]:
    """(did the app answer with a result, its note or its error message) for one corpus case."""
    from gradio_client import handle_file
    c = served.client
    path = corpus.path(case)
    try:
        if case.kind in ("image", "video"):
            out = c.submit(handle_file(str(path)), api_name=f"/predict_{case.kind}").result(timeout=MAX_SECONDS)
            return True, out[1]
        s = served.session  # manifests: the sample manifest the app was started with (--manifest/--data-root)
        s.cfg.manifest, s.cfg.data_root = str(path), str(data_root(case, path, corpus.shared))
        s.load_samples()
        source, row, _ = c.submit("any", "any", "any", api_name="/random_face").result(timeout=MAX_SECONDS)
        out = c.submit(source, row, api_name="/predict_sample").result(timeout=MAX_SECONDS)
        return True, out[1]
    except TimeoutError:
        pytest.fail(f"{case.name}: no answer within {MAX_SECONDS} s (hang)")
    except Exception as err:  # noqa: BLE001 - gradio_client's AppError carries the message shown in the UI
        return False, str(err)
    finally:
        if case.kind == "manifest":
            served.session.cfg.manifest = served.session.cfg.data_root = ""
            served.session.load_samples()


def assert_still_serving(served):
    """A real model request right after the case: the app kept working."""
    out = served.client.submit("samples", 0, api_name="/predict_sample").result(timeout=MAX_SECONDS)
    rows = out[2]["data"]
    assert len(rows) == len(PAPER_METHODS) and all(r[2] is not None for r in rows)


@pytest.mark.parametrize("case", APP_CASES, ids=[c.name for c in APP_CASES])
def test_app_answers_every_case_clearly_and_keeps_serving(served, corpus, case):
    answered, text = app_answer(served, corpus, case)
    assert answered == case.app.ok, f"{case.name}: expected {'a result' if case.app.ok else 'a refusal'}, got {text!r}"
    assert case.app.check(text), f"{case.name}: {text!r} does not say {case.app.match!r}"
    assert "Traceback" not in text and not re.match(r"\w+(Error|Exception):", text)  # ours, not a raw exception
    assert str(served.upload_dir) not in text  # messages never show the server's upload paths
    assert_still_serving(served)


# ---------------------------------------------------------------------------------------------- CLI
def cli_argv(case: Case, path: Path, corpus: Corpus, served, tmp: Path) -> list[str]:
    if case.kind == "image":
        return ["predict", str(path), "--checkpoints", str(served.checkpoints), "--methods", *PAPER_METHODS,
                "--align", *TINY_ARGS]
    if case.kind == "video":
        return ["preprocess", str(path), "-o", str(tmp / "crops"), "--workers", "1", "--no-progress", "--frames", "8"]
    train = ["--epochs", "1", "--batch-size", "4", "--out", str(tmp / "ckpt"), *TINY_ARGS]
    if case.kind == "manifest":
        return ["train", "--method", "linear_probe", "--manifest", str(path),
                "--data-root", str(data_root(case, path, corpus.shared)), *train]
    good = tmp / "good.csv"
    good.write_text(HEADER + "\n".join(_good_rows(corpus)) + "\n")
    return ["train", "--method", "textguided_1desc", "--manifest", str(good), "--data-root",
            str(corpus.shared / "datasets"), "--set", f"descriptions={path}", *train]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cli_answers_every_case_clearly(served, corpus, case, tmp_path):
    res = run_cli(cli_argv(case, corpus.path(case), corpus, served, tmp_path), seconds=MAX_SECONDS)
    assert not res.crashed, f"{case.name}: the CLI crashed:\n{res.crashed}"
    assert "Traceback" not in res.text
    if case.cli.ok:
        assert res.rc == 0, f"{case.name}: rc {res.rc}: {res.text[-800:]}"
    else:
        assert res.rc not in (0, -1), f"{case.name}: expected a refusal, got rc {res.rc}: {res.text[-800:]}"
    assert case.cli.check(res.text), f"{case.name}: {res.text[-800:]!r} does not say {case.cli.match!r}"
    if case.kind == "image" and case.cli.ok:
        assert all(label in res.out for label in LABELS)  # every method scored it


# ---------------------------------------------------------------------------------------------- random bytes
SIGNATURES = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"RIFF\x00\x00\x00\x00WEBPVP8 ",
              b"II*\x00", b"MM\x00*"]


def expect_image_or_data_error(path: Path) -> None:
    try:
        im = open_image(path)
    except DataError as err:
        assert str(err) and "Traceback" not in str(err)
        return
    assert im.mode == "RGB" and min(im.size) >= MIN_SIDE


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(head=st.sampled_from(SIGNATURES), body=st.binary(max_size=3000))
def test_random_bytes_with_image_headers_open_or_refuse(tmp_path, head, body):
    p = tmp_path / "x.img"
    p.write_bytes(head + body)
    expect_image_or_data_error(p)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=12),
       cut=st.one_of(st.none(), st.integers(1, 10**6)))
def test_damaged_real_photos_open_or_refuse(tmp_path, corpus, edits, cut):
    """A real JPEG with random bytes overwritten (and maybe cut): decoders see plausible, broken streams."""
    data = bytearray((corpus.shared / "datasets" / "DFDC" / "real").glob("*/*.jpg").__next__().read_bytes())
    for pos, val in edits:
        data[pos % len(data)] = val
    if cut is not None:
        data = data[: cut % len(data)]
    p = tmp_path / "damaged.jpg"
    p.write_bytes(bytes(data))
    expect_image_or_data_error(p)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(head=st.sampled_from(SIGNATURES[:4]), body=st.binary(min_size=1, max_size=600),
       ext=st.sampled_from([".jpg", ".png", ".webp"]))
def test_random_uploads_get_a_message_and_the_app_keeps_serving(served, tmp_path_factory, head, body, ext):
    from gradio_client import handle_file
    p = tmp_path_factory.mktemp("rand") / f"random{ext}"
    p.write_bytes(head + body)
    try:
        served.client.submit(handle_file(str(p)), api_name="/predict_image").result(timeout=MAX_SECONDS)
    except TimeoutError:
        pytest.fail("no answer (hang)")
    except Exception as err:  # noqa: BLE001
        msg = str(err)
        assert re.search(r"random\.\w+: (the file is empty|not an image format|the image is damaged|image too)", msg), msg
        assert "Traceback" not in msg
    assert_still_serving(served)
