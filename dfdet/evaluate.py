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
from .calibration import Calibration, add_operating_metrics
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
    device: str = "cpu"  # cpu or cuda (under torchrun: cuda:<LOCAL_RANK>)
    out: str = "runs/eval"  # run folder to write
    workers: int = -1  # DataLoader worker processes per rank (-1 = auto: 0 on CPU, up to 8 on CUDA)
    runtime: str = "torch-fp32"  # who runs the frozen backbone (dfdet.runtime); "auto" = the CPU default


def evaluate(cfg: EvalConfig, bank: DetectorBank | None = None) -> Path:
    """Under torchrun each rank scores its shard of whole batches; rank 0 gathers them in manifest order
    and writes the run, so the run folder is the one a single process writes."""
    from .data.loader import loader_kwargs
    from .distributed import barrier, gather_rows, init, shard
    w, device = init(cfg.device)
    check_run_target(Path(cfg.out))  # before any work: a refusal costs nothing
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
        from .runtime import describe, resolve_runtime
        runtime = resolve_runtime(cfg.runtime, device, cfg.backbone.model)
        if w.main:
            print(describe(runtime))
        bank = DetectorBank(load_clip(cfg.backbone, device), cfg.checkpoints, cfg.methods or None, device,
                            runtime=runtime, progress=print)
    names = bank.ready
    if not names:
        problems = "; ".join(f"{n}: {e.message}" for n, e in bank.entries.items())
        raise DfdetError(f"no method is ready to evaluate ({problems})")
    mine = torch.utils.data.Subset(FaceDataset(df, root, bank.clip.preprocess), shard(len(df), cfg.batch_size, w))
    loader = torch.utils.data.DataLoader(mine, batch_size=cfg.batch_size,
                                         **loader_kwargs(bank.device, cfg.workers, w.size))
    scores = {n: [np.zeros(0, np.float32)] for n in names}
    feats = {n: [np.zeros((0, 0), np.float32)] for n in names}
    t0 = time.time()
    for pixels, _, _ in tqdm(loader, desc="evaluate", disable=None if w.main else True):
        pixels = pixels.to(bank.device, non_blocking=True)
        for n, (p, f) in bank.score_and_embed_all(pixels, names).items():  # LN methods in one forward
            scores[n].append(p)
            feats[n].append(f)
    scores = {n: gather_rows(np.concatenate(v[1:] or v[:1])) for n, v in scores.items()}
    feats = {n: gather_rows(np.concatenate(v[1:] or v[:1])) for n, v in feats.items()}
    if not w.main:
        barrier()  # returns once rank 0 has written the run
        return Path(cfg.out)
    preds = df[["path", "dataset", "source", "video", "label", "split"]].copy()
    embeddings = {}
    for n in names:
        preds[PRED_PREFIX + n] = scores[n].round(6)
        f = feats[n]
        norm = np.linalg.norm(f, axis=1)
        embeddings[n] = (f / np.maximum(norm, 1e-12)[:, None], norm)
    metrics, roc = metric_table(preds, names, PRED_PREFIX, cfg.threshold)
    add_operating_metrics(metrics, roc, preds, {n: Calibration.from_meta(bank.entries[n].meta) for n in names},
                          PRED_PREFIX)  # TPR at 1%/5% FPR, ECE, reliability, drift of each method's val threshold
    info = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "code_version": __version__,
        "backbone": {"model": bank.clip.config.model, "weights": bank.clip.weights_id},
        "runtime": getattr(bank, "runtime", "torch-fp32"),
        "demo": bank.demo, "manifest": str(cfg.manifest), "manifest_sha256": file_sha256(cfg.manifest),
        "data_root": str(Path(root).resolve()), "split": cfg.split, "threshold": cfg.threshold,
        "seconds": round(time.time() - t0, 1), "processes": w.size,
        "methods": {n: {"method": bank.entries[n].spec.name, "label": bank.entries[n].label,
                        "trainable_params": bank.entries[n].trainable_params,
                        "checkpoint": str(bank.entries[n].folder) if bank.entries[n].folder else None}
                    for n in names},
        "not_evaluated": {n: e.message for n, e in bank.entries.items() if e.status != "ready"},
    }
    run_dir = place_run(Path(cfg.out), info, preds, metrics, roc, embeddings)
    barrier()
    return run_dir


RUN_ENTRIES = {"run.json", "predictions.csv", "metrics.json", "roc.json", "embeddings", "projections", ".hub_repo"}


def check_run_target(out: Path) -> None:
    """A run is written into `out` whole, replacing what is there: only ever an earlier run (or nothing)."""
    if not out.is_dir():
        if out.exists():
            raise DataError(f"--out {out} is a file, not a run folder; choose another --out")
        return
    other = sorted(p.name for p in out.iterdir() if p.name not in RUN_ENTRIES and not p.name.endswith(".tmp"))
    if other:
        raise DataError(f"--out {out} holds files that are not a dfdet run ({', '.join(other[:3])}); a run replaces "
                        "its folder whole, so choose an empty or new --out")


def place_run(out: Path, info: dict, preds, metrics, roc, embeddings) -> Path:
    """Write the run in a hidden staging folder beside `out` and swap it in whole (dfdet.swap): a kill or a full
    disk leaves the earlier run as it was, never a mix of two runs."""
    import os
    import secrets
    import shutil
    from .swap import swap_folder
    check_run_target(out)
    stage = out.parent / f".{out.name}.eval-{os.getpid()}-{secrets.token_hex(4)}"
    stage.mkdir(parents=True)
    try:
        write_run(stage, info, preds, metrics, roc, embeddings)
        return swap_folder(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def summary_table(metrics: pd.DataFrame, level: str = "frame") -> pd.DataFrame:
    """AUROC per method (rows) x dataset (columns): the shape of the paper's tables."""
    m = metrics[(metrics["source"] == "*") & (metrics["level"] == level)]
    return m.pivot(index="method", columns="dataset", values="auroc")
