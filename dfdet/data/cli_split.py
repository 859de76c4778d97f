"""Assign leak-free train/val/test splits to a manifest and print the counts per source x split.

Videos that share an identity (FF++ fake A_B with the real videos of A and B) stay on one side.
FF25/FF50/FF75/FF100 keep that share of each split's videos, nested, with the same seed giving
the same splits. Official split files (FF++ train/val/test.json, Celeb-DF's test list) can be
applied instead of the random split.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import DataError


def _fractions(text: str) -> tuple[float, float, float]:
    parts = text.replace(",", ":").split(":")
    try:
        vals = tuple(float(x) for x in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected train:val:test like 70:15:15, got {text!r}") from None
    if len(vals) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers train:val:test, got {text!r}")
    return vals


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .splits import SUBSETS
    p.add_argument("manifest", help="manifest CSV (from `dfdet manifest`)")
    p.add_argument("-o", "--out", help="manifest CSV to write (default: only print the counts)")
    p.add_argument("--subset", default="FF100", choices=list(SUBSETS), help="share of videos kept in every split")
    p.add_argument("--fractions", type=_fractions, default=(70.0, 15.0, 15.0), help="train:val:test shares of videos")
    p.add_argument("--seed", type=int, default=0, help="seed of the group permutation")
    p.add_argument("--datasets", nargs="*", default=[], help="datasets to split (default: all in the manifest)")
    p.add_argument("--others", choices=["keep", "test", "drop"], default="keep",
                   help="rows of datasets not split: keep their split, make them all test, or drop them")
    p.add_argument("--ff-official", metavar="DIR", help="use FF++'s official train/val/test.json from DIR for FF rows")
    p.add_argument("--test-list", nargs=2, metavar=("DATASET", "FILE"), action="append", default=[],
                   help="Celeb-DF-style List_of_testing_videos.txt: its videos become test, "
                        "the dataset's other videos unused")
    p.add_argument("--unit", choices=["videos", "frames"], default="videos", help="what the printed table counts")


def run(args: argparse.Namespace) -> int:
    from .manifest import read_manifest, write_manifest
    from .splits import (SplitConfig, apply_ff_official, apply_test_list, assign_splits, check_no_leaks,
                         count_table, format_counts, read_cdf_test_list)
    df = read_manifest(args.manifest, check_files=False)
    official = {d for d, _ in args.test_list} | ({"FF"} if args.ff_official else set())
    random_sets = [d for d in (args.datasets or sorted(df["dataset"].unique())) if d not in official]
    if random_sets:
        cfg = SplitConfig(fractions=tuple(args.fractions), seed=args.seed, subset=args.subset,
                          datasets=tuple(random_sets), others=args.others if not official else "keep")
        df = assign_splits(df, cfg)
    if args.ff_official:
        df = apply_ff_official(df, args.ff_official)
    for dataset, path in args.test_list:
        df = apply_test_list(df, read_cdf_test_list(path), dataset)
        missing = df.attrs.get("missing_from_test_list", [])
        if missing:
            print(f"note: {len(missing)} listed {dataset} test videos are not in the manifest, e.g. {missing[0]}")
    check_no_leaks(df, args.manifest)
    if (df["split"] == "").all():
        raise DataError("no row was given a split; check --datasets and the official files")
    print(f"{args.manifest}: subset {args.subset}, seed {args.seed}, fractions "
          f"{':'.join(f'{x:g}' for x in args.fractions)}; no video or identity crosses splits")
    print(format_counts(count_table(df, args.unit), args.unit))
    if args.out:
        write_manifest(df, args.out)
        print(f"wrote {Path(args.out)}")
    return 0
