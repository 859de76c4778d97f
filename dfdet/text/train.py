"""Text-guided fine-tuning: both CLIP encoders (or the image encoder only) with the paired loss.

Output, like the LN trainer's: `out/` is a dfdet checkpoint (model.safetensors with every trained
tensor, named as in TextDetector, + dfdet.json with the descriptions used) plus config.yaml and
train_log.jsonl. A finished checkpoint in `out/` is replaced only with --force, and then whole (the paper
trainer's staging: dfdet.train.staging_folder / swap_in). The checkpoint holds whole encoders:
for ViT-L/14 about 1.7 GB in fp32 (0.85 GB with checkpoint_dtype="bf16"), against 0.4 MB for an
LN-tuning checkpoint.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from ..backbone import load_clip, weights_id
from ..checkpoint import file_sha256, save_checkpoint
from ..config import BackboneConfig, to_dict
from ..data.dataset import FaceDataset
from ..errors import DataError
from ..fileio import atomic_write, remove_stale_temp_files
from ..methods import get_method
from ..metrics import binary_metrics
from .descriptions import load_descriptions
from .model import TextDetector, build_text_model
from .textguided import lr_at, make_pairs, paired_clip_loss, sample_descriptions, should_stop


@dataclass
class TextTrainConfig:
    method: str = "textguided_1desc"  # registry name of the text-guided method to train
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    manifest: str = ""  # manifest CSV with path,label,dataset,source,video,identity,split
    data_root: str = ""  # folder the manifest's paths are relative to (default: the manifest's folder)
    train_split: str = "train"  # manifest split used for training
    val_split: str = "val"  # split for the early-stopping loss and the kept epoch; never the test split
    datasets: list[str] = field(default_factory=list)  # restrict to these datasets (empty = all)
    descriptions: str = "1desc"  # thesis set (1desc, 10desc, 550desc), a folder with *real*/*fake*.txt, or R.txt,F.txt
    per_pair_descriptions: bool = False  # thesis: one (real, fake) description pair per batch; True: one per pair
    top_k: int = 0  # at inference average only the k highest description logits (0 = all, thesis default)
    top_k_scope: str = "all"  # thesis: top-k over all descriptions, then split by class; or "per_class"
    train_text: bool = True  # thesis default: both encoders; False = its "frozen text" variant (image encoder only)
    train_logit_scale: bool = True  # thesis: CLIP's logit_scale is trained with the encoders (not when text is frozen)
    batch_size: int = 16  # (real, fake) image pairs per micro-batch (thesis --train_batch_size 16)
    grad_accum: int = 4  # micro-batches per optimiser step (thesis --accumulate_grad_batches 4)
    epochs: int = 20  # upper bound; early stopping usually ends sooner
    lr: float = 6e-7  # peak learning rate (thesis: 6e-7 for 1desc, 8e-7 for multi-description sets)
    scheduler: bool = True  # warm-up + cosine restarts; thesis: off unless --use_scheduler, which its example run sets
    warmup_steps: int = 100  # optimiser steps of linear warm-up from min_lr at the start of every cycle
    cycle_epochs: int = 5  # length of one cycle (warm-up + cosine); each cycle's peak is peak_decay x the last
    peak_decay: float = 0.5  # thesis: the peak halves every cycle (--gamma 0.5)
    min_lr: float = 0.0  # where each cycle starts and ends (thesis example: --min_lr 0)
    weight_decay: float = 0.2  # decoupled (AdamW) weight decay, thesis: 0.2
    betas: tuple[float, float] = (0.9, 0.98)  # Adam betas, thesis: (0.9, 0.98) as in CLIP
    eps: float = 1e-6  # Adam epsilon, thesis: 1e-6 as in CLIP
    early_stop_patience: int = 5  # stop after this many epochs without a lower validation loss (thesis: 5; 0 = off)
    early_stop_min_delta: float = 0.0  # an epoch counts as better only if its loss drops by more than this
    seed: int = 42  # controls pairing, description sampling and shuffling
    precision: str = "fp32"  # thesis: fp32 (--mixed_precision '32', options.py:25); "bf16" or "auto" (bf16 on CUDA)
    max_steps: int = 0  # stop after this many optimiser steps (0 = no limit); for smoke runs
    num_workers: int = 0  # DataLoader workers
    checkpoint_dtype: str = "fp32"  # "fp32" or "bf16": bf16 halves the ~1.7 GB ViT-L/14 checkpoint
    device: str = "auto"  # "auto", "cpu", "cuda"
    out: str = "checkpoints/textguided_1desc"  # output folder: checkpoint, resolved config, training log
    force: bool = False  # replace a finished checkpoint in `out` (trained in a staging folder, swapped in at the end)


class PairDataset(torch.utils.data.Dataset):
    """(real pixels, fake pixels) for a list of (real row, fake row) index pairs."""

    def __init__(self, faces: FaceDataset, pairs: list[tuple[int, int]]):
        self.faces, self.pairs = faces, pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        r, f = self.pairs[i]
        return self.faces[r][0], self.faces[f][0]


def set_trainable(model: TextDetector, train_text: bool, train_logit_scale: bool = True) -> int:
    """Freeze all, then unfreeze the image encoder, and with train_text the text encoder and logit_scale.

    The thesis optimises model.parameters() (logit_scale included) or, with --only_vision, only
    model.visual.parameters() (src/clip/lightning_model.py:113-117)."""
    model.requires_grad_(False)
    model.clip.visual.requires_grad_(True)
    if train_text:
        for p in model.text_parameters():
            p.requires_grad_(True)
        if train_logit_scale:
            model.clip.logit_scale.requires_grad_(True)
    model.train_text = train_text
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def image_embeddings(model: TextDetector, faces: FaceDataset, device, precision: str, batch_size: int) -> torch.Tensor:
    from ..train import autocast
    model.eval()
    loader = torch.utils.data.DataLoader(faces, batch_size=batch_size, shuffle=False)
    out = []
    for pixels, _, _ in loader:
        with autocast(device, precision):
            out.append(model.embed(pixels.to(device)).float())
    return torch.cat(out)


@torch.no_grad()
def validate(model: TextDetector, faces: FaceDataset, pairs: list[tuple[int, int]], desc_idx, device,
             cfg: TextTrainConfig) -> dict:
    """Paired loss on fixed validation pairs (the early-stopping signal) and frame metrics of p_fake."""
    z = image_embeddings(model, faces, device, cfg.precision, 2 * cfg.batch_size)
    text = model.text_features().float()
    r, f = torch.tensor(pairs).T.to(device)
    loss = paired_clip_loss(z[r], z[f], text[desc_idx[0]], text[desc_idx[1]], model.logit_scale().float())
    p_fake = torch.softmax(model.classify(z), dim=-1)[:, 1].cpu().numpy()
    m = binary_metrics(faces.labels.numpy(), p_fake)
    m["loss"] = float(loss)
    return m


def _class_rows(faces: FaceDataset) -> tuple[list[int], list[int]]:
    y = faces.labels.tolist()
    return [i for i, v in enumerate(y) if v == 0], [i for i, v in enumerate(y) if v == 1]


def train_textguided(cfg: TextTrainConfig) -> Path:
    """Fine-tune cfg.method's CLIP encoders; keep the epoch with the lowest validation loss."""
    from ..train import autocast, load_splits, pick_device, seed_everything, staging_folder, swap_in
    spec = get_method(cfg.method)
    if spec.family != "text" or not spec.trainable:
        raise DataError(f"{spec.name} is not a trainable text method; text-guided methods: "
                        f"{', '.join(n for n in _text_trainable())}")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise DataError(f"epochs and batch_size must be at least 1 (got {cfg.epochs}, {cfg.batch_size})")
    if cfg.checkpoint_dtype not in ("fp32", "bf16"):
        raise DataError(f"checkpoint_dtype must be fp32 or bf16, not {cfg.checkpoint_dtype!r}")
    out = staging_folder(Path(cfg.out), cfg.force)  # before any work: a refusal costs nothing
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    descriptions = load_descriptions(cfg.descriptions)
    registered = spec.defaults.get("descriptions")
    if registered and str(cfg.descriptions) != registered:
        logging.getLogger(__name__).warning(
            "%s is registered with the description set %r but trains with %r; the checkpoint stores the sentences "
            "it was trained with (dfdet.json 'descriptions'), which dfdet.text.load_text_checkpoint uses",
            spec.name, registered, cfg.descriptions)
    train_df, val_df, root = load_splits(cfg)
    if val_df["label"].nunique() < 2:
        raise DataError(f"{cfg.manifest}: the {cfg.val_split!r} split needs real and fake images for the paired "
                        "validation loss")
    clip = load_clip(cfg.backbone, device)
    model = build_text_model(clip, spec, share=True, descriptions=descriptions, top_k=cfg.top_k,
                             top_k_scope=cfg.top_k_scope).to(device)
    n_trainable = set_trainable(model, cfg.train_text, cfg.train_logit_scale)
    train_faces = FaceDataset(train_df, root, clip.preprocess)
    val_faces = FaceDataset(val_df, root, clip.preprocess)
    real_rows, fake_rows = _class_rows(train_faces)
    labels = descriptions.labels

    gen = torch.Generator().manual_seed(cfg.seed)
    val_gen = torch.Generator().manual_seed(cfg.seed + 1)
    val_pairs = make_pairs(*_class_rows(val_faces), val_gen)  # fixed: the loss is comparable across epochs
    # fixed, one per pair: the early-stopping loss compares like with like (the thesis redraws per val batch)
    val_desc = sample_descriptions(labels, len(val_pairs), val_gen, per_pair=True)
    if cfg.grad_accum < 1:
        raise DataError(f"grad_accum must be at least 1 (got {cfg.grad_accum})")
    batches_per_epoch = math.ceil(max(len(real_rows), len(fake_rows)) / cfg.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / cfg.grad_accum)  # Lightning steps on a partial group at the end
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)

    out.mkdir(parents=True, exist_ok=True)  # cfg.out, or its staging folder when a finished checkpoint is replaced
    remove_stale_temp_files(out)  # left by a run killed mid-write (SIGKILL: no cleanup ran)
    atomic_write(out / "config.yaml", lambda p: Path(p).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False)))
    log_path = out / "train_log.jsonl"
    log_path.write_text("")
    val_losses: list[float] = []
    best_loss, best_state, best_val, best_epoch, step = math.inf, None, {}, 0, 0
    t_start = time.time()
    for epoch in range(cfg.epochs):
        model.train()
        loader = torch.utils.data.DataLoader(PairDataset(train_faces, make_pairs(real_rows, fake_rows, gen)),
                                             batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.num_workers,
                                             pin_memory=device.type == "cuda")
        losses = []
        opt.zero_grad(set_to_none=True)
        for i, (real_px, fake_px) in enumerate(tqdm(loader, desc=f"{spec.name} epoch {epoch + 1}/{cfg.epochs}",
                                                    leave=False, disable=None)):
            lr = (lr_at(step, cfg.lr, cfg.warmup_steps, cfg.cycle_epochs * steps_per_epoch, cfg.peak_decay, cfg.min_lr)
                  if cfg.scheduler else cfg.lr)  # off: the thesis returns the bare optimiser (lightning_model.py:127)
            for g in opt.param_groups:
                g["lr"] = lr
            n = real_px.shape[0]
            r_idx, f_idx = sample_descriptions(labels, n, gen, cfg.per_pair_descriptions)
            with autocast(device, cfg.precision):
                z = model.embed(torch.cat([real_px, fake_px]).to(device))
                t = model.encode_descriptions(torch.cat([r_idx, f_idx]))
                loss = paired_clip_loss(z[:n].float(), z[n:].float(), t[:n].float(), t[n:].float(),
                                        model.logit_scale().float())
            (loss / cfg.grad_accum).backward()  # Lightning scales each micro-batch loss by 1/accumulate
            losses.append(loss.item())
            if (i + 1) % cfg.grad_accum == 0 or i + 1 == len(loader):
                opt.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                if cfg.max_steps and step >= cfg.max_steps:
                    break
        val = validate(model, val_faces, val_pairs, val_desc, device, cfg)
        val_losses.append(val["loss"])
        improved = val["loss"] < best_loss
        if improved:
            best_loss, best_val, best_epoch = val["loss"], val, epoch + 1
            best_state = {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}
        record = {"epoch": epoch + 1, "step": step, "train_loss": float(np.mean(losses)) if losses else None,
                  "lr": lr if losses else None, "val": val, "best": improved}
        with log_path.open("a") as fh:
            fh.write(json.dumps(record, default=float) + "\n")
        tqdm.write(f"[{spec.name}] epoch {epoch + 1}: train loss {record['train_loss']}, val loss {val['loss']:.4f}, "
                   f"val auroc {val.get('auroc')}")
        if cfg.max_steps and step >= cfg.max_steps:
            break
        if should_stop(val_losses, cfg.early_stop_patience, cfg.early_stop_min_delta):
            tqdm.write(f"[{spec.name}] early stop: no lower validation loss for {cfg.early_stop_patience} epochs")
            break

    dtype = torch.bfloat16 if cfg.checkpoint_dtype == "bf16" else torch.float32
    tensors = {k: v.to(dtype) for k, v in best_state.items()}
    meta = {"method": spec.name, "label": spec.label,
            "backbone": {"model": cfg.backbone.model, "weights": weights_id(cfg.backbone)},
            "config": to_dict(cfg), "manifests": {str(cfg.manifest): file_sha256(cfg.manifest)},
            "descriptions": descriptions.to_dict(), "val_metrics": best_val, "best_epoch": best_epoch,
            "steps": step, "trainable_params": n_trainable, "checkpoint_dtype": cfg.checkpoint_dtype,
            "train_seconds": round(time.time() - t_start, 1)}
    save_checkpoint(out, tensors, meta)
    return swap_in(out, Path(cfg.out))


def _text_trainable() -> list[str]:
    from ..methods import METHODS
    return [n for n, s in METHODS.items() if s.family == "text" and s.trainable]
