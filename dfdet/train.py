"""Training: the paper's recipe (AdamW 8e-5 -> 5e-5 cosine, wd 0, batch 128, 10 epochs, seed 42).

The best epoch is chosen on the validation split only. Training images get the paper's
augmentation (dfdet.data.augment; `augment=none` turns it off). With augmentation the linear probe
runs the frozen backbone on fresh augmented images every epoch, as the paper does; only with
`augment=none` are its frozen features computed once and cached (the fast option, not the paper's
recipe). Families other than "ln" (the text-guided methods) register their own trainer in TRAINERS.

Interrupted runs resume: after every epoch the whole training state (trainable tensors, AdamW
moments, best-so-far, RNG states) is written atomically to <out>/resume.safetensors; the same
command re-run with the same settings continues after the last finished epoch and ends with the
checkpoint an uninterrupted run would write. The file is removed once the checkpoint is saved.

Data parallel (dfdet.distributed): under `torchrun --nproc-per-node N` each process takes 1/N of every
global batch through a DistributedSampler seeded with cfg.seed, DistributedDataParallel averages the
gradients, and gradient accumulation (cfg.micro_batch) keeps the optimiser step at cfg.batch_size
images whatever N. The union of the ranks' micro-batches of one step is the batch one process would
take, so N processes follow one process's run up to fp32 rounding (SLERP partners, drawn per
micro-batch from a rank-seeded generator, excepted). Only rank 0 writes files.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from tqdm.auto import tqdm

from .backbone import load_clip, weights_id
from .checkpoint import META_FILE, file_sha256, save_checkpoint
from .config import TrainConfig, to_dict
from .data import augment as augment_mod
from .data.dataset import FaceDataset, reference_val_subset
from .data.loader import loader_kwargs
from .data.manifest import default_data_root, read_manifest
from .distributed import World, barrier, gather_rows, init, shard, world
from .errors import DataError
from .fileio import atomic_write, remove_stale_temp_files
from .methods import get_method
from .metrics import LEGACY_NAMES, METRIC_NAMES, RANKING_METRICS, VIDEO_KEY, binary_metrics, video_level
from .model import Detector, build_model, trainable_count, trainable_state
from .slerp import alignment_loss, slerp_augment, uniformity_loss

# family -> (config dataclass, train function returning the checkpoint folder)
TRAINERS: dict[str, tuple[type, Callable]] = {}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast(device: torch.device, precision: str):
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)


LR_SCHEDULES = ("cosine", "cyclic")  # values of TrainConfig.lr_schedule


def set_matmul_precision(device: torch.device) -> None:
    """TF32 matmuls on CUDA, as the reference sets them (run.py:31, set_float32_matmul_precision("high"))."""
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups as the reference builds them (src/model/dfdet.py:609-623): biases and norm parameters are
    exempt from weight decay, everything else (the head's weight) decays."""
    norm = {id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters(recurse=False)}
    decay, exempt = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (exempt if name.endswith("bias") or id(p) in norm else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": exempt, "weight_decay": 0.0}]


def scheduled_lr(step: int, cfg: TrainConfig, steps_per_epoch: int, total: int) -> float:
    """The learning rate of optimiser step `step` (0-based), stepped per batch as both references do.

    "cosine" (paper, src/model/dfdet.py:636-647): CosineAnnealingLR(T_max=total, eta_min=min_lr).
    "cyclic" (GenD src/model/GenD.py:329-345): CosineAnnealingWarmRestarts(T_0=cycle_epochs epochs, T_mult=1).
    warmup_epochs > 0 puts LinearLR(start_factor=min_lr/lr) first (SequentialLR, GenD.py:336-345)."""
    warm = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warm:
        start = cfg.min_lr / cfg.lr
        return cfg.lr * (start + (1 - start) * step / warm)
    if cfg.lr_schedule == "cyclic":
        cycle = max(1, int(cfg.cycle_epochs * steps_per_epoch))
        return cosine_lr((step - warm) % cycle, cycle, cfg.lr, cfg.min_lr)
    return cosine_lr(step - warm, total, cfg.lr, cfg.min_lr)


def cosine_lr(step: int, total: int, lr: float, min_lr: float) -> float:
    """CosineAnnealingLR(T_max=total, eta_min=min_lr) stepped once per batch, as the reference schedules
    it (src/model/dfdet.py:636-647): lr at step 0, reaching min_lr at step `total` (one past the last)."""
    if total <= 0:
        return lr
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * step / total))


def load_splits(cfg: TrainConfig) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    if not cfg.manifest:
        raise DataError("no manifest given: pass --manifest PATH (build one with `dfdet manifest`)")
    root = Path(cfg.data_root) if cfg.data_root else default_data_root(cfg.manifest)
    df = read_manifest(cfg.manifest, root)
    if cfg.datasets:
        df = df[df["dataset"].isin(cfg.datasets)]
    train_df = df[df["split"] == cfg.train_split].reset_index(drop=True)
    val_df = df[df["split"] == cfg.val_split].reset_index(drop=True)
    limit = getattr(cfg, "val_limit", 0)
    if limit and len(val_df) > limit:
        n = len(val_df)
        val_df = reference_val_subset(val_df, limit)
        tqdm.write(f"validating on {len(val_df)} of {n} {cfg.val_split!r} frames: whole videos in the reference's "
                   "seed-42 order, cut at val_limit (--set val_limit=0 validates on all)")
    for name, part in ((cfg.train_split, train_df), (cfg.val_split, val_df)):
        if len(part) == 0:
            raise DataError(f"{cfg.manifest}: no rows with split == {name!r}"
                            f"{' in datasets ' + str(cfg.datasets) if cfg.datasets else ''}; "
                            "assign splits with `dfdet split`")
    if train_df["label"].nunique() < 2:
        raise DataError(f"{cfg.manifest}: the {cfg.train_split!r} split holds only one class; need real and fake")
    return train_df, val_df, root


@torch.no_grad()
def extract_features(model: Detector, loader, device: torch.device, precision: str = "auto",
                     desc: str = "features") -> tuple[torch.Tensor, torch.Tensor]:
    """z (as the head sees it) and labels for a whole loader, in loader order; under torchrun every rank
    passes its shard (a sharded_loader) and gets back all rows, in dataset order."""
    model.eval()
    feats, labels = [torch.zeros(0, 0)], [torch.zeros(0, dtype=torch.long)]
    for pixels, y, _ in tqdm(loader, desc=desc, leave=False, disable=None):
        with autocast(device, precision):
            feats.append(model.embed(pixels.to(device, non_blocking=True)).float().cpu())
        labels.append(y)
    z, y = torch.cat(feats[1:] or feats), torch.cat(labels)
    return torch.from_numpy(gather_rows(z.numpy(), to_all=True)), torch.from_numpy(gather_rows(y.numpy(), to_all=True))


def sharded_loader(ds, batch_size: int, w: World, device: torch.device, workers: int):
    """This rank's whole batches of ds, in order (evaluation-style sharding; see dfdet.distributed.shard)."""
    return torch.utils.data.DataLoader(torch.utils.data.Subset(ds, shard(len(ds), batch_size, w)),
                                       batch_size=batch_size, shuffle=False, **loader_kwargs(device, workers, w.size))


def micro_batches(batch_size: int, processes: int, micro_batch: int = 0) -> tuple[int, int]:
    """(images per forward per process, forwards accumulated per optimiser step) for a global batch."""
    if batch_size % processes:
        raise DataError(f"batch_size {batch_size} does not split evenly over {processes} processes; "
                        f"use a multiple of {processes}")
    per_rank = batch_size // processes
    micro = micro_batch or per_rank
    if micro < 1 or per_rank % micro:
        raise DataError(f"micro_batch {micro_batch} must divide the per-process batch {per_rank} "
                        f"(batch_size {batch_size} / {processes} processes)")
    return micro, per_rank // micro


class SeededSamples(torch.utils.data.Dataset):
    """Each training image's random augmentation seeded by (seed, epoch, index): the same draw whichever rank,
    worker or resumed run loads it, so N processes see the images one process sees."""

    def __init__(self, ds: FaceDataset, seed: int):
        self.ds, self.seed, self.epoch = ds, seed, 0
        self.augment = ds.augment

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        if self.ds.augment is None:
            return self.ds[i]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(((self.seed * 1_000_003 + self.epoch) * 1_000_003 + int(i)) % 2 ** 63)
            return self.ds[i]


class TrainStep(nn.Module):
    """One micro-batch's loss, as a module so DistributedDataParallel can wrap the forward it syncs."""

    def __init__(self, model: Detector, cfg: TrainConfig, gen: torch.Generator, device: torch.device):
        super().__init__()
        self.model, self.cfg, self.gen, self.device = model, cfg, gen, device

    def forward(self, pixels: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # head and loss inside autocast too: the reference's Lightning bf16-mixed wraps the whole training_step
        with autocast(self.device, self.cfg.precision):
            with torch.set_grad_enabled(self.model.spec.trains != "head"):
                feats = self.model.embed(pixels).float()
            return head_loss(self.model, feats, y, self.cfg, self.gen)


def _cached_features(model, loader, device, cfg: TrainConfig, key: str, main: bool = True):
    """Frozen-backbone features, from the disk cache when `cache_features` names a folder (rank 0 writes it)."""
    if cfg.cache_features in ("", "memory", None):
        return extract_features(model, loader, device, cfg.precision, desc=f"features ({key})")
    from safetensors.torch import load_file, save_file
    path = Path(cfg.cache_features) / f"{key}.safetensors"
    if path.is_file():
        t = load_file(str(path))
        return t["z"], t["y"]
    z, y = extract_features(model, loader, device, cfg.precision, desc=f"features ({key})")
    if main:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda p: save_file({"z": z.contiguous(), "y": y.contiguous()}, p))
    return z, y


def head_loss(model: Detector, feats: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
              gen: torch.Generator) -> torch.Tensor:
    """Cross-entropy on (SLERP-augmented) features, plus the optional hypersphere losses.

    The hypersphere losses see what the head sees, after SLERP (L2-normalised), as in the reference:
    src/model/dfdet.py:314-323 passes the head's `features` (src/heads/head.py:27) to the loss."""
    spec = model.spec
    z = slerp_augment(feats, y, cfg.slerp_t, gen) if spec.slerp else feats
    loss = F.cross_entropy(model.classify(z), y)
    if cfg.align_weight:
        loss = loss + cfg.align_weight * alignment_loss(z, y)
    if cfg.uniform_weight:
        loss = loss + cfg.uniform_weight * uniformity_loss(z)
    return loss


SELECTION_RULE = ("the epoch with the best {metric} on the {split!r} split "
                  "(video_map_macro = the paper's rule: video-level macro mAP over real and fake; "
                  "reference run.py:53 monitor='val/mAP_video', src/metrics.py:60)")


def select_metrics() -> tuple[str, ...]:
    """Names select_metric may take: frame metrics, video_<metric>, and the validation loss (old names too)."""
    names = (*METRIC_NAMES, *LEGACY_NAMES)
    return (*names, *(f"video_{m}" for m in names), "loss")


def val_metrics(y: np.ndarray, p_fake: np.ndarray, val_df: pd.DataFrame) -> dict:
    """Frame metrics, and video metrics (mean p_fake per (dataset, source, video)) under video_<name>."""
    m = binary_metrics(y, p_fake)
    frames = val_df[VIDEO_KEY].assign(label=y, p=p_fake)
    videos = video_level(frames, "p")
    vm = binary_metrics(videos["label"].to_numpy(), videos["p"].to_numpy())
    m.update({f"video_{k}": v for k, v in vm.items() if k in METRIC_NAMES or k in LEGACY_NAMES or k == "n"})
    return m


def val_logits(model: Detector, val_feats: torch.Tensor | None, val_loader, device,
               cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) of the validation split, from cached features where the backbone is frozen."""
    model.eval()
    with torch.no_grad():
        if val_feats is not None:
            z, y = val_feats
            with autocast(device, cfg.precision):  # the head under autocast, as in training
                logits = model.classify(z.to(device)).float().cpu()
        else:  # val_loader is this rank's shard; every rank gets all logits back, so all select alike
            outs, ys = [torch.zeros(0, 2)], [torch.zeros(0, dtype=torch.long)]
            for pixels, yy, _ in val_loader:
                with autocast(device, cfg.precision):
                    outs.append(model(pixels.to(device, non_blocking=True)).float().cpu())
                ys.append(yy)
            logits = torch.from_numpy(gather_rows(torch.cat(outs).numpy(), to_all=True))
            y = torch.from_numpy(gather_rows(torch.cat(ys).numpy(), to_all=True))
    return logits, y


def validate(model: Detector, val_feats: torch.Tensor | None, val_loader, device, cfg: TrainConfig) -> dict:
    logits, y = val_logits(model, val_feats, val_loader, device, cfg)
    ds = val_loader.dataset
    m = val_metrics(y.numpy(), F.softmax(logits, -1)[:, 1].numpy(), getattr(ds, "dataset", ds).df)  # all val rows
    m["loss"] = float(F.cross_entropy(logits, y))
    return m


def _score(m: dict, metric: str) -> float:
    v = m.get(metric, float("nan"))
    if metric in ("loss", "eer", "video_eer"):
        v = -v
    return -math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else v


def make_datasets(cfg: TrainConfig, train_df: pd.DataFrame, val_df: pd.DataFrame, root: Path,
                  preprocess) -> tuple[FaceDataset, FaceDataset]:
    """(train, val): only the training images are augmented (reference src/dataset/deepfake.py:241-259)."""
    train_ds = FaceDataset(train_df, root, preprocess, augment=augment_mod.build_augmentation(cfg.augment))
    return train_ds, FaceDataset(val_df, root, preprocess)


def train(cfg: TrainConfig) -> Path:
    """Train cfg.method and write its best checkpoint (chosen on validation) to cfg.out."""
    spec = get_method(cfg.method)
    if spec.family != "ln" or not spec.trainable:
        raise DataError(f"{spec.name} has nothing to train")
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise DataError(f"unknown lr_schedule {cfg.lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}")
    if cfg.select_metric not in select_metrics():
        raise DataError(f"unknown select_metric {cfg.select_metric!r}; choose one of {', '.join(select_metrics())}")
    work = staging_folder(Path(cfg.out), cfg.force)  # before any work: a refusal costs nothing
    w, name = init(str(pick_device(cfg.device)))
    device = torch.device(name)
    set_matmul_precision(device)
    seed_everything(cfg.seed)
    train_df, val_df, root = load_splits(cfg)
    check_selection(cfg, val_df)
    clip = load_clip(cfg.backbone, device)
    seed_everything(cfg.seed)  # the head's init must not depend on how the backbone was made
    model = build_model(clip, spec).to(device)
    if cfg.compile and device.type == "cuda":
        model.backbone = torch.compile(model.backbone)
    train_ds, val_ds = make_datasets(cfg, train_df, val_df, root, clip.preprocess)
    cached = spec.trains == "head" and train_ds.augment is None
    # Per-sample randomness is rank-aware: SLERP draws come from a generator seeded by rank (rank 0 draws what
    # one process draws; the cached head trains on all features in every rank alike, so there all share one
    # stream), and each training image's augmentation is seeded by (seed, epoch, index), whatever the rank.
    gen = torch.Generator().manual_seed(cfg.seed + (0 if cached else RANK_SEED_STRIDE * w.rank))
    if w.rank:
        torch.manual_seed(cfg.seed + RANK_SEED_STRIDE * w.rank)
    train_ds = SeededSamples(train_ds, cfg.seed)
    val_loader = sharded_loader(val_ds, cfg.batch_size, w, device, cfg.num_workers)

    step_fn, ddp, sampler = None, None, None
    if cached:  # frozen backbone, fixed images: one (sharded) pass for features, then epochs over tensors
        mkey = file_sha256(cfg.manifest, 16)
        plain = sharded_loader(train_ds, cfg.batch_size, w, device, cfg.num_workers)
        train_feats = _cached_features(model, plain, device, cfg, f"{mkey}-{cfg.train_split}-{clip.weights_id}",
                                       w.main)
        val_feats = _cached_features(model, val_loader, device, cfg, f"{mkey}-{cfg.val_split}-{clip.weights_id}",
                                     w.main)
        steps_per_epoch = math.ceil(len(train_ds) / cfg.batch_size)
    else:
        micro, accum = micro_batches(cfg.batch_size, w.size, cfg.micro_batch)
        sampler = torch.utils.data.distributed.DistributedSampler(
            train_ds, num_replicas=w.size, rank=w.rank, shuffle=True, seed=cfg.seed, drop_last=True)
        if len(sampler) < micro * accum:  # less data than one global batch: one step over all of it
            micro, accum = max(1, len(sampler)), 1
        train_loader = torch.utils.data.DataLoader(train_ds, batch_size=micro, sampler=sampler, drop_last=True,
                                                   **loader_kwargs(device, cfg.num_workers, w.size))
        steps_per_epoch = len(sampler) // (micro * accum)
        step_fn = TrainStep(model, cfg, gen, device)
        if w.size > 1:
            ddp = step_fn = nn.parallel.DistributedDataParallel(
                step_fn, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)
        val_feats = None
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                            weight_decay=cfg.weight_decay)

    out = work  # cfg.out itself, or its staging folder when a finished checkpoint there is being replaced
    log_path = out / "train_log.jsonl"
    best, best_state, best_epoch, step, start_epoch = -math.inf, None, -1, 0, 0
    key = resume_key(cfg)
    resumed = load_resume(out / RESUME_FILE, key)  # every rank reads the same file (a shared folder on many nodes)
    barrier()  # nobody writes into out/ before every rank has read it
    if resumed is not None:
        best_state, (start_epoch, step, best, best_epoch) = restore_state(resumed, model, opt, gen)
    if w.main:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(out)  # left by a run killed mid-write (SIGKILL: no cleanup ran)
        atomic_write(out / "config.yaml",
                     lambda p: Path(p).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False)))
        if resumed is not None:
            lines = log_path.read_text().splitlines()[:start_epoch] if log_path.is_file() else []
            atomic_write(log_path, lambda p: Path(p).write_text("".join(line + "\n" for line in lines)))
            tqdm.write(f"[{spec.name}] resuming after epoch {start_epoch}/{cfg.epochs} (step {step}) "
                       f"from {out / RESUME_FILE}")
        else:
            log_path.write_text("")
    t_start = time.time()
    for epoch in range(start_epoch, cfg.epochs):
        model.train() if not cached else model.eval()
        if cached:
            perm = torch.randperm(len(train_feats[0]), generator=gen)
            batches = [(train_feats[0][perm[i:i + cfg.batch_size]], train_feats[1][perm[i:i + cfg.batch_size]])
                       for i in range(0, len(perm), cfg.batch_size)]
        else:
            sampler.set_epoch(epoch)
            train_ds.set_epoch(epoch)
            batches = _steps(train_loader, accum, steps_per_epoch)
        bar = tqdm(batches, desc=f"{spec.name} epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=None if w.main else True, total=steps_per_epoch)
        losses = []
        for batch in bar:
            if step >= total:
                break
            for g in opt.param_groups:
                g["lr"] = scheduled_lr(step, cfg, steps_per_epoch, total)
            opt.zero_grad(set_to_none=True)
            if cached:
                with autocast(device, cfg.precision):
                    loss = head_loss(model, batch[0].to(device), batch[1].to(device), cfg, gen)
                loss.backward()
            else:  # accumulate micro-batches; DDP averages the gradients across ranks on the last one
                loss = torch.zeros((), device=device)
                for i, (pixels, y, _) in enumerate(batch):
                    last = i == len(batch) - 1
                    with ddp.no_sync() if ddp is not None and not last else contextlib.nullcontext():
                        part = step_fn(pixels.to(device, non_blocking=True), y.to(device, non_blocking=True))
                        (part / len(batch)).backward()
                    loss += part.detach() / len(batch)
            opt.step()
            losses.append(loss.item())
            step += 1
            bar.set_postfix(loss=f"{loss.item():.4f}")
        val = validate(model, val_feats, val_loader, device, cfg)
        score = _score(val, cfg.select_metric)
        if score == -math.inf and cfg.select_metric != "loss":
            score = LOSS_FALLBACK - val["loss"] if math.isfinite(val.get("loss", math.nan)) else -math.inf
            val["selected_on"] = "loss"
            if w.main:
                tqdm.write(f"[{spec.name}] epoch {epoch + 1}: {cfg.select_metric} is not a number on the "
                           f"{cfg.val_split!r} split; this epoch is compared on the validation loss instead")
        improved = score > best
        if improved:
            best, best_epoch = score, epoch
            best_state = {k: v.clone() for k, v in trainable_state(model).items()}
        train_loss = gather_rows(np.array([np.mean(losses) if losses else np.nan]), to_all=True).mean()
        record = {"epoch": epoch + 1, "step": step, "train_loss": None if np.isnan(train_loss) else float(train_loss),
                  "lr": opt.param_groups[0]["lr"], "val": val, "best": improved}
        if w.main:
            with log_path.open("a") as f:
                f.write(json.dumps(record, default=float) + "\n")
            tqdm.write(f"[{spec.name}] epoch {epoch + 1}: train loss {record['train_loss']}, "
                       f"val {cfg.select_metric} {val.get(cfg.select_metric)}")
        save_resume(out / RESUME_FILE, key, model, opt, gen, best_state, (epoch + 1, step, best, best_epoch))
        if step >= total:
            break

    if best_state is None:  # not one epoch could be scored (even the loss was NaN): keep the last, never nothing
        best_state = {k: v.clone() for k, v in trainable_state(model).items()}
        best_epoch = -1
        if w.main:
            tqdm.write(f"[{spec.name}] no epoch could be scored on {cfg.val_split!r}: the checkpoint holds the last "
                       "epoch's weights")
    calibration = calibrate_on_val(model, best_state, val_feats, val_loader, device, cfg)  # every rank: a collective
    if not w.main:
        barrier()  # returns once rank 0 has written the checkpoint
        return Path(cfg.out)
    best_val = json.loads(log_path.read_text().splitlines()[best_epoch])["val"]
    meta = {"method": spec.name, "label": spec.label,
            "backbone": {"model": cfg.backbone.model, "weights": weights_id(cfg.backbone)},
            "config": to_dict(cfg), "manifests": {str(cfg.manifest): file_sha256(cfg.manifest)},
            "recipe": {"augment": augment_mod.describe(cfg.augment),
                       "selection": SELECTION_RULE.format(metric=cfg.select_metric, split=cfg.val_split),
                       "linear_probe_features": ("cached once (augment=none)" if cached else "fresh every epoch")
                       if spec.trains == "head" else None},
            "val_metrics": best_val, "best_epoch": best_epoch + 1, "steps": step,
            "trainable_params": trainable_count(model), "train_seconds": round(time.time() - t_start, 1)}
    meta["calibration"] = calibration
    save_checkpoint(out, best_state, meta)
    (out / RESUME_FILE).unlink(missing_ok=True)  # the checkpoint is complete: nothing left to resume
    folder = swap_in(out, Path(cfg.out))
    barrier()
    return folder


LOSS_FALLBACK = -2.0  # an epoch scored on its loss ranks below every epoch with a metric (scores are in [-1, 1])


def check_selection(cfg: TrainConfig, val_df: pd.DataFrame) -> None:
    """Refuse, before any training, a selection rule the validation split cannot compute."""
    if cfg.select_metric.removeprefix("video_") in RANKING_METRICS and val_df["label"].nunique() < 2:
        only = "real" if int(val_df["label"].iloc[0]) == 0 else "fake"
        raise DataError(f"{cfg.manifest}: the {cfg.val_split!r} split holds only {only} faces, so select_metric "
                        f"{cfg.select_metric} cannot be computed on it; put both classes in it (`dfdet split`) or "
                        "pass --set select_metric=loss")


def staging_folder(out: Path, force: bool) -> Path:
    """Where a run writes: `out`, unless it holds a finished checkpoint. That one is replaced only with --force,
    and then whole: the new run is made in a sibling staging folder (resumable there) and swapped in at the end,
    so a run killed midway leaves the old checkpoint with its own config and log."""
    if not (out / META_FILE).is_file():
        return out
    if not force:
        raise DataError(f"{out} already holds a finished checkpoint; pass --force to train a new one in its place "
                        "(the old one stays until the new one is complete), or choose another --out")
    return out.parent / f".{out.name}.retrain"


def swap_in(work: Path, out: Path) -> Path:
    """Put a finished staging folder in place of `out` (the old folder is deleted last)."""
    if work == out:
        return out
    from .swap import swap_folder
    return swap_folder(work, out)  # old or new checkpoint in place at every instant (dfdet.swap)


def calibrate_on_val(model: Detector, best_state: dict, val_feats, val_loader, device, cfg: TrainConfig) -> dict:
    """The best state's threshold, temperature and uncertain band, from the validation split only."""
    from .calibration import calibrate
    with torch.no_grad():
        params = dict(model.named_parameters())
        for k, v in best_state.items():
            params[k].copy_(v)
    logits, y = val_logits(model, val_feats, val_loader, device, cfg)
    return calibrate(y.numpy(), F.softmax(logits, -1)[:, 1].numpy(), cfg.calibration, cfg.val_split).to_meta()


def _steps(loader, accum: int, steps: int):
    """Group the loader's micro-batches into lists of `accum` (one optimiser step each), `steps` of them."""
    it = iter(loader)
    for _ in range(steps):
        yield [next(it) for _ in range(accum)]


RANK_SEED_STRIDE = 1_000_003  # rank r's generator starts at seed + r * stride: distinct streams, rank 0 = one process


RESUME_FILE = "resume.safetensors"  # end-of-epoch training state of an unfinished run
# settings that do not change the trained weights (calibration is fitted after training, on validation;
# micro_batch does change them: SLERP partners are drawn per micro-batch)
_NOT_IN_KEY = ("out", "force", "device", "num_workers", "compile", "cache_features", "calibration")


def resume_key(cfg: TrainConfig) -> str:
    """What must match for a saved state to be continued: every setting that changes the result, and the data."""
    d = {k: v for k, v in to_dict(cfg).items() if k not in _NOT_IN_KEY}
    d["manifest_sha256"] = file_sha256(cfg.manifest)
    d["optimizer_layout"] = "decay, exempt"  # states saved before the two AdamW groups must not be continued
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save_resume(path: Path, key: str, model: Detector, opt: torch.optim.Optimizer, gen: torch.Generator,
                best_state: dict | None, progress: tuple[int, int, float, int]) -> None:
    """One safetensors file (tensors + JSON metadata), written atomically by rank 0: a kill mid-write keeps the
    old one. Every rank calls it: each rank's random streams are gathered into the file."""
    from safetensors.torch import save_file
    w = world()
    gens = gather_rows(gen.get_state().numpy()[None])
    cpu_rngs = gather_rows(torch.get_rng_state().numpy()[None])
    if not w.main:
        return
    tensors = {f"model.{k}": v for k, v in trainable_state(model).items()}
    tensors.update({f"best.{k}": v for k, v in (best_state or {}).items()})
    for i, st in opt.state_dict()["state"].items():
        for name, v in st.items():
            tensors[f"opt.{i}.{name}"] = v if torch.is_tensor(v) else torch.tensor(v)
    tensors["rng.gen"], tensors["rng.torch"] = gen.get_state(), torch.get_rng_state()
    for r in range(1, w.size):
        tensors[f"rng.gen.{r}"], tensors[f"rng.torch.{r}"] = torch.from_numpy(gens[r]), torch.from_numpy(cpu_rngs[r])
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    epoch, step, best, best_epoch = progress
    meta = {"key": key, "epoch": epoch, "step": step, "best": best if math.isfinite(best) else None,
            "best_epoch": best_epoch, "processes": w.size}
    atomic_write(path, lambda p: save_file(tensors, p, metadata={"dfdet_resume": json.dumps(meta)}))


def load_resume(path: Path, key: str) -> tuple[dict, dict[str, torch.Tensor]] | None:
    """(metadata, tensors) of a saved state for these settings, or None (absent, unreadable, other settings)."""
    if not path.is_file():
        return None
    from safetensors import safe_open
    log = logging.getLogger(__name__)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["dfdet_resume"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # noqa: BLE001 - a damaged state only loses the shortcut: start over
        log.warning("ignoring unreadable resume state %s (%s); training from the start", path, err)
        return None
    if meta.get("key") != key:
        log.warning("%s was saved with other settings or data; training from the start", path)
        return None
    return meta, tensors


def restore_state(saved: tuple[dict, dict[str, torch.Tensor]], model: Detector, opt: torch.optim.Optimizer,
                  gen: torch.Generator) -> tuple[dict | None, tuple[int, int, float, int]]:
    """Put a saved state back into model, optimiser and generator; returns (best_state, progress)."""
    meta, tensors = saved
    params = dict(model.named_parameters())
    state: dict[int, dict] = {}
    with torch.no_grad():
        for k, v in tensors.items():
            if k.startswith("model."):
                params[k[len("model."):]].copy_(v)
            elif k.startswith("opt."):
                _, i, name = k.split(".", 2)
                state.setdefault(int(i), {})[name] = v
    best_state = {k[len("best."):]: v for k, v in tensors.items() if k.startswith("best.")} or None
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
    w = world()
    suffix = f".{w.rank}" if w.rank else ""
    if f"rng.gen{suffix}" in tensors:
        gen.set_state(tensors[f"rng.gen{suffix}"])
        torch.set_rng_state(tensors[f"rng.torch{suffix}"])
    else:  # saved by fewer processes: this rank's stream restarts from its seed (valid, not bit-identical)
        logging.getLogger(__name__).warning("resuming on %d processes a run saved on %s: rank %d's random draws "
                                            "restart from its seed", w.size, meta.get("processes", 1), w.rank)
    best = meta["best"] if meta.get("best") is not None else -math.inf
    return best_state, (int(meta["epoch"]), int(meta["step"]), float(best), int(meta["best_epoch"]))


def trainer_for(method: str) -> tuple[type, Callable]:
    """(config class, train function) for a method's family; families register on import."""
    family = get_method(method).family
    if family not in TRAINERS:
        import importlib
        importlib.import_module(f"dfdet.{family}")
    if family not in TRAINERS:
        raise DataError(f"no trainer registered for method family {family!r}")
    return TRAINERS[family]


TRAINERS["ln"] = (TrainConfig, train)
