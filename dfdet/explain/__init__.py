"""Why a method says "fake": saliency maps over the ViT patch grid, and how faithful they are.

Maps come from each method's own model (its LayerNorm overlay and its head), so two methods on
the same face give two different maps, and their difference shows what tuning changed.

- saliency: Grad-CAM (through the maintained `grad-cam` package), Chefer et al.'s gradient-weighted
  relevance and attention rollout (written here: no maintained package implements them for
  open_clip ViTs).
- faithfulness: deletion / insertion curves and their areas, against random patch orders.
- cache: maps on disk per (run, row, method, kind).
- render: a map over the face crop, as an image.
"""
from .saliency import KINDS, difference_map, saliency_maps  # noqa: F401
