"""Train one method. Defaults are the paper's recipe; a YAML file (--config) and --set key=value
override them, in that order, and the resolved config is saved next to the checkpoint.

The output folder is a dfdet checkpoint (model.safetensors + dfdet.json) plus config.yaml and
train_log.jsonl; point the dashboard's checkpoints folder at its parent.
"""
from __future__ import annotations

from ..cli import add_backbone_args, backbone_from_args, resolve_device
from ..config import apply_overrides, from_dict, load_yaml, to_dict
from ..errors import DataError
from ..methods import METHODS, get_method


def add_arguments(p) -> None:
    p.add_argument("--method", required=True, choices=list(METHODS), help="registry name of the method to train")
    p.add_argument("--manifest", help="manifest CSV (path,label,dataset,source,video,identity,split)")
    p.add_argument("--data-root", help="folder the manifest paths are relative to (default: the manifest's folder)")
    p.add_argument("--datasets", nargs="*", help="train/validate only on these datasets of the manifest")
    p.add_argument("--preset", help="named recipe preset applied before --config/--set "
                                    "(gend: GenD's own run, with --method ln_norm: cyclic lr 3e-4, 30 epochs, "
                                    "its augmentation, uniformity 0.5 + alignment 0.1, no SLERP)")
    p.add_argument("--config", help="YAML file with config overrides")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set lr=1e-4 --set backbone.model=ViT-B-16")
    p.add_argument("--epochs", type=int, help="epochs (paper: 10)")
    p.add_argument("--batch-size", type=int, help="global batch per optimiser step, over all processes (paper: 128)")
    p.add_argument("--micro-batch", type=int,
                   help="images per forward per process; smaller than batch-size/processes accumulates gradients")
    p.add_argument("--lr", type=float, help="peak learning rate (paper: 8e-5)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps (smoke runs)")
    p.add_argument("--seed", type=int, help="random seed (paper: 42)")
    p.add_argument("--out", help="output checkpoint folder (default checkpoints/<method>)")
    p.add_argument("--force", action="store_true", help="replace a finished checkpoint in --out (the new run is "
                   "staged beside it and swapped in only when complete)")
    add_backbone_args(p)


def build_config(args):
    """(config, train function): defaults < method defaults < --preset < --config < flags < --set."""
    from ..train import trainer_for
    spec = get_method(args.method)
    config_cls, train_fn = trainer_for(spec.name)
    data = to_dict(config_cls())
    data.update(spec.defaults.get("train", {}))
    if getattr(args, "preset", None):
        from ..presets import preset_values
        data.update(preset_values(args.preset, spec.name))
    if args.config:
        data.update(load_yaml(args.config))
    flags = {"method": spec.name, "manifest": args.manifest, "data_root": args.data_root, "datasets": args.datasets,
             "epochs": args.epochs, "batch_size": args.batch_size, "micro_batch": args.micro_batch, "lr": args.lr,
             "max_steps": args.max_steps,
             "seed": args.seed, "out": args.out, "force": True if getattr(args, "force", False) else None}
    if not args.out and not (args.config and "out" in load_yaml(args.config)):
        flags["out"] = f"checkpoints/{spec.name}"
    data.update({k: v for k, v in flags.items() if v is not None and k in data})
    data = apply_overrides(data, args.set)
    cfg = from_dict(config_cls, data)
    cfg.backbone = backbone_from_args(args, cfg.backbone)
    cfg.device = resolve_device(args.device if args.device != "auto" else cfg.device)
    return cfg, train_fn


def run(args) -> int:
    cfg, train_fn = build_config(args)
    from ..distributed import launched, world
    if launched() and get_method(cfg.method).family != "ln":
        raise DataError(f"{cfg.method} trains in one process; start it with `dfdet train`, not torchrun")
    folder = train_fn(cfg)
    if world().main:
        print(f"checkpoint written to {folder}")
    return 0
