"""All four paper methods on one face, as the dashboard asks for them, against bare backbone forwards.

Variants (one preprocessed face, alternating runs):
  4 bare forwards       VisionBackbone(x) four times: the reference cost of four predictions
  bank.predict          DetectorBank.predict: one forward per method, LayerNorm overlay swapped in between
  bank_predict (multi_ln)  dfdet.multi_ln.bank_predict: the four methods in one batched forward with
                        per-group LayerNorm gamma/beta (the linear probe is the group with the base LNs)
  1 bare forward        for scale
Target (CPU): four predictions <= 1.25x four bare forwards.

    python -m bench.bench_methods --device cpu
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from bench import common
from bench.common import fmt, secs, table

TARGET = 1.25


def make_checkpoints(clip, root: Path, seed: int = 0) -> None:
    """A checkpoint per paper method on this backbone, with LayerNorms and heads moved off their init."""
    from dfdet.backbone import VisionBackbone
    from dfdet.checkpoint import save_checkpoint
    from dfdet.methods import PAPER_METHODS, get_method
    g = torch.Generator().manual_seed(seed)
    bb = VisionBackbone(clip.model.visual)
    for name in PAPER_METHODS:
        spec = get_method(name)
        t = {"head.weight": 0.05 * torch.randn(2, bb.width, generator=g), "head.bias": torch.zeros(2)}
        if spec.trains == "layernorm":
            for ln_name, ln in bb.layer_norms().items():
                for kind in ("weight", "bias"):
                    base = getattr(ln, kind).detach().float().cpu()
                    t[f"backbone.visual.{ln_name}.{kind}"] = base + 0.05 * torch.randn(base.shape, generator=g)
        meta = {"method": name, "label": spec.label,
                "backbone": {"model": clip.config.model, "weights": clip.weights_id}}
        save_checkpoint(root / name, t, meta)


def main(argv: list[str] | None = None) -> Path:
    p = common.base_parser("Four methods on one face vs four bare forwards", "results_methods_cpu.md")
    p.add_argument("--batch", type=int, default=1, help="faces per request (the dashboard sends 1)")
    p.add_argument("--precision", default="fp32", help="fp32, or bf16 autocast (the GPU path)")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    device = common.setup(args)
    t_start = time.perf_counter()

    from dfdet.inference import DetectorBank
    from dfdet.methods import PAPER_METHODS
    from dfdet.multi_ln import bank_predict
    clip, bb = common.load_backbone(args.model, device)
    with tempfile.TemporaryDirectory() as tmp:
        make_checkpoints(clip, Path(tmp))
        bank = DetectorBank(clip, tmp, methods=list(PAPER_METHODS), device=str(device))
    if sorted(bank.ready) != sorted(PAPER_METHODS):
        raise SystemExit(f"bank did not load the four methods: { {n: e.message for n, e in bank.entries.items()} }")
    backbone = bank.backbone
    s = backbone.visual.image_size
    hw = tuple(s) if isinstance(s, (tuple, list)) else (s, s)
    x = torch.randn(args.batch, 3, *hw, device=device)

    with torch.inference_mode(), common.precision_ctx(device, args.precision):
        ref, ours = bank.predict(x), bank_predict(bank, x)
    diff = max(float(np.abs(ref[n] - ours[n]).max()) for n in PAPER_METHODS)

    def bare(k):
        def run():
            with torch.inference_mode(), common.precision_ctx(device, args.precision):
                for _ in range(k):
                    backbone(x)
        return run

    def predict():
        with torch.inference_mode(), common.precision_ctx(device, args.precision):
            return bank.predict(x)

    def multi():
        with torch.inference_mode(), common.precision_ctx(device, args.precision):
            return bank_predict(bank, x)

    variants = {"4 bare forwards": bare(4), "bank.predict": predict, "bank_predict (multi_ln)": multi,
                "1 bare forward": bare(1)}
    tm = common.alternate(variants, args.rounds, args.warmup, device)
    ref_name = "4 bare forwards"
    rows, targets = [], []
    for n in variants:
        r = tm.ratio(n, ref_name)
        rows.append([n, secs(tm.median(n)), fmt(args.batch * (4 if n != "1 bare forward" else 1) / tm.median(n), 3),
                     fmt(r, 3)])
        if n in ("bank.predict", "bank_predict (multi_ln)"):
            targets.append([n, fmt(r, 3), f"<= {TARGET}", "met" if r <= TARGET else "MISSED"])
    body = [
        f"Model: {args.model}, random weights; precision {args.precision}; {args.batch} face(s) per request; "
        f"methods: {', '.join(PAPER_METHODS)} "
        "(checkpoints with LayerNorms and heads moved off their init, so every method differs).",
        "",
        f"Same answers: max |p_fake(bank_predict) - p_fake(bank.predict)| = {diff:.1e}.",
        "",
        f"Median over {args.rounds} alternating rounds after {args.warmup} warm-up run(s). "
        "`vs 4 bare` = median per-round time(variant)/time(4 bare forwards).",
        "",
        table(["variant", "s/request", "method-predictions/s", "vs 4 bare"], rows),
        "",
        f"## Target: four predictions <= {TARGET}x four bare forwards",
        "",
        table(["path", "vs 4 bare", "target", "result"], targets),
        "",
        f"- wall time of this run: {time.perf_counter() - t_start:.0f} s",
        "",
        "## Raw runs (s per request, in round order)",
        "",
        tm.raw(),
    ]
    if any(t[-1] == "MISSED" for t in targets):
        body += ["", "## Profile: bank.predict (one request, operators by self time)", "",
                 common.profile_table(predict, device)]
    return common.write_report(args.out, "Four methods on one face", common.command_line("bench.bench_methods", argv),
                               device, "\n".join(body))


if __name__ == "__main__":
    print(main())
