"""Named recipe presets: TrainConfig values taken from a published configuration.

`dfdet train --preset NAME` applies a preset over the method's defaults; --config and --set still
override it. The resolved values (not the preset name) are what the checkpoint records.
"""
from __future__ import annotations

from .errors import DataError

# name -> (values, where they come from)
PRESETS: dict[str, tuple[dict, str]] = {
    "gend": ({"align_weight": 0.1, "uniform_weight": 0.5},
             "GenD (yermandy/GenD src/exp/wacv_rebuttal.py:46, experiment 'wacv-LN+L2+UnAl': "
             "Loss(ce_labels=1.0, uniformity=0.5, alignment_labels=0.1))"),
}


def preset_values(name: str) -> dict:
    try:
        return dict(PRESETS[name][0])
    except KeyError:
        raise DataError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None
