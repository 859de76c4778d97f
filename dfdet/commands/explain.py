"""Saliency maps of every (or the named) method for one face, with their deletion/insertion curves.

Each map explains the method's own "fake" decision (its LayerNorm overlay and head) over the ViT's
patch grid. The curves say whether the map is evidence: removing the most salient patches first
should lower p_fake faster than removing them in random order.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..cli import add_backbone_args, backbone_from_args, resolve_device
from ..errors import DataError


def add_arguments(p) -> None:
    from ..explain.saliency import KINDS
    p.add_argument("image", help="image file (a face crop, or a photo with --align)")
    p.add_argument("--method", nargs="*", default=[], help="registry methods to explain (default: every ready one)")
    p.add_argument("--kind", default="gradcam", choices=list(KINDS),
                   help="; ".join(f"{k}: {v}" for k, v in KINDS.items()))
    p.add_argument("--diff", nargs=2, metavar=("A", "B"),
                   help="also draw map A minus map B (e.g. ln_tuning linear_probe)")
    p.add_argument("--no-curves", action="store_true", help="skip the deletion/insertion curves (faster)")
    p.add_argument("--steps", type=int, default=8, help="points on each deletion/insertion curve")
    p.add_argument("--checkpoints", default="checkpoints", help="folder holding one checkpoint folder per method")
    p.add_argument("--align", action="store_true", help="detect and align the largest face first")
    p.add_argument("-o", "--out", default="explain.png", help="PNG to write")
    p.add_argument("--json", help="also write maps, p_fake and curves to this JSON file")
    add_backbone_args(p)


def run(args) -> int:
    from ..backbone import load_clip
    from ..explain.faithfulness import model_scorer, perturbation_curves
    from ..explain.render import figure, model_view
    from ..explain.saliency import saliency_maps
    from ..fileio import atomic_write
    from ..images import open_image
    from ..inference import DetectorBank
    im = open_image(args.image)
    if args.align:
        from ..data.faces import align_image
        res = align_image(im)
        if not res.crops:
            raise DataError(f"{args.image}: {res.message}")
        im = res.crops[0]
    device = resolve_device(args.device)
    bank = DetectorBank(load_clip(backbone_from_args(args), device), args.checkpoints, args.method or None, device)
    names = [n for n in bank.ready if bank.entries[n].model is None]
    skipped = {n: "no saliency for this family (not a LayerNorm Detector)" for n in bank.ready if n not in names}
    skipped.update({n: e.message for n, e in bank.entries.items() if e.status != "ready"})
    if not names:
        raise DataError("no LayerNorm-family method is ready to explain: "
                        + "; ".join(f"{n}: {m}" for n, m in skipped.items()))
    if args.diff:
        missing = [n for n in args.diff if n not in names]
        if missing:
            raise DataError(f"--diff names {missing}, which are not ready here; ready: {', '.join(names)}")
    pixels = bank.preprocess([im])
    maps, p_fake, curves = {}, {}, {}
    for n in names:
        model = bank.method_model(n)
        maps[n] = saliency_maps(model, pixels, args.kind)[0]
        p_fake[n] = float(model_scorer(model)(pixels)[0])
        if not args.no_curves:
            curves[n] = perturbation_curves(model_scorer(model), pixels[0], maps[n], steps=args.steps).to_dict()
        line = f"{bank.entries[n].label}: p_fake {p_fake[n]:.4f}"
        if n in curves:
            a = curves[n]["auc"]
            line += (f"; deletion AUC {a['deletion']:.3f} (random {a['deletion_random']:.3f}), "
                     f"insertion AUC {a['insertion']:.3f} (random {a['insertion_random']:.3f})")
        print(line)
    if bank.demo:
        print("NOTE: random-weight backbone: these maps and scores are meaningless (demo/testing only)")
    out = figure(model_view(pixels[0]), maps, p_fake, args.kind, args.out, curves or None,
                 tuple(args.diff) if args.diff else None, bank.demo)
    if args.json:
        payload = {"image": str(args.image), "kind": args.kind, "demo": bank.demo, "p_fake": p_fake,
                   "maps": {n: m.round(5).tolist() for n, m in maps.items()}, "curves": curves, "skipped": skipped}
        atomic_write(args.json, lambda t: Path(t).write_text(json.dumps(payload, indent=1)))
    for n, msg in skipped.items():
        print(f"{n}: {msg}")
    print(f"written {out}")
    return 0
