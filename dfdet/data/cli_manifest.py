"""Build a manifest CSV from a <dataset>/<source>/<video>/<frame> folder, or check an existing one.

Paths are stored relative to the scanned folder, so a manifest moves between machines with its
data. Labels come from the source name (a source containing "real" is real); identities from the
declared per-dataset rules (`dfdet manifest --layouts` prints them).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import DataError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", nargs="?", help="data folder laid out as <dataset>/<source>/<video>/<frame>")
    p.add_argument("-o", "--out", help="manifest CSV to write (default: print the counts only)")
    p.add_argument("--identity-map", help="CSV with columns video,identity overriding the declared identity rules")
    p.add_argument("--check", metavar="MANIFEST", help="validate an existing manifest and print its counts")
    p.add_argument("--data-root", help="with --check: folder its paths are relative to "
                                       "(default: shared/datasets for the shipped shared manifest, else its folder)")
    p.add_argument("--no-files", action="store_true", help="with --check: do not check that the files exist")
    p.add_argument("--layouts", action="store_true", help="print the declared dataset layouts (Markdown) and exit")
    p.add_argument("--unit", choices=["videos", "frames"], default="videos", help="what the printed table counts")


def run(args: argparse.Namespace) -> int:
    from .manifest import default_data_root, read_identity_map, read_manifest, scan_folder, write_manifest
    from .splits import count_table, find_leaks, format_counts
    from .tables import layouts_markdown
    if args.layouts:
        print(layouts_markdown(), end="")
        return 0
    if args.check:
        root = Path(args.data_root) if args.data_root else default_data_root(args.check)
        df = read_manifest(args.check, root, check_files=not args.no_files)
        print(f"{args.check}: {len(df)} rows, {df['video'].nunique()} videos, all valid"
              + ("" if args.no_files else f"; every file found under {root}"))
        print(format_counts(count_table(df, args.unit), args.unit))
        leaks = find_leaks(df)
        if leaks:
            print(f"warning: the splits leak ({len(leaks)} problems), e.g. {leaks[0]}; re-split with `dfdet split`")
            return 1
        return 0
    if not args.root:
        raise DataError("give a data folder to scan (or --check MANIFEST, or --layouts)")
    ident = read_identity_map(args.identity_map) if args.identity_map else None
    df = scan_folder(args.root, ident)
    if args.out:
        write_manifest(df, args.out)
        print(f"wrote {args.out}: {len(df)} frames of {df['video'].nunique()} videos; "
              f"paths are relative to {Path(args.root).resolve()}")
    print(format_counts(count_table(df, args.unit), args.unit))
    return 0
