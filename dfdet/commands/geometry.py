"""Alignment and uniformity (Wang & Isola) of a run's stored embeddings, per method and dataset.

alignment = mean ‖x_i − x_j‖² over same-class pairs (lower: classes tighter); uniformity =
log mean exp(−2‖x_i − x_j‖²) over all pairs (lower: spread over the sphere). Groups larger than
--max-faces are measured on a seeded sample; the table says how many faces each row used."""
from __future__ import annotations

import json

from ..artifacts import load_run
from ..learn.geometry import MAX_FACES, GeometryConfig, geometry_table
from .inspect import format_table


def add_arguments(p) -> None:
    p.add_argument("run", help="a run folder written by `dfdet evaluate` (with embeddings/)")
    p.add_argument("--methods", nargs="*", default=None, help="only these methods (default: every one with embeddings)")
    p.add_argument("--max-faces", type=int, default=MAX_FACES, help="faces per group at most (seeded sample beyond)")
    p.add_argument("--json", action="store_true", help="print JSON records")


def run(args) -> int:
    from ..errors import DataError
    if args.max_faces < 2:
        raise DataError("--max-faces must be at least 2 (a pair)")
    run_ = load_run(args.run)
    df = geometry_table(run_, args.methods, GeometryConfig(max_faces=args.max_faces))
    if args.json:
        print(json.dumps(df.to_dict("records"), indent=1, default=float))
        return 0
    demo = " (demo run: random-weight backbone, the geometry is meaningless)" if run_.info.get("demo") else ""
    print(f"{args.run}: alignment (lower = tighter classes) and uniformity (lower = more spread){demo}")
    print(format_table(df))
    return 0
