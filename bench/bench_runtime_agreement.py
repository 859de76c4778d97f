"""How closely each CPU runtime agrees with torch-fp32 on the issue's face set (#16): z_cls cosine and
|p_fake - p_fake(fp32)| per method. Speed is bench_runtimes' job; this is the agreement half, on many faces.

Faces: all of FF and CDFv2 plus --dfdc DFDC faces, in a stratified order (round robin over dataset/source),
so a run cut short, by --deadline or a kill, has still measured every dataset: the report is rewritten after
every batch, with the faces it covers per dataset.

Stage 1: torch-fp32 and --runtimes (default onnx-int8: int8 weights, a quarter of the fp32 model) batch by
batch over the whole set, until done or --deadline. Stage 2: --subset-runtimes (full fp32 copies of the ViT:
onnx-fp32, openvino-fp32) on the first --subset faces of that order, after the torch backbone is freed, so
one fp32 ViT is in memory at a time. Artefacts come from --cache (built there first if missing).

Model: random weights, checkpoints whose LayerNorms and heads were moved off their init (bench_methods).

    nice -n 10 python -m bench.bench_runtime_agreement --dfdc 200 --cache /tmp/rtcache --deadline 03:40
"""
from __future__ import annotations

import datetime as _dt
import gc
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from bench import common
from bench.bench_runtimes import COS_MIN, DP_MAX, PeakRss_max, build
from bench.common import table

ARTEFACT_OF = {"onnx-fp32": "onnx-fp32", "onnx-int8": "onnx-int8", "openvino-fp32": "onnx-fp32",
               "openvino-int8": "onnx-int8"}  # the exported file each runtime runs
EXACT = ("torch-fp32",)


def stratified_faces(shared: Path, n_dfdc: int) -> list[tuple[str, Path]]:
    """(dataset, path) for all of FF and CDFv2 and n_dfdc DFDC faces (half real, half fake, name order),
    interleaved round robin over datasets, and within a dataset over its sources, so that every prefix of
    the order spans every dataset (and as many sources as it can)."""
    root = shared / "datasets"
    per_ds: list[list[tuple[str, Path]]] = []
    for ds, pattern in (("FF", "*.png"), ("CDFv2", "*.png")):
        folder = root / ds
        sources = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        per_ds.append([(ds, f) for f in _round_robin([sorted(s.rglob(pattern)) for s in sources])])
    take = {"real": (n_dfdc + 1) // 2, "fake": n_dfdc // 2}
    dfdc = [sorted((root / "DFDC" / src).rglob("*.jpg"))[:n] for src, n in take.items()]
    per_ds.append([("DFDC", f) for f in _round_robin(dfdc)])
    return _round_robin(per_ds)


def _round_robin(groups: list[list]) -> list:
    out, i = [], 0
    while any(i < len(g) for g in groups):
        out += [g[i] for g in groups if i < len(g)]
        i += 1
    return out


def _deadline(text: str) -> float | None:
    """HH:MM (UTC, today; tomorrow if already past) -> epoch seconds."""
    if not text:
        return None
    hh, mm = (int(x) for x in text.split(":"))
    now = _dt.datetime.now(_dt.timezone.utc)
    t = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    return (t if t > now else t + _dt.timedelta(days=1)).timestamp()


def main(argv: list[str] | None = None) -> Path:
    p = common.base_parser("CPU runtimes' agreement with torch-fp32 on the shared face set",
                           "results_cpu_runtimes_agreement.md")
    p.add_argument("--runtimes", nargs="*", default=["onnx-int8"],
                   help="compared on every face, batch by batch with the reference (int8 ones: small)")
    p.add_argument("--subset-runtimes", nargs="*", default=["onnx-fp32", "openvino-fp32"],
                   help="compared on the first --subset faces after stage 1, the torch backbone freed first")
    p.add_argument("--subset", type=int, default=24, help="faces for --subset-runtimes (a prefix of the order)")
    p.add_argument("--dfdc", type=int, default=200, help="DFDC faces added to all of CDFv2 and FF")
    p.add_argument("--faces", type=int, default=0, help="only the first N faces of the order (0 = all)")
    p.add_argument("--batch", type=int, default=8, help="faces per forward (x4 methods)")
    p.add_argument("--deadline", default="", help="HH:MM UTC: stage 1 stops after the batch that passes it")
    p.add_argument("--shared", default=str(common.REPO.parent / "shared"), help="the shared data folder")
    p.add_argument("--cache", default="", help="artefact folder (default: a new, empty one: builds take minutes)")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    device = common.setup(args)
    t_start, stop_at = time.perf_counter(), _deadline(args.deadline)

    from PIL import Image

    from bench.bench_methods import make_checkpoints
    from dfdet import runtime as rt
    from dfdet.inference import DetectorBank
    from dfdet.methods import PAPER_METHODS
    from dfdet.multi_ln import _head, stacked_tensors

    faces = stratified_faces(Path(args.shared), args.dfdc)
    if args.faces:
        faces = faces[: args.faces]
    if not faces:
        raise SystemExit(f"no faces under {args.shared}/datasets")
    clip, _ = common.load_backbone(args.model, device)
    with tempfile.TemporaryDirectory() as tmp:
        make_checkpoints(clip, Path(tmp))
        bank = DetectorBank(clip, tmp, methods=list(PAPER_METHODS), device=str(device))
    backbone = bank.backbone
    overlays = [{**bank._base_ln, **bank.entries[n].tensors} for n in PAPER_METHODS]
    gamma, beta = (t.detach() for t in stacked_tensors(backbone, overlays))
    heads = [({k: v for k, v in bank.entries[m].tensors.items() if k.startswith("head.")},
              bank.entries[m].spec.normalize) for m in PAPER_METHODS]
    preprocess = bank.clip.preprocess
    cache = Path(args.cache or tempfile.mkdtemp(prefix="dfdet-bench-agreement-"))
    full = [n for n in args.runtimes if n not in EXACT]
    subset = [n for n in args.subset_runtimes if n not in EXACT and n not in full]
    artefacts: dict[str, Path] = {}  # kind -> the file for these weights (stage 2 runs without the backbone)
    for kind in sorted({ARTEFACT_OF[n] for n in full + subset if n in ARTEFACT_OF}):  # while the backbone is here
        t = time.perf_counter()
        art = rt.ensure_artefact(kind, backbone, model_name=args.model, folder=cache, progress=print)
        artefacts[kind] = art.path
        print(f"{kind}: {'built' if art.built else 'cached'} in {time.perf_counter() - t:.0f} s", flush=True)
    print(f"{len(faces)} faces ({', '.join(f'{d} {c}' for d, c in _count(faces, range(len(faces))).items())}); "
          f"load average {common.load_average()}", flush=True)

    outs: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = defaultdict(dict)  # runtime -> face -> (p [k], z [k,D])
    failed: dict[str, str] = {}
    notes: list[str] = []

    def run(name: str, engine, idx: list[int]) -> None:
        pix = torch.stack([preprocess(Image.open(faces[i][1]).convert("RGB")) for i in idx])
        with torch.inference_mode():
            z = engine(pix, gamma, beta).float()
            pf = torch.stack([_head(z[j], h, norm)[0] for j, (h, norm) in enumerate(heads)]).numpy()
        z = z.numpy()
        for j, i in enumerate(idx):
            outs[name][i] = (pf[:, j], z[:, j])

    def report() -> Path:
        return _report(args, argv, device, faces, outs, failed, notes, list(PAPER_METHODS), t_start)

    engines = {"torch-fp32": build("torch-fp32", backbone, cache, None)}
    for n in full:
        try:
            engines[n] = build(n, backbone, cache, None, args.model)
        except Exception as err:  # a runtime that cannot run here is a result, not a crash
            failed[n] = f"{type(err).__name__}: {str(err)[:200]}"
    order = list(range(len(faces)))
    for s in range(0, len(order), args.batch):
        chunk = order[s:s + args.batch]
        for n, eng in engines.items():
            t = time.perf_counter()
            run(n, eng, chunk)
            print(f"  {n}: faces {chunk[0]}-{chunk[-1]} in {time.perf_counter() - t:.0f} s", flush=True)
        report()
        print(f"stage 1: {s + len(chunk)}/{len(order)} faces, {time.perf_counter() - t_start:.0f} s, "
              f"load {common.load_average()}", flush=True)
        if stop_at and time.time() >= stop_at and s + len(chunk) < len(order):
            notes.append(f"stage 1 stopped at --deadline {args.deadline} UTC after {s + len(chunk)} of "
                         f"{len(order)} faces")
            break

    # Stage 2: one full fp32 ViT at a time. The reference is already in `outs`; free the torch copy.
    del engines, bank, backbone, clip
    gc.collect()
    ref_idx = sorted(outs["torch-fp32"])[: args.subset]
    for n in subset:
        t = time.perf_counter()
        try:
            eng = _load(n, artefacts)
        except Exception as err:
            failed[n] = f"{type(err).__name__}: {str(err)[:200]}"
            report()
            continue
        print(f"{n}: loaded in {time.perf_counter() - t:.0f} s", flush=True)
        for s in range(0, len(ref_idx), args.batch):
            run(n, eng, ref_idx[s:s + args.batch])
            report()
            print(f"  {n}: {min(s + args.batch, len(ref_idx))}/{len(ref_idx)} faces", flush=True)
        del eng
        gc.collect()
    return report()


def _load(name: str, artefacts: dict[str, Path]):
    """A runtime over the artefact built (or found) for these weights, without the torch backbone."""
    from bench.bench_runtimes import OpenVino
    from dfdet import runtime as rt
    if name not in ARTEFACT_OF:
        raise ValueError(f"{name} runs on the torch backbone: compare it in --runtimes, not --subset-runtimes")
    path = artefacts[ARTEFACT_OF[name]]
    return OpenVino(path) if name.startswith("openvino") else rt.OnnxEngine(name, path)


def _count(faces, idx) -> dict[str, int]:
    c: dict[str, int] = {}
    for i in idx:
        c[faces[i][0]] = c.get(faces[i][0], 0) + 1
    return c


def agreement(outs, name: str, ref: str = "torch-fp32"):
    """(faces compared, cosine [k, n], |dp| [k, n]) of `name` against the reference on their common faces."""
    idx = sorted(set(outs[name]) & set(outs[ref]))
    if not idx:
        return idx, np.zeros((0, 0)), np.zeros((0, 0))
    pf, rf = (np.stack([outs[r][i][0] for i in idx], axis=1) for r in (name, ref))
    z, zr = (np.stack([outs[r][i][1] for i in idx], axis=1) for r in (name, ref))
    cos = (z * zr).sum(-1) / (np.linalg.norm(z, axis=-1) * np.linalg.norm(zr, axis=-1))
    return idx, cos, np.abs(pf - rf)


def _report(args, argv, device, faces, outs, failed, notes, methods, t_start) -> Path:
    rows, per_method, per_ds = [], [], []
    for n in outs:
        idx, cos, dp = agreement(outs, n)
        if not idx:
            continue
        ok = cos.min() >= COS_MIN and dp.max() <= DP_MAX
        counts = _count(faces, idx)
        rows.append([n, str(len(idx)), ", ".join(f"{d} {c}" for d, c in counts.items()), f"{cos.min():.6f}",
                     f"{cos.mean():.6f}", f"{dp.max():.4f}", f"{dp.mean():.5f}", "yes" if ok else "no"])
        per_method.append([n, str(len(idx))] + [f"{dp[k].max():.4f} / {dp[k].mean():.5f}" for k in range(len(methods))]
                          + [f"{cos[k].min():.6f}" for k in range(len(methods))])
        if n in EXACT:
            continue
        for ds in counts:
            cols = [j for j, i in enumerate(idx) if faces[i][0] == ds]
            worst = int(dp[:, cols].max(axis=1).argmax())
            per_ds.append([n, ds, str(len(cols)), f"{cos[:, cols].min():.6f}", f"{dp[:, cols].max():.4f}",
                           methods[worst]])
    for n, err in failed.items():
        rows.append([n, "0", "", "", "", "", "", f"failed: {err}"])
    total = _count(faces, range(len(faces)))
    body = [
        f"Model: {args.model}, random weights; four methods ({', '.join(methods)}) from checkpoints whose LayerNorms "
        "and heads were moved off their init (bench_methods.make_checkpoints). LayerNorm gamma/beta are fp32 inputs "
        "of every runtime and the heads run in torch fp32: only the frozen backbone differs.",
        "",
        f"Face set: {len(faces)} ({', '.join(f'{d} {c}' for d, c in total.items())}): all of FF and CDFv2 + "
        f"{args.dfdc} DFDC (half real, half fake, first in name order), in a stratified order (round robin over "
        f"dataset/source). Batches of {args.batch} faces x {len(methods)} methods in one grouped forward. "
        f"`--runtimes` on every face with the reference; `--subset-runtimes` on the first {args.subset} faces of the "
        "order, with the torch backbone freed (one fp32 ViT in memory). The `faces` column says what each row covers.",
        "",
        *(f"- {x}" for x in notes),
        "",
        table(["runtime", "faces", "per dataset", "min z_cls cos", "mean z_cls cos", "max abs dp", "mean abs dp",
               f"default bar (cos>={COS_MIN}, dp<={DP_MAX})"], rows),
        "",
        "## Per method: max / mean |p_fake - p_fake(fp32)|, then min z_cls cosine",
        "",
        table(["runtime", "faces"] + [f"{m} dp" for m in methods] + [f"{m} cos" for m in methods], per_method),
        "",
        "## Per dataset",
        "",
        table(["runtime", "dataset", "faces", "min z_cls cos", "max abs dp (any method)", "worst method"], per_ds),
        "",
        f"- process peak RSS: {PeakRss_max():.0f} MB; wall time so far: {time.perf_counter() - t_start:.0f} s",
    ]
    return common.write_report(args.out, "CPU runtimes: agreement with torch-fp32",
                               common.command_line("bench.bench_runtime_agreement", argv), device, "\n".join(body))


if __name__ == "__main__":
    print(main())
