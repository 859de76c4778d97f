"""Shareable links: every query parameter checked before it reaches the page.

A link is input from outside: `?tab=roc&threshold=7`, a NaN, a Radio value that is not a choice or a
run that does not exist must never raise, and never be echoed as HTML. `read_link` keeps what is
valid, clamps a number that is merely out of range, and drops the rest, saying so in one plain-text
note per parameter (the page escapes it). The UI maps the values it returns onto its components.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

from .store import COLOR_BY, Store

TABS = ("compare", "hypersphere", "roc", "errors", "learn", "about")
LEVELS = ("frame", "video")
DIMS = ("2-D", "3-D")
# the parameters each tab reads from a link (anything else is ignored with a note)
TAB_KEYS = {"compare": ("row",), "hypersphere": ("run", "method", "a", "b", "dims", "color"),
            "roc": ("run", "methods", "datasets", "level", "threshold", "own"),
            "errors": ("run", "method", "dataset", "threshold"), "about": ()}
ECHO = 40  # characters of a bad value quoted back in a note
OWN_READER = ("learn",)  # tabs whose view reads and checks its own link parameters


@dataclass
class Link:
    tab: str | None = None  # a valid tab id, or None (a plain visit, or a bad tab)
    values: dict = field(default_factory=dict)  # parameter -> checked value (only valid ones)
    notes: list[str] = field(default_factory=list)  # plain text, one per parameter clamped or ignored


def quoted(value: str) -> str:
    v = str(value)
    return repr(v if len(v) <= ECHO else v[:ECHO] + "…")


def read_link(query: Mapping[str, str], store: Store, tabs: Mapping[str, tuple] | None = None) -> Link:
    """The valid part of a link's query for `store`'s runs; never raises. `tabs`: tab id -> the parameters
    its view reads (default TAB_KEYS); a parameter without a check in CHECKS is never passed on."""
    tabs = TAB_KEYS if tabs is None else tabs
    link = Link()
    q = {str(k): str(v) for k, v in dict(query or {}).items()}
    tab = q.pop("tab", None)
    if tab is None:
        if q:
            link.notes.append("link: no tab named; its parameters were ignored")
        return link
    if tab not in tabs:
        link.notes.append(f"link: ignored tab {quoted(tab)} (tabs: {', '.join(tabs)})")
        return link
    link.tab = tab
    if tab in OWN_READER:
        return link  # that view checks its own parameters (dfdet.learn.link) and notes the bad ones itself
    keys = tuple(k for k in tabs[tab] if k == "run" or k in CHECKS)
    for k in q:
        if k not in keys:
            link.notes.append(f"link: ignored {quoted(k)} (the {tab} view reads: {', '.join(keys) or 'nothing'})")
    run = _run(q, store, link) if "run" in keys else None
    for k in keys:
        if k in q and k != "run":
            _one(k, q[k], run, store, link)
    _own_or_threshold(link, keys)
    return link


def _own_or_threshold(link: Link, keys) -> None:
    """A view with per-method thresholds (`own`): a link's threshold means one for all, unless it asks for own."""
    if "own" not in keys or "threshold" not in link.values:
        return
    if link.values.get("own"):
        link.notes.append(f"link: ignored threshold {link.values.pop('threshold'):g} (own=1 puts each method at "
                          "its own validation threshold)")
    else:
        link.values["own"] = False


def _run(q: dict, store: Store, link: Link):
    """The link's run if the store has it, else the first run (what the page shows by default)."""
    name = q.get("run")
    if name is not None:
        if name in store.runs:
            link.values["run"] = name
            return store.runs[name]
        link.notes.append(f"link: ignored run {quoted(name)} (runs here: {', '.join(store.runs) or 'none yet'})")
    return next(iter(store.runs.values()), None)


def _one(key: str, raw: str, run, store: Store, link: Link) -> None:
    value, note = CHECKS[key](raw, run, store)
    if value is not None:
        link.values[key] = value
    if note:
        link.notes.append(f"link: {note}")


def _threshold(raw, run, store):
    try:
        t = float(raw)
    except ValueError:
        return None, f"ignored threshold {quoted(raw)} (a number between 0 and 1)"
    if not math.isfinite(t):
        return None, f"ignored threshold {quoted(raw)} (a number between 0 and 1)"
    if 0.0 <= t <= 1.0:
        return t, ""
    c = min(1.0, max(0.0, t))
    return c, f"threshold {quoted(raw)} is outside 0 to 1; using {c:g}"


def _row_of(raw, n: int | None, what: str, name: str):
    try:
        v = float(raw)
    except ValueError:
        v = float("nan")
    if not math.isfinite(v) or v != int(v) or v < 0:
        return None, f"ignored {name} {quoted(raw)} (a row: a whole number from 0)"
    v = int(v)
    if n is not None and v >= n:
        return None, f"ignored {name} {v} ({what} has rows 0 to {n - 1})"
    return v, ""


def _face_row(key):
    def check(raw, run, store):
        if run is None:
            return None, f"ignored {key} {quoted(raw)} (no run to take it from)"
        return _row_of(raw, len(run.predictions), f"run {run.folder.name}", key)
    return check


def _sample_row(raw, run, store):
    n = len(store.samples) if store.samples is not None else None
    return _row_of(raw, n, "the sample manifest", "row")


def _choice(key, options):
    def check(raw, run, store):
        if raw in options:
            return raw, ""
        return None, f"ignored {key} {quoted(raw)} (one of: {', '.join(options)})"
    return check


def _flag(key):
    def check(raw, run, store):
        v = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}.get(raw.strip().lower())
        return (v, "") if v is not None else (None, f"ignored {key} {quoted(raw)} (1 or 0)")
    return check


def _dims(raw, run, store):
    v = {"2": "2-D", "3": "3-D", "2d": "2-D", "3d": "3-D", "2-d": "2-D", "3-d": "3-D"}.get(raw.strip().lower())
    return (v, "") if v else (None, f"ignored dims {quoted(raw)} (2 or 3)")


def _method(raw, run, store):
    have = store.methods_of(run) if run is not None else []
    if raw in have:
        return raw, ""
    return None, f"ignored method {quoted(raw)} (this run has: {', '.join(have) or 'none'})"


def _datasets_of(run) -> list[str]:
    return sorted(run.predictions["dataset"].astype(str).unique()) if run is not None else []


def _subset(key, options_of):
    """A comma-separated list: the known items kept in the given order, the unknown ones named."""
    def check(raw, run, store):
        have = options_of(run, store)
        items = [x for x in (s.strip() for s in raw.split(",")) if x]
        good = [x for x in dict.fromkeys(items) if x in have]
        bad = [x for x in items if x not in have]
        note = f"ignored {key} {', '.join(quoted(x) for x in bad[:5])} (known: {', '.join(have) or 'none'})" \
            if bad else ""
        return (good or None), note
    return check


def _dataset(raw, run, store):
    have = ["all", *_datasets_of(run)]
    return (raw, "") if raw in have else (None, f"ignored dataset {quoted(raw)} (one of: {', '.join(have)})")


CHECKS = {"threshold": _threshold, "a": _face_row("a"), "b": _face_row("b"), "row": _sample_row,
          "level": _choice("level", LEVELS), "color": _choice("color", COLOR_BY), "dims": _dims,
          "method": _method, "dataset": _dataset, "own": _flag("own"),
          "methods": _subset("methods", lambda run, store: store.methods_of(run) if run is not None else []),
          "datasets": _subset("datasets", lambda run, store: _datasets_of(run))}


def link_query(tab: str, values: Mapping[str, object]) -> dict[str, str]:
    """The query of a view (the inverse of read_link): lists comma-joined, whole numbers without '.0'."""
    q = {"tab": tab}
    own = values.get("own")  # per-method thresholds are the default: a link names only a shared one
    for k, v in values.items():
        if v in (None, "", []) or k == "own" or (k == "threshold" and own is True):
            continue
        if isinstance(v, (list, tuple)):
            v = ",".join(map(str, v))
        elif isinstance(v, float) and k != "threshold":
            v = int(v)
        q[k] = str(v)
    return q
