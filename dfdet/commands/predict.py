"""Score images with every available method: one row per image and method, p_real and p_fake.

Images are expected to be face crops; --align first detects and aligns the largest face (dlib).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

from ..calibration import DEFAULT_THRESHOLD, Calibration, verdict
from ..cli import add_backbone_args, backbone_from_args, resolve_device
from ..errors import DataError
from ..images import UPLOAD_MAX_SIDE, open_image


def add_arguments(p) -> None:
    p.add_argument("images", nargs="+", help="image files (face crops, or photos with --align)")
    p.add_argument("--checkpoints", default="checkpoints", help="folder holding one checkpoint folder per method")
    p.add_argument("--methods", nargs="*", default=[], help="only these registry methods")
    p.add_argument("--align", action="store_true", help="detect and align the largest face first")
    p.add_argument("--csv", help="also write the table to this CSV file")
    add_backbone_args(p)
    from ..runtime import add_runtime_arg
    add_runtime_arg(p)


def run(args) -> int:
    from ..backbone import load_clip
    from ..inference import DetectorBank
    device = resolve_device(args.device)
    images, names, skipped = [], [], []
    for path in args.images:
        try:  # one bad file is reported and skipped; the others are still scored
            im = open_image(path, max_side=UPLOAD_MAX_SIDE if args.align else 0)  # detection needs no more
        except DataError as err:
            print(f"skipped {err}", file=sys.stderr)
            skipped.append(str(err))
            continue
        if args.align:
            from ..data.faces import align_image
            res = align_image(im)
            if not res.crops:
                print(f"skipped {path}: {res.message}", file=sys.stderr)
                skipped.append(f"{path}: {res.message}")
                continue
            if res.message:
                print(f"{path}: {res.message}")
            im = res.crops[0]
        images.append(im)
        names.append(path)
    if not images:
        raise DataError("no image could be scored: " + "; ".join(skipped))
    from ..runtime import describe, resolve_runtime
    cfg = backbone_from_args(args)
    runtime = resolve_runtime(args.runtime, device, cfg.model)
    clip = load_clip(cfg, device)  # a failure here is one line; the runtime line follows a loaded backbone
    print(describe(runtime), file=sys.stderr)
    bank = DetectorBank(clip, args.checkpoints, args.methods or None, device, runtime=runtime,
                        progress=lambda msg: print(msg, file=sys.stderr))
    if not bank.ready:
        for n, e in bank.entries.items():
            print(f"{n}: {e.message}")
        raise DataError(f"no method is ready in {args.checkpoints}")
    probs = bank.predict(bank.preprocess(images))
    cals = {m: Calibration.from_meta(bank.entries[m].meta) for m in probs}  # each method's own threshold (val)
    rows = [{"image": Path(n).name, "method": bank.entries[m].label, "p_real": 1 - float(p[i]),
             "p_fake": float(p[i]), "threshold": cals[m].threshold if cals[m] else DEFAULT_THRESHOLD,
             # NaN >= threshold is False: a non-finite score would read as "real"
             "verdict": verdict(float(p[i]), cals[m]) if math.isfinite(p[i]) else "error"}
            for i, n in enumerate(names) for m, p in probs.items()]
    table = pd.DataFrame(rows)
    broken = sorted({r["method"] for r in rows if r["verdict"] == "error"})
    for label in broken:
        print(f"{label}: error: the model's score is not a number (NaN or infinite); no verdict", file=sys.stderr)
    if bank.demo:
        print("NOTE: random-weight backbone: these scores are meaningless (demo/testing only)")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"verdict: fake when p_fake >= the method's threshold (chosen on validation; {DEFAULT_THRESHOLD} for "
          "uncalibrated checkpoints), uncertain inside its conformal band")
    for n, e in bank.entries.items():
        if e.status != "ready":
            print(f"{n}: {e.message}")
    if args.csv:
        table.to_csv(args.csv, index=False)
    return 1 if skipped or broken else 0

