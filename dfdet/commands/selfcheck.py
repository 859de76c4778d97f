"""Check that dfdet computes the paper's numbers: score the reference's 12 sample crops with the
paper's released model.ckpt and compare with the p(fake) values its author published."""
from __future__ import annotations

import os


def add_arguments(p) -> None:
    from ..selfcheck import CHECKPOINT_URL, CKPT_ENV, TOLERANCE
    p.add_argument("--checkpoint", default=os.environ.get(CKPT_ENV),
                   help=f"the paper's model.ckpt ({CHECKPOINT_URL}) or a folder from `dfdet import-checkpoint` "
                        f"(default ${CKPT_ENV})")
    p.add_argument("--data-root", help="folder holding CDFv2/... sample crops (default ../shared/datasets)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="fp32, or bf16 autocast like the reference's inference.py")
    from ..runtime import add_runtime_arg
    add_runtime_arg(p)
    p.add_argument("--tolerance", type=float, default=TOLERANCE, help="largest accepted |diff| of p(fake)")


def run(args) -> int:
    from ..data.manifest import shared_dir
    from ..runtime import describe
    from ..selfcheck import CHECKPOINT_URL, CKPT_ENV, SOURCE, run_selfcheck
    if not args.checkpoint:
        print("dfdet selfcheck needs the paper's released checkpoint, which is not here.\n"
              f"  1. download model.ckpt: {CHECKPOINT_URL}\n"
              f"  2. run: dfdet selfcheck --checkpoint model.ckpt   (or set ${CKPT_ENV})\n"
              "It needs nothing else: the checkpoint holds the whole CLIP vision tower. The 12 sample crops are "
              "read from ../shared/datasets/CDFv2 (or --data-root).")
        return 2
    data_root = args.data_root or shared_dir() / "datasets"
    result = run_selfcheck(args.checkpoint, data_root, device=args.device, precision=args.precision,
                           tolerance=args.tolerance, runtime=args.runtime, progress=print)
    print(describe(result.runtime))
    print(f"published values: {SOURCE}")
    print(result.table())
    return 0 if result.passed else 1
