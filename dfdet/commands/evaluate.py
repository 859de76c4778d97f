"""Evaluate every available checkpoint (and zero-shot method) on a manifest split.

Writes a run folder (predictions.csv, metrics.json, roc.json, embeddings/) that the dashboard
reads, and prints AUROC per method x dataset at frame and video level.
"""
from __future__ import annotations

from ..cli import add_backbone_args, backbone_from_args, resolve_device


def add_arguments(p) -> None:
    p.add_argument("--manifest", required=True, help="manifest CSV")
    p.add_argument("--data-root", help="folder the manifest paths are relative to (default: the manifest's folder)")
    p.add_argument("--split", default="test", help="split to evaluate, or 'all'")
    p.add_argument("--datasets", nargs="*", default=[], help="only these datasets")
    p.add_argument("--checkpoints", default="checkpoints", help="folder holding one checkpoint folder per method")
    p.add_argument("--methods", nargs="*", default=[], help="only these registry methods")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument("--threshold", type=float, default=0.5, help="p_fake threshold for accuracy/precision/recall/F1")
    p.add_argument("--out", default="runs/eval", help="run folder to write")
    p.add_argument("--workers", type=int, default=-1,
                   help="DataLoader worker processes per process (-1 = auto: 0 on CPU, up to 8 on CUDA)")
    p.add_argument("--projections", choices=["auto", "always", "never"], default="auto",
                   help="write the UMAP projections the dashboard shows: auto = for runs too large for the app to "
                        "fit them itself (more than 5000 faces); later: `dfdet project RUN_FOLDER`")
    add_backbone_args(p)
    from ..runtime import add_runtime_arg
    add_runtime_arg(p)


def run(args) -> int:
    from ..artifacts import load_run
    from ..evaluate import EvalConfig, evaluate, summary_table
    cfg = EvalConfig(manifest=args.manifest, data_root=args.data_root or "", split=args.split,
                     datasets=args.datasets, checkpoints=args.checkpoints, methods=args.methods,
                     backbone=backbone_from_args(args), batch_size=args.batch_size, threshold=args.threshold,
                     device=resolve_device(args.device), out=args.out, workers=args.workers,
                     runtime=args.runtime)
    run_dir = evaluate(cfg)
    from ..distributed import world
    if not world().main:
        return 0  # under torchrun: rank 0 reports
    r = load_run(run_dir)
    if r.info.get("demo"):
        print("NOTE: random-weight backbone: these numbers are meaningless (demo/testing only)")
    for level in ("frame", "video"):
        print(f"\nAUROC ({level} level)")
        print(summary_table(r.metrics, level).round(4).to_string())
    for n, msg in r.info.get("not_evaluated", {}).items():
        print(f"skipped {n}: {msg}")
    from ..viz.projection import APP_FIT_MAX, project_run
    if args.projections == "always" or (args.projections == "auto" and len(r.predictions) > APP_FIT_MAX):
        project_run(run_dir)  # the dashboard reads them instead of fitting UMAP (dfdet/viz/projection.py)
    print(f"\nrun written to {run_dir}")
    return 0
