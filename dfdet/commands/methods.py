"""List the registered methods: name, label, what they train, and their description."""
from __future__ import annotations

from ..methods import METHODS


def add_arguments(p) -> None:
    p.add_argument("--family", default=None, help="only this family (ln or text)")


def run(args) -> int:
    for s in METHODS.values():
        if args.family and s.family != args.family:
            continue
        print(f"{s.name:<22} {s.label:<22} trains={s.trains:<10} {s.description}")
    return 0
