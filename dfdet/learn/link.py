"""Deep links into the Learn view (`?tab=learn&run=demo&method=ln_norm&a=3&b=17&t=0.4&row=5&m2=ln_tuning`).

Every parameter is outside input: a value that is merely out of range is clamped, anything else is
dropped, and each gets one plain-text note (the page escapes it; a value is never rendered as HTML)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

from ..methods import METHODS

KEYS = ("run", "method", "m2", "a", "b", "row", "t", "stack")
ECHO = 40


@dataclass
class LearnLink:
    values: dict = field(default_factory=dict)  # parameter -> checked value
    notes: list[str] = field(default_factory=list)


def _q(v: str) -> str:
    return repr(v if len(v) <= ECHO else v[:ECHO] + "…")


def read(query: Mapping[str, str], runs: Mapping[str, object]) -> LearnLink:
    """The valid Learn parameters of a link; `runs` maps run names to loaded runs (with .methods, .predictions)."""
    link = LearnLink()
    q = {str(k): str(v) for k, v in dict(query or {}).items() if k != "tab"}
    for k in q:
        if k not in KEYS:
            link.notes.append(f"link: ignored {_q(k)} (the Learn view reads: {', '.join(KEYS)})")
    run = None
    if "run" in q:
        if q["run"] in runs:
            run = runs[q["run"]]
            link.values["run"] = q["run"]
        else:
            link.notes.append(f"link: no run {_q(q['run'])}; showing the first run")
    if "stack" in q:
        if q["stack"] in METHODS:
            link.values["stack"] = q["stack"]
        else:
            link.notes.append(f"link: ignored stack {_q(q['stack'])} (not a registered method)")
    for k in ("method", "m2"):
        if k in q:
            if run is not None and q[k] in run.methods:
                link.values[k] = q[k]
            else:
                link.notes.append(f"link: ignored {k} {_q(q[k])} (not a method of the run)")
    n = len(run.predictions) if run is not None else None
    for k in ("a", "b", "row"):
        if k in q:
            _row(k, q[k], n, link)
    if "t" in q:
        try:
            t = float(q["t"])
        except ValueError:
            t = math.nan
        if math.isnan(t):
            link.notes.append(f"link: ignored t {_q(q['t'])} (a number from 0 to 1)")
        else:
            link.values["t"] = min(1.0, max(0.0, t))
            if link.values["t"] != t:
                link.notes.append(f"link: t {_q(q['t'])} clamped to {link.values['t']:g}")
    return link


def query(run=None, method=None, m2=None, a=None, b=None, row=None, t=None, stack=None) -> str:
    """The query string of a Learn selection (the inverse of `read`): empty values are left out."""
    from urllib.parse import urlencode
    q = {"tab": "learn"}
    for k, v in (("run", run), ("method", method), ("m2", m2), ("a", a), ("b", b), ("row", row), ("t", t),
                 ("stack", stack)):
        if v in (None, ""):
            continue
        if k in ("a", "b", "row"):
            v = int(v)
        elif k == "t":
            v = f"{float(v):g}"
        q[k] = v
    return urlencode(q)


def _row(k: str, v: str, n: int | None, link: LearnLink) -> None:
    try:
        r = int(v)
    except ValueError:
        link.notes.append(f"link: ignored {k} {_q(v)} (a row number)")
        return
    if n is None:
        link.notes.append(f"link: ignored {k} (no valid run named)")
        return
    c = min(max(r, 0), n - 1)
    if c != r:
        link.notes.append(f"link: {k} {r} clamped to {c} (the run has rows 0–{n - 1})")
    link.values[k] = c
