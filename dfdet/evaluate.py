"""Evaluation: every available method on a manifest split -> a run folder (see dfdet.artifacts)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import __version__
from .artifacts import PRED_PREFIX, write_run
from .backbone import load_clip
from .checkpoint import file_sha256
from .config import BackboneConfig
from .data.dataset import FaceDataset
from .data.manifest import default_data_root, read_manifest
from .errors import DataError, DfdetError
from .inference import DetectorBank
from .metrics import metric_table


@dataclass
class EvalConfig:
    manifest: str = ""  # manifest CSV to evaluate
    data_root: str = ""  # folder the manifest's paths are relative to (default: the manifest's folder)
    split: str = "test"  # manifest split to evaluate; "all" = every row
    datasets: list[str] = field(default_factory=list)  # restrict to these datasets (empty = all)
    checkpoints: str = "checkpoints"  # folder of checkpoint folders (one per method)
    methods: list[str] = field(default_factory=list)  # registry names to include (empty = all)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    batch_size: int = 64  # images per forward pass
    threshold: float = 0.5  # p_fake threshold for accuracy/precision/recall/F1
    device: str = "cpu"  # cpu or cuda
    out: str = "runs/eval"  # run folder to write


def evaluate(cfg: EvalConfig, bank: DetectorBank | None = None) -> Path:
    root = Path(cfg.data_root) if cfg.data_root else default_data_root(cfg.manifest)
    df = read_manifest(cfg.manifest, root)
    if cfg.split != "all":
        df = df[df["split"] == cfg.split]
    if cfg.datasets:
        df = df[df["dataset"].isin(cfg.datasets)]
    df = df.reset_index(drop=True)
    if df.empty:
        raise DataError(f"{cfg.manifest}: no rows for split {cfg.split!r}"
                        f"{' and datasets ' + str(cfg.datasets) if cfg.datasets else ''}")
    if bank is None:
        bank = DetectorBank(load_clip(cfg.backbone, cfg.device), cfg.checkpoints, cfg.methods or None, cfg.device)
    names = bank.ready
    if not names:
        problems = "; ".join(f"{n}: {e.message}" for n, e in bank.entries.items())
        raise DfdetError(f"no method is ready to evaluate ({problems})")
    loader = torch.utils.data.DataLoader(FaceDataset(df, root, bank.clip.preprocess), batch_size=cfg.batch_size)
    scores = {n: [] for n in names}
    feats = {n: [] for n in names}
    t0 = time.time()
    for pixels, _, _ in tqdm(loader, desc="evaluate", disable=None):
        pixels = pixels.to(bank.device)
        for n in names:
            p, f = bank.score_and_embed(pixels, n)
            scores[n].append(p)
            feats[n].append(f)
    preds = df[["path", "dataset", "source", "video", "label", "split"]].copy()
    embeddings = {}
    for n in names:
        preds[PRED_PREFIX + n] = np.concatenate(scores[n]).round(6)
        f = np.concatenate(feats[n])
        norm = np.linalg.norm(f, axis=1)
        embeddings[n] = (f / np.maximum(norm, 1e-12)[:, None], norm)
    metrics, roc = metric_table(preds, names, PRED_PREFIX, cfg.threshold)
    info = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "code_version": __version__,
        "backbone": {"model": bank.clip.config.model, "weights": bank.clip.weights_id},
        "demo": bank.demo, "manifest": str(cfg.manifest), "manifest_sha256": file_sha256(cfg.manifest),
        "data_root": str(Path(root).resolve()), "split": cfg.split, "threshold": cfg.threshold,
        "seconds": round(time.time() - t0, 1),
        "methods": {n: {"method": bank.entries[n].spec.name, "label": bank.entries[n].label,
                        "trainable_params": bank.entries[n].trainable_params,
                        "checkpoint": str(bank.entries[n].folder) if bank.entries[n].folder else None}
                    for n in names},
        "not_evaluated": {n: e.message for n, e in bank.entries.items() if e.status != "ready"},
    }
    return write_run(cfg.out, info, preds, metrics, roc, embeddings)


def summary_table(metrics: pd.DataFrame, level: str = "frame") -> pd.DataFrame:
    """AUROC per method (rows) x dataset (columns): the shape of the paper's tables."""
    m = metrics[(metrics["source"] == "*") & (metrics["level"] == level)]
    return m.pivot(index="method", columns="dataset", values="auroc")
