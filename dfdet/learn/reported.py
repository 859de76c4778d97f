"""The papers' reported numbers, bundled as data (reported.json) with their citations, and set beside what a
run measured on the same dataset. Reported and measured are never mixed in one column."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import pandas as pd

from ..artifacts import Run

DATA_FILE = Path(__file__).with_name("reported.json")
NOT_STATED = "not stated"  # the level of a record whose source does not say frame or video


@functools.lru_cache(maxsize=1)
def load() -> dict:
    return json.loads(DATA_FILE.read_text())


def records() -> pd.DataFrame:
    """Every bundled number: source, table, method, dataset, metric, level (frame, video, or "not stated" where
    the source does not say), value, unit."""
    data = load()
    rows = [{"source": t["source"], "table": t["id"], "level": NOT_STATED, **r}
            for t in data["tables"] for r in t["records"]]
    return pd.DataFrame(rows, columns=["source", "table", "method", "dataset", "metric", "level", "value", "unit"])


def missing() -> list[tuple[str, str]]:
    """(table title, why it holds no numbers) for every table not bundled."""
    return [(t["title"], t["missing"]) for t in load()["tables"] if not t["records"]]


def citation_markdown() -> str:
    data = load()
    lines = [f"- **{k}**: {v['citation']} [{v['url']}]({v['url']})" for k, v in data["sources"].items()]
    lines += [f"- *{title}*: {why}" for title, why in missing()]
    for t in data["tables"]:
        if t["records"] and t.get("provenance"):
            lines.append(f"- *{t['title']}*: {t['provenance']}")
    return "**Reported** numbers are the sources' own; **measured here** are this run's.\n\n" + "\n".join(lines)


def beside_measured(run: Run | None) -> pd.DataFrame:
    """Each reported number, with this run's measured value where the run has that method and dataset."""
    rep = records()
    names = load()["dataset_names"]
    out = []
    for _, r in rep.iterrows():
        row = {"source": r["source"], "method": r["method"], "dataset": r["dataset"], "metric": r["metric"],
               "level": r["level"], "reported": f"{r['value']:.2f}{r['unit']}", "measured here (frame)": "—",
               "measured here (video)": "—"}
        if run is not None and not run.metrics.empty:
            ds = names.get(r["dataset"], r["dataset"])
            m = run.metrics
            sel = m[(m["method"] == r["method"]) & (m["dataset"] == ds) & (m["source"] == "*")]
            for level in ("frame", "video"):
                v = sel[sel["level"] == level]
                if len(v) and r["metric"] in v and pd.notna(v[r["metric"]].iloc[0]):
                    scale = 100.0 if r["unit"] == "%" else 1.0
                    row[f"measured here ({level})"] = f"{scale * float(v[r['metric']].iloc[0]):.2f}{r['unit']}" + (
                        " (DEMO)" if run.info.get("demo") else "")
        out.append(row)
    return pd.DataFrame(out)
