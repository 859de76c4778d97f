"""Add the UMAP projections (2-D and 3-D, per method) to an existing run folder, so the dashboard never fits.

Resumable: a method whose projection matches its embeddings is skipped, and the neighbour search of a
large run is kept beside the projections, so an interrupted run goes on where it stopped.
"""
from __future__ import annotations

from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("run_folder", help="a run folder written by `dfdet evaluate`")
    p.add_argument("--methods", nargs="*", default=[], help="only these method columns (default: every one)")
    p.add_argument("--dims", nargs="*", type=int, default=[2, 3], choices=[2, 3], help="projection dimensions")
    p.add_argument("--fit-n", type=int, default=None,
                   help="fit UMAP on at most this many faces (stratified); place the rest (default 15000)")
    p.add_argument("--force", action="store_true", help="recompute even when a current projection exists")


def run(args) -> int:
    from ..viz.projection import ProjectParams, project_run
    params = ProjectParams() if args.fit_n is None else ProjectParams(fit_n=max(10, args.fit_n))
    written = project_run(Path(args.run_folder), args.methods or None, tuple(args.dims), params, args.force)
    print(f"{len(written)} projection file(s) written" if written else "projections already current: nothing to do")
    for p in written:
        print(f"  {p}")
    return 0
