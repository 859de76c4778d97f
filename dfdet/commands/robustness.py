"""Re-score a run's faces under JPEG 90/70/50/30, downscale x0.5/x0.25, blur and looser crops, for every method.

Prints, per method x dataset, the share of faces whose verdict (at the method's own threshold)
flips under each perturbation: which method is robust to compression. Writes probe.csv (every
score) and summary.csv into <run>/robustness/.
"""
from __future__ import annotations

from pathlib import Path

from ..cli import add_backbone_args, backbone_from_args, resolve_device
from ..errors import DataError


def add_arguments(p) -> None:
    p.add_argument("run", help="run folder written by `dfdet evaluate`")
    p.add_argument("--checkpoints", default="checkpoints", help="folder holding one checkpoint folder per method")
    p.add_argument("--methods", nargs="*", default=[], help="only these methods (default: the run's)")
    p.add_argument("--per-dataset", type=int, default=50,
                   help="faces per dataset (half real, half fake, first by manifest order); 0 = all")
    p.add_argument("--out", help="folder for probe.csv and summary.csv (default <run>/robustness)")
    add_backbone_args(p)


def pick_rows(preds, per_dataset: int):
    if per_dataset <= 0:
        return preds
    import pandas as pd
    parts = [g.head(max(1, per_dataset // 2)) for _, g in preds.groupby(["dataset", "label"], sort=True)]
    return pd.concat(parts).sort_index()


def run(args) -> int:
    from tqdm.auto import tqdm

    from ..artifacts import load_run
    from ..backbone import load_clip
    from ..fileio import atomic_write
    from ..images import open_image
    from ..inference import DetectorBank
    from ..robustness import flip_summary, probe_faces
    r = load_run(args.run)
    root = Path(r.info.get("data_root", "."))
    rows = pick_rows(r.predictions, args.per_dataset)
    if rows.empty:
        raise DataError(f"{args.run} has no predictions to probe")
    device = resolve_device(args.device)
    bank = DetectorBank(load_clip(backbone_from_args(args), device), args.checkpoints,
                        args.methods or None, device)
    names = [n for n in bank.ready if not args.methods or n in args.methods]
    if not names:
        raise DataError(f"no method is ready in {args.checkpoints}")
    tables = []
    for idx, row in tqdm(list(rows.iterrows()), desc="robustness", disable=None):
        try:
            face = open_image(root / row["path"])
        except DataError as err:
            print(f"skipped {err}")
            continue
        t = probe_faces(bank, [face], names)
        t["face"] = idx
        t["dataset"], t["label"], t["path"] = row["dataset"], row["label"], row["path"]
        tables.append(t)
    if not tables:
        raise DataError("no face of the run could be read; is its data_root still there?")
    import pandas as pd
    table = pd.concat(tables, ignore_index=True)
    summary = flip_summary(table)
    out = Path(args.out or Path(args.run) / "robustness")
    atomic_write(out / "probe.csv", lambda p: table.to_csv(p, index=False))
    atomic_write(out / "summary.csv", lambda p: summary.to_csv(p, index=False))
    if bank.demo:
        print("NOTE: random-weight backbone: these numbers are meaningless (demo/testing only)")
    print("share of faces whose verdict flips (at each method's own threshold)")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"written {out / 'probe.csv'} and {out / 'summary.csv'}")
    return 0
