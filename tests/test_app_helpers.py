"""Builders for the dashboard tests: tiny checkpoints, a small manifest of real faces, a real run.

The run is made by `dfdet.evaluate` on the tiny random-weight backbone over faces from ../shared,
so the views are exercised on genuine artifacts (whose scores are, of course, meaningless).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dfdet.artifacts import PRED_PREFIX, write_run
from dfdet.backbone import LoadedClip, VisionBackbone, weights_id
from dfdet.checkpoint import save_checkpoint
from dfdet.data.manifest import scan_folder, write_manifest
from dfdet.methods import PAPER_METHODS, get_method
from dfdet.metrics import metric_table
from dfdet.model import Detector, trainable_count, trainable_state


def make_checkpoints(clip: LoadedClip, folder: Path, methods=PAPER_METHODS, seed: int = 0) -> Path:
    """One checkpoint per method: seeded random head, LayerNorms nudged so the methods differ."""
    for i, name in enumerate(methods):
        spec = get_method(name)
        torch.manual_seed(seed + i)
        det = Detector(VisionBackbone(clip.model.visual), spec)
        state = {k: v.clone() for k, v in trainable_state(det).items()}
        for k in state:
            state[k] = state[k] + 0.3 * torch.randn_like(state[k])
        meta = {"method": name, "label": spec.label,
                "backbone": {"model": clip.config.model, "weights": weights_id(clip.config)},
                "trainable_params": trainable_count(det)}
        save_checkpoint(folder / name, state, meta)
    return folder


def make_manifest(shared: Path, out: Path) -> Path:
    """About 90 real faces: all of FF and CDFv2 (4 frames per video), 16 + 16 from DFDC, 5 + 5 GAN faces."""
    df = scan_folder(shared / "datasets")
    parts = [df[df["dataset"].isin(["FF", "CDFv2"])]]
    for dataset, k in (("DFDC", 16), ("GANFaces", 5)):
        d = df[df["dataset"] == dataset]
        parts += [d[d["label"] == c].head(k) for c in (0, 1)]
    small = pd.concat(parts).reset_index(drop=True)
    small["split"] = "test"
    return write_manifest(small, out)


def calibrate_checkpoints(clip: LoadedClip, shared: Path, folder: Path, methods=PAPER_METHODS) -> None:
    """Each checkpoint calibrated as training does (dfdet.calibration.calibrate on validation scores), on
    16 + 16 DFDC faces that make_manifest's test split does not hold."""
    import json

    from dfdet.calibration import calibrate
    from dfdet.checkpoint import META_FILE
    from dfdet.images import open_image
    from dfdet.inference import DetectorBank
    df = scan_folder(shared / "datasets")
    d = df[df["dataset"] == "DFDC"]
    val = pd.concat([d[d["label"] == c].iloc[16:32] for c in (0, 1)])
    from dfdet.backbone import load_clip
    bank = DetectorBank(load_clip(clip.config), folder, list(methods))  # a fresh model: the bank swaps its LayerNorms
    probs = bank.predict(bank.preprocess([open_image(shared / "datasets" / p) for p in val["path"]]), list(methods))
    for name in methods:
        meta_path = folder / name / META_FILE
        meta = json.loads(meta_path.read_text())
        meta["calibration"] = calibrate(val["label"].to_numpy(), np.asarray(probs[name])).to_meta()
        meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True))


def make_real_run(clip: LoadedClip, shared: Path, tmp: Path, calibrated: bool = False) -> tuple[Path, Path, Path]:
    """(run folder, checkpoints folder, manifest) from dfdet.evaluate on the tiny backbone; `calibrated`:
    the checkpoints carry a validation threshold, as trained ones do (the run then has threshold drift)."""
    from dfdet.evaluate import EvalConfig, evaluate
    from dfdet.inference import DetectorBank
    ckpt = make_checkpoints(clip, tmp / "checkpoints")
    if calibrated:
        calibrate_checkpoints(clip, shared, ckpt)
    manifest = make_manifest(shared, tmp / "manifest.csv")
    bank = DetectorBank(clip, ckpt, list(PAPER_METHODS))
    run = evaluate(EvalConfig(manifest=str(manifest), data_root=str(shared / "datasets"), split="test",
                              checkpoints=str(ckpt), backbone=clip.config, batch_size=32,
                              out=str(tmp / "runs" / "tiny_eval")), bank=bank)
    return run, ckpt, manifest


def make_synthetic_run(folder: Path, n: int = 40, dim: int = 16, seed: int = 0, demo: bool = False,
                       methods=("linear_probe", "ln_norm")) -> Path:
    """A run with controlled scores: p_fake of row i for method m is known to the test."""
    rng = np.random.default_rng(seed)
    label = np.array([(i // 2) % 2 for i in range(n)])  # videos of 2 frames; datasets of 2 real + 2 fake videos
    preds = pd.DataFrame({"path": [f"DS{(i // 4) % 2}/src{label[i]}/v{i // 2}/{i % 2}.png" for i in range(n)],
                          "dataset": [f"DS{(i // 4) % 2}" for i in range(n)],
                          "source": ["real" if c == 0 else "fake" for c in label],
                          "video": [f"v{i // 2}" for i in range(n)], "label": label, "split": "test"})
    # scores: right side of 0.5 except planted cases, the same for every method except row 5
    base = np.where(label == 1, rng.uniform(0.55, 0.95, n), rng.uniform(0.05, 0.45, n))
    base[0] = 0.99  # row 0 is real: the most confident false positive
    base[2] = 0.01  # row 2 is fake: the most confident false negative
    emb = {}
    for j, m in enumerate(methods):
        p = base.copy()
        if j == 1:
            p[5] = 1 - p[5]  # row 5 (real): the methods disagree
        preds[PRED_PREFIX + m] = p.round(6)
        z = rng.normal(size=(n, dim)) + label[:, None] * 2.0
        norm = np.linalg.norm(z, axis=1)
        emb[m] = (z / norm[:, None], norm)
    metrics, roc = metric_table(preds, list(methods))
    info = {"backbone": {"model": "synthetic", "weights": "none"}, "demo": demo, "data_root": str(folder / "faces"),
            "threshold": 0.5, "methods": {m: {"method": m, "label": get_method(m).label} for m in methods}}
    return write_run(folder, info, preds, metrics, roc, emb)


def load_app_module():
    """app.py as a module (it lives at the repo root, outside any package)."""
    import importlib.util
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("dfdet_app", root / "app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def start_app(tmp: Path, shared: Path, tiny_cfg):
    """The dashboard on the tiny backbone with a real run, launched in-process: (app, session, run, module)."""
    from dfdet.backbone import load_clip
    from dfdet.viz.session import AppConfig, Session
    run, ckpt, _ = make_real_run(load_clip(tiny_cfg), shared, tmp)
    clip = load_clip(tiny_cfg)  # a fresh model: a DetectorBank swaps LayerNorms of the model it wraps in place
    cfg = AppConfig(runs=str(tmp / "runs"), checkpoints=str(ckpt), methods=list(PAPER_METHODS), backbone=tiny_cfg,
                    cache_dir=str(tmp / "cache"), demo="off")
    session = Session(cfg, clip=clip)
    session.start_warm_up()
    mod = load_app_module()
    app = mod.build_app(session)
    mod.launch(app, prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    return app, session, run, mod


def demo_session(tmp: Path, shared: Path, tiny_cfg, mp, demo: str = "auto", calibrated: bool = False):
    """A Session whose CLIP weights are missing and whose demo build reuses a real tiny run (fast);
    `calibrated` as make_real_run."""
    import dfdet.backbone
    from dfdet.viz.session import AppConfig, Session
    import dfdet.demo as demo_mod
    from dfdet.config import BackboneConfig
    from dfdet.errors import WeightsUnavailable
    real_load = dfdet.backbone.load_clip
    run, ckpt, manifest = make_real_run(real_load(tiny_cfg), shared, tmp / "built", calibrated)

    def no_weights(cfg, device="cpu"):
        if cfg.pretrained:
            raise WeightsUnavailable("CLIP weights for ViT-L-14 (pretrained='openai') are not on this machine")
        return real_load(cfg, device)

    def fake_ensure_demo(root, progress=None, **kw):
        if progress is not None:
            progress(1, 1, "reuse the test assets", 0.0)
        return demo_mod.DemoAssets(tiny_cfg, ckpt, run, manifest, shared / "datasets")
    mp.setattr(dfdet.backbone, "load_clip", no_weights)
    mp.setattr(demo_mod, "ensure_demo", fake_ensure_demo)
    cfg = AppConfig(runs=str(tmp / "no_runs"), backbone=BackboneConfig(), cache_dir=str(tmp / "cache"),
                    demo_root=str(tmp / "demo"), methods=list(PAPER_METHODS), demo=demo)
    return Session(cfg, load_models=False), (run, ckpt)
