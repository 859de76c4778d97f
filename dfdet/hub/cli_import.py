"""Convert a released checkpoint into a dfdet checkpoint folder.

Reads the paper's PyTorch Lightning checkpoint (model.ckpt; loaded with torch.load(weights_only=True)
and an explicit allowlist, so a crafted file cannot run code) or GenD's model.safetensors + config.json.
Writes model.safetensors + dfdet.json (LayerNorm gamma/beta and head, named like dfdet's Detector) and
backbone.safetensors (the full vision tower in open_clip layout). The method is inferred from the
source's config; every key of the source is accounted for, and any key that does not fit fails the
import with a listing.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError

FORMATS = ("auto", "paper", "gend")


def add_arguments(p) -> None:
    p.add_argument("path", help="the paper's model.ckpt, or GenD's folder / model.safetensors (config.json beside it)")
    p.add_argument("--out", required=True, help="checkpoint folder to write, e.g. checkpoints/paper")
    p.add_argument("--format", choices=FORMATS, default="auto",
                   help="source format: paper = Lightning + peft .ckpt, gend = GenD safetensors; auto = by file")
    p.add_argument("--force", action="store_true", help="replace --out if it already holds files")


def detect_format(path: Path) -> str:
    from .gend import looks_like_gend
    if path.is_dir() or path.suffix == ".safetensors":
        if looks_like_gend(path):
            return "gend"
        raise CheckpointError(f"{path}: a safetensors model without GenD's config.json; pass the GenD folder "
                              "(model.safetensors + config.json)")
    if path.is_file():
        return "paper"
    raise CheckpointError(f"not found: {path}")


def run(args) -> int:
    path = Path(args.path)
    fmt = detect_format(path) if args.format == "auto" else args.format
    if fmt == "paper":
        from .paper import import_paper
        out = import_paper(path, args.out, force=args.force)
    else:
        from .gend import import_gend
        out = import_gend(path, args.out, force=args.force)
    from ..checkpoint import read_meta
    meta = read_meta(out)
    imp = meta["imported"]
    print(f"{meta['display_name']}: method {meta['method']} ({meta['label']}), backbone "
          f"{meta['backbone']['model']}/{meta['backbone']['weights']}, {meta['trainable_params']:,} overlay parameters")
    print(f"source keys: {imp['source_keys']}, dropped: {imp['dropped_keys']}")
    for where, n in imp["keys"].items():
        print(f"  {n:>6}  -> {where}")
    print(f"wrote {out}/ (model.safetensors, dfdet.json, {meta['backbone_file']['file']})")
    return 0
