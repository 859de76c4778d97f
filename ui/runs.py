"""Choice lists that follow the runs the store holds (the demo and Hub runs appear after start)."""
from __future__ import annotations

from dfdet.methods import PAPER_METHODS
from dfdet.viz.roc import method_label


def run_names(session) -> list[tuple[str, str]]:
    store = session.store
    return [(store.run_label(n), n) for n in store.runs]


def first_run(session) -> str | None:
    return next(iter(session.store.runs), None)


def run_methods(session, name: str | None) -> list[tuple[str, str]]:
    """(label, column) of a run's methods, in the one order every view uses."""
    store = session.store
    if not name or name not in store.runs:
        return []
    run = store.runs[name]
    return [(method_label(run, m), m) for m in store.methods_of(run)]


def default_method(methods: list[tuple[str, str]]) -> str | None:
    """The most complete paper method the run has (LN + Norm + SLERP), else its first."""
    names = [m for _, m in methods]
    return next((m for m in reversed(PAPER_METHODS) if m in names), names[0] if names else None)
