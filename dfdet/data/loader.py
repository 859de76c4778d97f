"""DataLoader settings for the GPU path: worker processes decode JPEGs while the GPU runs the model.

Workers, pinned host memory and prefetch keep the GPU fed; on CPU the model itself is the bottleneck
and workers would only take cores from it, so "auto" means none there.
"""
from __future__ import annotations

import os

import torch


def auto_workers(device: str | torch.device, world_size: int = 1) -> int:
    """Worker processes per rank: none on CPU; on CUDA the node's cores shared by its ranks, at most 8."""
    if torch.device(device).type != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cores // max(1, world_size) - 1))


def loader_kwargs(device: str | torch.device, workers: int = -1, world_size: int = 1) -> dict:
    """DataLoader keyword arguments for `device`; workers=-1 picks auto_workers."""
    n = auto_workers(device, world_size) if workers < 0 else workers
    kw: dict = {"num_workers": n, "pin_memory": torch.device(device).type == "cuda"}
    if n > 0:
        kw["prefetch_factor"] = 4  # batches each worker keeps ready
    return kw
