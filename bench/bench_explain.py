"""Saliency maps of the four paper methods on one face, against one plain forward.

Variants (one face, alternating runs, random weights: only the cost is meaningful):
  1 plain forward      VisionBackbone(x) in inference mode: the unit
  4 x gradcam          dfdet.explain Grad-CAM of each method (forward + backward through grad-cam hooks)
  4 x chefer           Chefer relevance of each method (forward keeping attention + autograd.grad)
  4 x rollout          attention rollout of each method (forward keeping attention)
The cache (dfdet.explain.cache) makes a repeated (run, row, method, kind) a file read.

    python -m bench.bench_explain --device cpu [--layers 4]
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench import common
from bench.bench_methods import make_checkpoints
from bench.common import fmt, table


def main(argv: list[str] | None = None) -> Path:
    p = common.base_parser("Saliency maps of four methods on one face vs one plain forward", "results_explain_cpu.md")
    p.add_argument("--layers", type=int, default=0,
                   help="keep only the first N transformer blocks (every block costs the same: ratios carry over)")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    device = common.setup(args)
    t_start = time.perf_counter()

    import pytorch_grad_cam  # noqa: F401  (imported once per process, not per request: kept out of the timings)
    from dfdet.explain.saliency import saliency_maps
    from dfdet.inference import DetectorBank
    from dfdet.methods import PAPER_METHODS
    clip, _ = common.load_backbone(args.model, device, layers=args.layers or None)
    depth = len(clip.model.visual.transformer.resblocks)
    kept = dict(clip.model.visual.named_parameters())  # a truncated model keeps only its own blocks' LayerNorms
    clip.pristine = {k: v for k, v in clip.pristine.items() if k in kept}
    with tempfile.TemporaryDirectory() as tmp:
        make_checkpoints(clip, Path(tmp))
        bank = DetectorBank(clip, tmp, methods=list(PAPER_METHODS), device=str(device))
    s = bank.backbone.visual.image_size
    hw = tuple(s) if isinstance(s, (tuple, list)) else (s, s)
    x = torch.randn(1, 3, *hw, device=device)

    def plain():
        with torch.inference_mode():
            bank.backbone(x)

    def maps(kind):
        def run():
            for n in PAPER_METHODS:
                saliency_maps(bank.method_model(n), x, kind)
        return run

    variants = {"1 plain forward": plain, "4 x gradcam": maps("gradcam"), "4 x chefer": maps("chefer"),
                "4 x rollout": maps("rollout")}
    tm = common.alternate(variants, args.rounds, args.warmup, device)
    rows = [[n, fmt(tm.median(n), 3), fmt(tm.ratio(n, "1 plain forward"), 2),
             fmt(tm.ratio(n, "1 plain forward") / (4 if n.startswith("4 x") else 1), 2)] for n in variants]
    body = [
        f"Model: {args.model}, random weights (cost only)"
        + (f", **depth-truncated to its first {depth} transformer blocks** (--layers: every block costs the same, "
           "and a map costs a fixed number of passes through each block, so the ratios carry over)"
           if args.layers else "") + f"; 1 face; methods: {', '.join(PAPER_METHODS)}.",
        "The machine is shared (load average above): ratios alternate runs so drift hits every variant.",
        "",
        f"Median over {args.rounds} alternating rounds after {args.warmup} warm-up run(s). "
        "`vs 1 forward` = median per-round time(variant)/time(1 plain forward).",
        "",
        table(["variant", "s/request", "vs 1 forward", "per method vs 1 forward"], rows),
        "",
        f"- wall time of this run: {time.perf_counter() - t_start:.0f} s",
        "",
        "## Raw runs (s per request, in round order)",
        "",
        tm.raw(),
    ]
    return common.write_report(args.out, "Saliency maps of four methods on one face",
                               common.command_line("bench.bench_explain", argv), device, "\n".join(body))


if __name__ == "__main__":
    print(main())
