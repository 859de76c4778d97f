"""Shareable links are input from outside: every query parameter is checked before it reaches a component
(dfdet.viz.links.read_link). A bad value is clamped or ignored with a plain-text note; nothing raises."""
from __future__ import annotations

import pytest

from dfdet.viz.links import link_query, read_link
from dfdet.viz.session import AppConfig, Session

from test_app_helpers import make_synthetic_run


@pytest.fixture()
def store(tmp_path):
    make_synthetic_run(tmp_path / "runs" / "synth", n=12)
    return Session(AppConfig(runs=str(tmp_path / "runs"), cache_dir=str(tmp_path / "c"), demo="off"),
                   load_models=False).store


def test_a_valid_link_passes_whole(store):
    link = read_link({"tab": "hypersphere", "run": "synth", "method": "ln_norm", "a": "3", "b": "7", "dims": "3",
                      "color": "dataset"}, store)
    assert link.tab == "hypersphere" and not link.notes
    assert link.values == {"run": "synth", "method": "ln_norm", "a": 3, "b": 7, "dims": "3-D", "color": "dataset"}
    link = read_link({"tab": "roc", "run": "synth", "methods": "ln_norm,linear_probe", "datasets": "DS1",
                      "level": "video", "threshold": "0.31"}, store)
    assert link.values == {"run": "synth", "methods": ["ln_norm", "linear_probe"], "datasets": ["DS1"],
                           "level": "video", "threshold": 0.31, "own": False} and not link.notes
    # the page's "Copy link" writes what read_link reads back
    assert read_link(link_query("roc", link.values), store).values == link.values
    assert read_link({"tab": "roc", "evil": "1"}, store, {"roc": ("run", "evil")}).notes  # no check: never passed on
    errors = {"run": "synth", "method": "linear_probe", "dataset": "DS0", "threshold": 0.4}
    assert read_link(link_query("errors", errors), store).values == errors


@pytest.mark.parametrize("raw, value, note", [("7", 1.0, "outside 0 to 1; using 1"), ("-3", 0.0, "using 0"),
                                              ("nan", None, "ignored threshold 'nan'"),
                                              ("inf", None, "ignored threshold"), ("abc", None, "ignored threshold")])
def test_thresholds_are_clamped_or_ignored_with_a_note(store, raw, value, note):
    link = read_link({"tab": "roc", "threshold": raw}, store)
    assert link.values.get("threshold") == value
    assert len(link.notes) == 1 and note in link.notes[0]


def test_bad_choices_rows_runs_and_methods_are_ignored_with_a_note(store):
    evil = "<img src=x onerror=alert(1)><a href='http://evil'>login</a>"
    link = read_link({"tab": "roc", "level": evil, "run": "nope", "methods": "ln_norm,xx", "datasets": "DS9"}, store)
    assert link.tab == "roc" and link.values == {"methods": ["ln_norm"]}
    text = " ".join(link.notes)
    assert "ignored level" in text and "ignored run 'nope'" in text and "'xx'" in text and "'DS9'" in text
    assert evil not in text  # quoted and cut, and the page escapes it (ui.page.link_note)
    link = read_link({"tab": "hypersphere", "color": evil, "dims": "9", "method": "zz", "a": "3.5", "b": "99",
                      "row": "1"}, store)
    assert link.values == {} and len(link.notes) == 6  # row: not a hypersphere parameter
    assert read_link({"tab": "nowhere", "a": "1"}, store).tab is None
    assert read_link({"tab": "compare", "row": "-1"}, store).values == {}


def test_a_roc_link_with_a_threshold_means_one_for_all_and_without_one_each_methods_own(store):
    assert "own" not in read_link({"tab": "roc", "run": "synth"}, store).values  # the page's default: own
    assert read_link({"tab": "roc", "threshold": "0.3"}, store).values == {"threshold": 0.3, "own": False}
    link = read_link({"tab": "roc", "threshold": "0.3", "own": "1"}, store)
    assert link.values == {"own": True} and "ignored threshold 0.3" in link.notes[0]
    link = read_link({"tab": "roc", "own": "maybe"}, store)
    assert link.values == {} and "ignored own 'maybe'" in link.notes[0]
    # Copy link: per-method thresholds are the default, so the link names no threshold; a shared one is named
    assert link_query("roc", {"run": "synth", "threshold": 0.5, "own": True}) == {"tab": "roc", "run": "synth"}
    assert link_query("roc", {"threshold": 0.42, "own": False}) == {"tab": "roc", "threshold": "0.42"}


def test_the_page_escapes_a_links_note():
    from ui.page import link_note
    html = link_note(["link: ignored level '<img src=x>'"])
    assert "<img" not in html and "&lt;img src=x&gt;" in html
    assert link_note([]) == ""


def test_a_learn_link_opens_its_tab_and_leaves_its_parameters_to_the_learn_view(store):
    link = read_link({"tab": "learn", "run": "demo", "a": "3", "t": "0.4"}, store,
                     {"compare": ("row",), "learn": ()})
    assert link.tab == "learn" and link.notes == []  # no "ignored tab" / "ignored 'a'" from the page's reader
