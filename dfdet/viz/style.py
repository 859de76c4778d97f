"""One order and one colour per method, everywhere: tables, legends, bars, curves, the sphere's path.

The order is the registry's (dfdet.methods), whatever a checkpoint folder or run column is called;
the colour is fixed by the method's place in the registry, so "LN + Norm" is the same green in
Compare, the ROC browser and the SLERP curve. Datasets get a dash style, never a colour of their own.
"""
from __future__ import annotations

from typing import Callable, Iterable

# Colour-blind-safe (Okabe-Ito), none of them red or blue: those mean "fake" and "real" in the sphere.
METHOD_PALETTE = ("#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#0072B2", "#F0E442", "#000000",
                  "#999999", "#7F3C8D")
DATASET_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def registry_index(method: str) -> int:
    from ..methods import METHODS
    order = list(METHODS)
    return order.index(method) if method in order else len(order)


def method_order(names: Iterable[str], spec_of: Callable[[str], str] = lambda n: n) -> list[str]:
    """`names` in the registry's order; `spec_of` maps a column or folder name to its registry method."""
    return sorted(names, key=lambda n: (registry_index(spec_of(n)), n))


def method_color(method: str) -> str:
    """The method's colour (by registry method name); unknown names share the last colour."""
    return METHOD_PALETTE[min(registry_index(method), len(METHOD_PALETTE) - 1)]


def label_colors() -> dict[str, str]:
    """Registry label -> colour, for figures that only know labels."""
    from ..methods import METHODS
    return {spec.label: method_color(name) for name, spec in METHODS.items()}


def dataset_dash(datasets: list[str], dataset: str) -> str:
    return DATASET_DASHES[sorted(datasets).index(dataset) % len(DATASET_DASHES)] if dataset in datasets else "solid"


def label_color(label: str) -> str:
    """A method's colour by its label (for figures that only know labels); unknown labels share the last colour."""
    return label_colors().get(label, METHOD_PALETTE[-1])


def label_order(labels: Iterable[str]) -> list[str]:
    """Labels in the registry's order (unknown ones last, by name)."""
    from ..methods import METHODS
    rank = {spec.label: i for i, spec in enumerate(METHODS.values())}
    return sorted(labels, key=lambda lab: (rank.get(lab, len(rank)), lab))
