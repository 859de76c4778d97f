"""Named recipe presets: TrainConfig values taken from a published configuration.

`dfdet train --preset NAME` applies a preset over the method's defaults; --config and --set still
override it. The resolved values (not the preset name) are what the checkpoint records.

"gend" is GenD's own run (yermandy/GenD @ e03532d), the experiment `wacv-LN+L2+UnAl` as run_exp.py
composes it: run_exp.py:54-81 (get_default_train_config: batch 128, lr 3e-4, min_lr 1e-5, wd 0, one
warm-up epoch) < src/exp/wacv_rebuttal.py:206-213 (cyclic schedule, 10-epoch cycles, 30 epochs) <
wacv_rebuttal.py:41-48 (LN tuning, L2-normalised linear head, CE 1 + uniformity 0.5 + alignment 0.1).
Its schedule is src/model/GenD.py:329-345, its augmentation src/dataset/augmentations.py with the
defaults of src/config.py:107-121 (blur on 10% of images, kernel 7), and it has no SLERP. It validates
on the whole validation list (limit_val_files unset) and keeps the best video-level mAP (config.py:202).
"""
from __future__ import annotations

from .errors import DataError

# name -> (values, the method the preset is for, where they come from)
PRESETS: dict[str, tuple[dict, str, str]] = {
    "gend": ({"batch_size": 128, "epochs": 30, "lr": 3e-4, "min_lr": 1e-5, "weight_decay": 0.0,
              "betas": (0.9, 0.999), "lr_schedule": "cyclic", "cycle_epochs": 10.0, "warmup_epochs": 1.0,
              "augment": "gend", "align_weight": 0.1, "uniform_weight": 0.5, "val_limit": 0,
              "select_metric": "video_map_macro"},
             "ln_norm",
             "GenD (yermandy/GenD @ e03532d: run_exp.py:54-81, src/exp/wacv_rebuttal.py:41-48,206-213, "
             "src/model/GenD.py:279-356, src/dataset/augmentations.py:6-69, src/config.py:107-121)"),
}


def preset_values(name: str, method: str | None = None) -> dict:
    """The preset's TrainConfig values; refuses a method other than the one the preset describes."""
    try:
        values, for_method, _ = PRESETS[name]
    except KeyError:
        raise DataError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None
    if method is not None and method != for_method:
        raise DataError(f"preset {name!r} is the recipe of {for_method} (LN tuning, L2-normalised head, no SLERP); "
                        f"train it with --method {for_method}, not {method}")
    return dict(values)
