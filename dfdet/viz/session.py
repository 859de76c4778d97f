"""What the dashboard holds while it runs: the models, the run folders, the sample faces, the caches.

One Session serves every visitor. It is read-mostly; the one shared mutable thing, the
DetectorBank (it swaps each method's LayerNorm overlay into one ViT), is used under a lock.
Faces are always chosen by row number in a table the server owns, never by a path a user sent.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from typing import TYPE_CHECKING

from ..artifacts import PRED_PREFIX, Run, list_runs, load_run
from ..config import BackboneConfig
from ..errors import DataError, DfdetError, WeightsUnavailable
from ..images import open_image
from . import compare, errors, plots, roc
from .media import check_upload, data_uri, load_face, placeholder
from .umap_cache import UmapCache, place, warm_up

if TYPE_CHECKING:  # torch and open_clip load after the page is up (see load_models_async)
    from ..backbone import LoadedClip
    from ..inference import DetectorBank

log = logging.getLogger(__name__)
WEIGHTS_ENV = "DFDET_CLIP_WEIGHTS"  # the same variable dfdet.backbone reads (kept here to not import torch)

SAMPLES = "samples"  # the sample-manifest source; runs are "run:<name>"
COLOR_BY = ("label", "dataset", "source", "correct")


@dataclass
class AppConfig:
    runs: str = "runs"  # folder of run folders written by `dfdet evaluate`
    checkpoints: str = "checkpoints"  # folder of checkpoint folders, one per method
    methods: list[str] = field(default_factory=list)  # registry methods to offer (empty = every registered one)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)  # default: ViT-L-14, openai weights
    manifest: str = ""  # sample faces for Compare; default data_manifests/shared_datasets.csv or a scan of shared/
    data_root: str = ""  # folder the manifest's paths are relative to (default: dfdet.data.manifest's rule)
    cache_dir: str = ""  # UMAP and thumbnail cache; default $DFDET_CACHE or ~/.cache/dfdet
    demo: str = "offer"  # without CLIP weights: "offer" (button; reuse built assets), "auto" (build at start), "off"
    demo_root: str = "runs/demo"  # where dfdet.demo.ensure_demo builds and keeps the demo assets
    device: str = "cpu"  # cpu or cuda
    video_frames: int = 16  # frames sampled evenly from an uploaded video
    warm_up: bool = True  # at start, in the background: compile numba, fit missing UMAPs, make thumbnails


@dataclass
class ModelStatus:
    mode: str  # "live" (real weights), "demo" (random-weight backbone), "loading", "none" (no model loaded)
    message: str  # what is loaded, or what is missing and how to provide it


def md_escape(text: str) -> str:
    """Messages hold placeholders like <manifest>; Markdown would swallow them as HTML tags."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def default_cache_dir() -> Path:
    return Path(os.environ.get("DFDET_CACHE") or Path.home() / ".cache" / "dfdet")


class Session:
    def __init__(self, cfg: AppConfig, clip: LoadedClip | None = None, load_models: bool = True):
        """load_models=False leaves the models to load_models_async(), so a server can answer first."""
        self.cfg = cfg
        self.cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
        self.umap = UmapCache(self.cache_dir / "umap")
        self.model_lock = threading.Lock()
        self.bank: DetectorBank | None = None
        self.status = ModelStatus("none", "")
        self.runs: dict[str, Run] = {}
        self.skipped_runs: dict[str, str] = {}  # run folder -> why it is not shown (older layout, damaged)
        self._extra_runs: dict[str, Path] = {}  # name -> folder, runs outside cfg.runs (the demo run)
        self._emb: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self._thumbs: dict[str, list[str]] = {}
        self._hover: dict[str, list[str]] = {}
        self._spheres: dict[tuple, plots.FigureDict] = {}  # (run, method, colour, dims) -> finished figure
        self._aligner = None
        self.warmup_done = threading.Event()
        self.warmup_seconds: float | None = None
        self.load_samples()
        self.reload_runs()
        if load_models:
            self.load_models(clip)
        else:
            self.status = ModelStatus("loading", f"loading {cfg.backbone.model} "
                                                 f"({cfg.backbone.weights or cfg.backbone.pretrained or 'random'} "
                                                 "weights; the first start downloads them when there is network)")

    # -- models --------------------------------------------------------------------------------
    def load_models(self, clip: LoadedClip | None = None) -> None:
        from ..backbone import load_clip
        from ..inference import DetectorBank
        try:
            clip = clip or load_clip(self.cfg.backbone, self.cfg.device)
        except WeightsUnavailable as err:
            self.status = ModelStatus("none", str(err))
            if self.cfg.demo != "off" and (self.cfg.demo == "auto" or self._demo_built()):
                self.enable_demo()
            return
        self._use_bank(DetectorBank(clip, self.cfg.checkpoints, self.cfg.methods or None, self.cfg.device),
                       self.cfg.checkpoints)

    def load_models_async(self) -> threading.Thread:
        """Load CLIP and the checkpoints in the background; views that need them say so until then."""
        def work():
            try:
                self.load_models()
            except Exception as err:  # noqa: BLE001 - any failure must end "loading" with a message
                log.exception("model loading failed")
                self.status = ModelStatus("none", f"loading the models failed: {type(err).__name__}: {err}")
        th = threading.Thread(target=work, name="dfdet-load-models", daemon=True)
        th.start()
        return th

    def _use_bank(self, bank: DetectorBank, checkpoints: str | Path) -> None:
        self.bank = bank
        cfg = bank.clip.config
        ready = [bank.entries[n].label for n in bank.ready]
        if bank.demo:
            self.status = ModelStatus("demo", f"{cfg.model} with random weights (seed {cfg.seed}), checkpoints from "
                                              f"{checkpoints}; ready: {', '.join(ready) or 'none'}")
        else:
            self.status = ModelStatus("live", f"{cfg.model} ({bank.clip.weights_id}), checkpoints from {checkpoints}; "
                                              f"ready: {', '.join(ready) or 'none'}")

    def _demo_built(self) -> bool:
        stamp = Path(self.cfg.demo_root) / "demo.json"
        try:
            from ..demo import DEMO_VERSION
            return stamp.is_file() and json.loads(stamp.read_text()).get("version") == DEMO_VERSION
        except (ImportError, ValueError, OSError):
            return False

    def enable_demo(self, progress=None) -> str:
        """Build (or reuse) the tiny random-backbone demo and switch every view to it."""
        if self.status.mode == "live":
            return "Real CLIP weights are loaded; demo mode is not needed."
        if self.status.mode == "loading":
            raise DfdetError("the models are still loading; wait until the banner says what is available")
        if self.status.mode == "demo":
            return "Demo mode is already on: every score shown is meaningless (random-weight backbone)."
        try:
            from ..demo import ensure_demo
        except ImportError:
            raise DfdetError("demo mode is not available in this version of dfdet") from None
        weights_msg = self.status.message
        # Other visitors see "loading" (and their model calls wait for it) while the demo is built.
        self.status = ModelStatus("loading", "starting demo mode: the first time, the tiny random-weight backbone "
                                             "is trained for a few steps per method and evaluated (minutes, once)")
        from ..backbone import load_clip
        from ..inference import DetectorBank
        try:
            assets = ensure_demo(self.cfg.demo_root, progress=progress or (lambda msg: log.info(msg)))
            clip = load_clip(assets.backbone_cfg, self.cfg.device)
            bank = DetectorBank(clip, assets.checkpoints_dir, self.cfg.methods or None, self.cfg.device)
        except BaseException:
            self.status = ModelStatus("none", weights_msg)
            raise
        self._extra_runs["demo"] = Path(assets.run_dir)
        self.reload_runs()
        if self.samples is None or self.samples.empty:
            self.load_samples()
        with self.model_lock:
            self._use_bank(bank, assets.checkpoints_dir)
        if weights_msg:
            self.status.message += f". Real weights: {weights_msg}"
        return "Demo mode is on: every score shown is meaningless (random-weight backbone)."

    @property
    def demo(self) -> bool:
        return self.status.mode == "demo"

    def banner(self) -> str:
        """The line on top of every view: live, demo, or what is missing and how to fix it."""
        s = self.status
        if s.mode == "loading":
            return f"### Loading models…\n{s.message}. The run views already work."
        if s.mode == "live":
            text = f"**Models:** {md_escape(s.message.rstrip('.'))}."
        elif s.mode == "demo":
            text = (f"### ⚠ DEMO MODE: every score is meaningless\nThe backbone has random weights; the checkpoints "
                    f"were trained for a few steps on it only so the views can be explored. "
                    f"{md_escape(s.message.rstrip('.'))}.")
        else:
            text = (f"### CLIP weights are not available\n{md_escape(s.message)}\n\n**To provide them:** run "
                    f"`python app.py --clip-weights PATH` or set `{WEIGHTS_ENV}=PATH` (an open_clip ViT-L-14 "
                    f"checkpoint file), then restart. The run views below still work from the artifacts on disk.")
            if self.cfg.demo != "off":
                text += (" You can also start **demo mode**: a tiny random-weight backbone that makes every view "
                         "explorable, with scores that are meaningless.")
        missing = [f"- {e.label}: {md_escape(e.message)}" for e in (self.bank.entries.values() if self.bank else [])
                   if e.status != "ready"]
        if missing:
            text += "\n\n**Not available:**\n" + "\n".join(missing)
        if self.skipped_runs:
            text += "\n\n**Run folders not shown:**\n" + "\n".join(
                f"- {md_escape(folder)}: {md_escape(why)}" for folder, why in self.skipped_runs.items())
        return text

    # -- samples -------------------------------------------------------------------------------
    def load_samples(self) -> None:
        """The faces Compare can pick from: the configured manifest, the shipped one, or a scan of shared/."""
        from ..data.manifest import SHARED_MANIFEST, default_data_root, read_manifest, scan_folder, shared_dir
        self.samples, self.samples_root, self.samples_note = None, None, ""
        try:
            if self.cfg.manifest:
                root = Path(self.cfg.data_root) if self.cfg.data_root else default_data_root(self.cfg.manifest)
                self.samples, self.samples_root = read_manifest(self.cfg.manifest, root, check_files=False), root
            elif SHARED_MANIFEST.is_file() and (shared_dir() / "datasets").is_dir():
                root = shared_dir() / "datasets"
                self.samples, self.samples_root = read_manifest(SHARED_MANIFEST, root, check_files=False), root
            elif (shared_dir() / "datasets").is_dir():
                root = shared_dir() / "datasets"
                self.samples, self.samples_root = scan_folder(root), root
            else:
                self.samples_note = "no sample faces: pass --manifest and --data-root, or set $DFDET_SHARED"
        except DfdetError as err:
            self.samples_note = f"sample manifest not usable: {err}"

    def source_table(self, source: str) -> tuple[pd.DataFrame, Path]:
        """(rows, data root) of a face source: the sample manifest or a run's predictions."""
        if source == SAMPLES:
            if self.samples is None:
                raise DataError(self.samples_note or "no sample faces loaded")
            return self.samples, self.samples_root
        if source.startswith("run:"):
            run = self.run(source[4:])
            return run.predictions, self.run_data_root(run)
        raise DataError(f"unknown face source {source!r}")

    def sample_filters(self) -> dict[str, list[str]]:
        if self.samples is None:
            return {"dataset": [], "source": []}
        return {"dataset": sorted(self.samples["dataset"].unique()), "source": sorted(self.samples["source"].unique())}

    def random_row(self, dataset: str = "any", source: str = "any", label: str = "any",
                   seed: int | None = None) -> int:
        df, _ = self.source_table(SAMPLES)
        m = np.ones(len(df), dtype=bool)
        if dataset and dataset != "any":
            m &= (df["dataset"] == dataset).to_numpy()
        if source and source != "any":
            m &= (df["source"] == source).to_numpy()
        if label and label != "any":
            m &= (df["label"].astype(int) == (1 if label == "fake" else 0)).to_numpy()
        rows = np.nonzero(m)[0]
        if not len(rows):
            raise DataError(f"no sample face matches dataset={dataset}, source={source}, label={label}")
        return int(np.random.default_rng(seed).choice(rows))

    def face(self, source: str, row: int) -> tuple[Image.Image, dict]:
        """The face at a row of a source, and its manifest fields."""
        df, root = self.source_table(source)
        row = int(row)
        if not 0 <= row < len(df):
            raise DataError(f"row {row} is out of range: {source} has rows 0..{len(df) - 1}")
        rec = df.iloc[row].to_dict()
        return load_face(root, rec["path"]), rec

    @staticmethod
    def describe(rec: dict) -> str:
        label = {0: "real", 1: "fake"}.get(int(rec["label"]), "?")
        return f"{rec['path']} · {rec['dataset']} / {rec['source']} · ground truth: {label}"

    # -- Compare -------------------------------------------------------------------------------
    def _require_bank(self) -> DetectorBank:
        if self.status.mode == "loading":
            raise DfdetError(f"the models are still loading ({self.status.message}); try again in a moment")
        if self.bank is None:
            raise DfdetError("no model is loaded: " + (self.status.message or "CLIP weights are missing") +
                             f". Provide weights with --clip-weights PATH or ${WEIGHTS_ENV}, or start demo mode.")
        return self.bank

    def _face_aligner(self):
        from ..data.faces import FaceAligner
        if self._aligner is None:
            self._aligner = FaceAligner()  # loads dlib's ~100 MB landmark model once
        return self._aligner

    def _align(self, image: Image.Image):
        from ..data.faces import align_image
        return align_image(image, aligner=self._face_aligner())

    def analyse_image(self, path: str | Path | None) -> compare.Prediction:
        """An uploaded photo: detect and align the largest face, then score it with every method."""
        bank = self._require_bank()
        image = open_image(check_upload(path, "image"))
        res = self._align(image)
        if res.crop is None:
            face = image
            note = f"{res.message}. Scored the whole image as given (fine for an already-cropped face)."
        else:
            face, note = res.crop, res.message or "one face found and aligned"
        with self.model_lock:
            return compare.image_prediction(bank, face, note)

    def analyse_sample(self, source: str, row: int) -> compare.Prediction:
        """A face crop from a manifest or run (already aligned by the data pipeline): score it as is."""
        bank = self._require_bank()
        face, rec = self.face(source, row)
        with self.model_lock:
            return compare.image_prediction(bank, face, self.describe(rec))

    def analyse_video(self, path: str | Path | None) -> compare.Prediction:
        """An uploaded video: aligned faces from evenly spaced frames, per-frame and video-level scores."""
        bank = self._require_bank()
        path = check_upload(path, "video")
        faces, times, note = video_faces(path, self.cfg.video_frames, self._face_aligner())
        with self.model_lock:
            return compare.video_prediction(bank, faces, times, note)

    # -- runs ----------------------------------------------------------------------------------
    def reload_runs(self) -> None:
        runs: dict[str, Run] = {}
        skipped: dict[str, str] = {}
        named = [(f.name, f) for f in list_runs(self.cfg.runs)] + list(self._extra_runs.items())
        for name, folder in named:
            try:
                run = load_run(folder)
            except (DfdetError, OSError, ValueError, KeyError) as err:
                log.warning("skipping run %s: %s", folder, err)
                skipped[str(folder)] = (str(err) if isinstance(err, DfdetError)
                                        else f"unreadable ({type(err).__name__}: {err})")
                continue
            if name in runs:
                name = f"{folder.parent.name}/{folder.name}"
            runs[name] = run
        self.runs = runs
        self.skipped_runs = skipped
        for cache in (self._emb, self._thumbs, self._hover, self._spheres):
            cache.clear()

    def run(self, name: str | None) -> Run:
        if not name and not self.runs:
            raise DataError(f"no runs found in {self.cfg.runs}/: make one with `dfdet evaluate --manifest "
                            f"<manifest.csv> --out {self.cfg.runs}/<name>`"
                            + (" or start demo mode" if self.status.mode == "none" and self.cfg.demo != "off" else ""))
        if name not in self.runs:
            known = ", ".join(self.runs) or "none; run `dfdet evaluate` to make one"
            raise DataError(f"unknown run {name!r}; runs: {known}")
        return self.runs[name]

    @staticmethod
    def run_is_demo(run: Run) -> bool:
        return bool(run.info.get("demo"))

    def run_label(self, name: str) -> str:
        return f"{name} (DEMO: meaningless)" if self.run_is_demo(self.runs[name]) else name

    def run_data_root(self, run: Run) -> Path:
        """Where a run's face paths live on this machine: its recorded root, else the sample root."""
        recorded = Path(run.info.get("data_root", ""))
        if run.info.get("data_root") and recorded.is_dir():
            return recorded
        if self.cfg.data_root:
            return Path(self.cfg.data_root)
        return self.samples_root or recorded

    def embeddings(self, run_name: str, method: str) -> tuple[np.ndarray, np.ndarray]:
        key = (run_name, method)
        if key not in self._emb:
            z, norm = self.run(run_name).embeddings(method)
            self._emb[key] = (z.astype(np.float32), norm.astype(np.float32))
        return self._emb[key]

    def projection(self, run_name: str, method: str, dims: int = 2) -> np.ndarray:
        run = self.run(run_name)
        z, _ = self.embeddings(run_name, method)
        return self.umap.get(run.folder / "embeddings" / f"{method}.npz", z, dims)

    def thumbnails(self, run_name: str) -> list[str]:
        """Hover thumbnails (data URIs) for every row of a run, cached on disk by predictions + root."""
        if run_name in self._thumbs:
            return self._thumbs[run_name]
        run = self.run(run_name)
        root = self.run_data_root(run)
        from .umap_cache import file_digest
        import hashlib
        where = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:8]  # hash() differs per process
        key = file_digest(run.folder / "predictions.csv")[:20] + "_" + where
        path = self.cache_dir / "thumbs" / f"{key}.json"
        thumbs = None
        if path.is_file():
            try:
                thumbs = json.loads(path.read_text())
            except (OSError, ValueError):
                thumbs = None
        if not thumbs or len(thumbs) != len(run.predictions):
            thumbs = []
            for rel in run.predictions["path"]:
                try:
                    thumbs.append(data_uri(load_face(root, rel)))
                except DfdetError:
                    thumbs.append(data_uri(placeholder()))
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(thumbs))
                os.replace(tmp, path)
            except OSError as err:
                log.warning("thumbnail cache not written: %s", err)
        self._thumbs[run_name] = thumbs
        return thumbs

    def hover_text(self, run_name: str) -> list[str]:
        """Per face: dataset/source, truth, path and every method's p_fake (cached per run)."""
        if run_name in self._hover:
            return self._hover[run_name]
        run = self.run(run_name)
        preds = run.predictions
        labels = {m: roc.method_label(run, m) for m in run.methods}
        cols = {m: preds[PRED_PREFIX + m].to_numpy() for m in run.methods}
        truth = np.where(preds["label"].astype(int).to_numpy() == 1, "fake", "real")
        lines = []
        for i, (ds, src, path) in enumerate(zip(preds["dataset"], preds["source"], preds["path"])):
            scores = "<br>".join(f"{labels[m]}: p_fake {cols[m][i]:.3f}" for m in run.methods)
            lines.append(f"<b>{ds} / {src}</b> ({truth[i]})<br>{path}<br>{scores}")
        self._hover[run_name] = lines
        return lines

    # -- Hypersphere ---------------------------------------------------------------------------
    def hypersphere(self, run_name: str, method: str, color_by: str = "label", dims: int = 2) -> plots.FigureDict:
        """The run's faces on the sphere (UMAP), built once per (run, method, colour, dims) and kept."""
        run = self.run(run_name)
        if method not in run.methods:
            raise DataError(f"run {run_name} has no method {method!r}; it has {', '.join(run.methods)}")
        if color_by not in COLOR_BY:
            raise DataError(f"colour by one of {COLOR_BY}, not {color_by!r}")
        if dims not in (2, 3):
            raise DataError("dims must be 2 or 3")
        key = (run_name, method, color_by, dims)
        if key not in self._spheres:
            coords = self.projection(run_name, method, dims)
            groups = plots.color_groups(run.predictions, color_by, PRED_PREFIX + method,
                                        float(run.info.get("threshold", 0.5)))
            title = f"{roc.method_label(run, method)}: L2-normalised embeddings, UMAP {dims}-D ({len(coords)} faces)"
            if len(self._spheres) >= 24:  # a few MB each: keep the recent views only
                self._spheres.pop(next(iter(self._spheres)))
            self._spheres[key] = plots.sphere_figure(coords, groups, self.hover_text(run_name),
                                                     self.thumbnails(run_name), self.run_is_demo(run), title)
        return self._spheres[key]

    def point(self, run_name: str, row: int) -> tuple[Image.Image, str]:
        """A face of a run, large, with its truth and every method's recorded p_fake (Markdown)."""
        run = self.run(run_name)
        image, rec = self.face(f"run:{run_name}", row)
        scores = ", ".join(f"{roc.method_label(run, m)} {run.predictions[PRED_PREFIX + m].iloc[row]:.3f}"
                           for m in run.methods)
        return image, f"**Row {row}**: {self.describe(rec)}\n\np_fake: {scores}"

    def random_pair(self, run_name: str, kind: str = "different class", seed: int | None = None) -> tuple[int, int]:
        """Two rows of a run: same class or one real and one fake."""
        labels = self.run(run_name).predictions["label"].astype(int).to_numpy()
        rng = np.random.default_rng(seed)
        if kind == "same class":
            classes = [c for c in (0, 1) if (labels == c).sum() >= 2]
            if not classes:
                raise DataError("no class has two faces in this run")
            rows = np.nonzero(labels == rng.choice(classes))[0]
            a, b = rng.choice(rows, 2, replace=False)
        else:
            real, fake = np.nonzero(labels == 0)[0], np.nonzero(labels == 1)[0]
            if not len(real) or not len(fake):
                raise DataError("this run does not hold both real and fake faces")
            a, b = rng.choice(real), rng.choice(fake)
        return int(a), int(b)

    def head_for(self, run: Run, method: str) -> tuple[str | None, str]:
        """The bank entry whose head belongs to this run's features, or why there is none."""
        if self.bank is None:
            return None, "p(fake) along the path needs the method's head: no model is loaded."
        entry = self.bank.entries.get(method)
        if entry is None or entry.status != "ready":
            why = entry.message if entry is not None else "no checkpoint of this name is loaded"
            return None, f"p(fake) along the path needs the {method} head: {why}"
        bb = run.info.get("backbone", {})
        cfg = self.bank.clip.config
        if bb.get("model") != cfg.model or bb.get("weights") != self.bank.clip.weights_id:
            return None, (f"this run was made on {bb.get('model')}/{bb.get('weights')}, but the loaded backbone is "
                          f"{cfg.model}/{self.bank.clip.weights_id}: its head does not apply to these features.")
        return method, ""

    def slerp_path(self, run_name: str, method: str, a: int, b: int, color_by: str = "label", dims: int = 2,
                   steps: int = 41):
        """The great circle from face A to face B: drawn in the UMAP picture, scored by the method's head.

        Returns (sphere figure, p-vs-t figure, explanation).
        """
        run = self.run(run_name)
        z, norm = self.embeddings(run_name, method)
        n = len(z)
        a, b = int(a), int(b)
        for r in (a, b):
            if not 0 <= r < n:
                raise DataError(f"row {r} is out of range: the run has rows 0..{n - 1}")
        with single_threaded():
            return self._slerp_path(run, run_name, method, z, norm, a, b, color_by, dims, steps)

    def _slerp_path(self, run, run_name, method, z, norm, a, b, color_by, dims, steps):
        import torch

        from ..slerp import slerp
        t = np.linspace(0.0, 1.0, steps, dtype=np.float32)
        za = torch.from_numpy(z[a]).expand(steps, -1)
        zb = torch.from_numpy(z[b]).expand(steps, -1)
        path = slerp(za, zb, torch.from_numpy(t)).numpy()
        coords = self.projection(run_name, method, dims)
        path_xy = place(path, z, coords)
        name, why = self.head_for(run, method)
        p = None
        spec = self.bank.entries[name].spec if name is not None else None
        if spec is not None:
            # Norm methods see the direction only; the others see it scaled by the interpolated norm.
            feats = path if spec.normalize else path * ((1 - t) * norm[a] + t * norm[b])[:, None]
            with self.model_lock:
                p = self.bank.head_p_fake(name, feats)
        col = PRED_PREFIX + method
        recorded = (float(run.predictions[col].iloc[a]), float(run.predictions[col].iloc[b]))
        demo = self.run_is_demo(run)
        sphere = plots.with_path(self.hypersphere(run_name, method, color_by, dims), path_xy, t, p)
        label = roc.method_label(run, method)
        curve = plots.slerp_curve(t, p, label, demo, recorded, why)
        angle = float(np.degrees(np.arccos(np.clip(np.dot(z[a], z[b]), -1, 1))))
        la, lb = (("fake" if int(run.predictions["label"].iloc[r]) else "real") for r in (a, b))
        text = (f"A = row {a} ({la}), B = row {b} ({lb}); angle between them on the sphere: {angle:.1f}°. "
                f"Recorded p_fake: A {recorded[0]:.3f}, B {recorded[1]:.3f}.")
        if p is not None:
            crosses = int(np.sum(np.diff((p >= 0.5).astype(int)) != 0))
            text += (f" Along the path p_fake goes from {p[0]:.3f} to {p[-1]:.3f} and crosses 0.5 "
                     f"{crosses} time(s).")
            if not spec.normalize:
                text += " (This method has no L2-norm: its head sees the path scaled by the interpolated norm.)"
        else:
            text += " " + why
        if demo:
            text += " " + plots.DEMO_NOTE + "."
        return sphere, curve, text

    # -- Errors --------------------------------------------------------------------------------
    def error_cases(self, run_name: str, method: str, dataset: str = "all", threshold: float = 0.5,
                    k: int = 12) -> dict[str, list[tuple[Image.Image, str, int]]]:
        """Gallery items (face, caption, run row) for FP, FN and method disagreement."""
        run = self.run(run_name)
        if method not in run.methods:
            raise DataError(f"run {run_name} has no method {method!r}")
        preds = run.predictions
        root = self.run_data_root(run)
        col = PRED_PREFIX + method
        out: dict[str, list] = {}
        for kind in errors.KINDS:
            rows = errors.confident_mistakes(preds, method, kind, dataset, threshold, k)
            out[kind] = [self._item(root, r, f"{kind.upper()} p_fake {r[col]:.3f} · {r['dataset']}/{r['source']}", i)
                         for i, r in rows.iterrows()]
        dis = errors.disagreements(preds, run.methods, dataset, k)
        labels = {m: roc.method_label(run, m) for m in run.methods}
        out["disagree"] = []
        for i, r in dis.iterrows():
            hi = max(run.methods, key=lambda m: r[PRED_PREFIX + m])
            lo = min(run.methods, key=lambda m: r[PRED_PREFIX + m])
            cap = (f"spread {r['spread']:.2f}: {labels[hi]} {r[PRED_PREFIX + hi]:.2f} vs {labels[lo]} "
                   f"{r[PRED_PREFIX + lo]:.2f} · truth {'fake' if int(r['label']) else 'real'}")
            out["disagree"].append(self._item(root, r, cap, i))
        return out

    @staticmethod
    def _item(root: Path, rec, caption: str, row: int) -> tuple[Image.Image, str, int]:
        try:
            im = load_face(root, rec["path"])
        except DfdetError:
            im, caption = placeholder(160), caption + " (image file not on this machine)"
        im.thumbnail((192, 192))
        return im, caption, int(row)

    # -- start-up ------------------------------------------------------------------------------
    def start_warm_up(self) -> threading.Thread:
        """In the background: compile numba, fit missing 2-D projections, make hover thumbnails."""
        def work():
            t0 = time.perf_counter()
            try:
                warm_up()
                for name, run in list(self.runs.items()):
                    self.thumbnails(name)
                    for m in run.methods:
                        try:
                            self.projection(name, m, 2)
                        except DfdetError as err:
                            log.warning("no projection for %s/%s: %s", name, m, err)
            except Exception:  # warm-up is an optimisation; a failure shows up again, with its message, on use
                log.exception("warm-up failed")
            finally:
                self.warmup_seconds = time.perf_counter() - t0
                self.warmup_done.set()
        th = threading.Thread(target=work, name="dfdet-warm-up", daemon=True)
        th.start()
        return th


@contextlib.contextmanager
def single_threaded():
    """Small-tensor math on one thread: for a 41 x 1024 path, waking the BLAS/OpenMP thread pools costs
    more than the math on a busy CPU (side by side in bench/results_dashboard.md). The model queue
    runs one call at a time, so no concurrent inference is slowed by this."""
    import torch
    from threadpoolctl import threadpool_limits
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(before)


def video_faces(path: Path, n_frames: int, aligner) -> tuple[list[Image.Image], np.ndarray, str]:
    """Aligned faces of n_frames evenly spaced frames (frames without a face skipped), their times, a note."""
    from ..data.video import video_faces as sample_video_faces
    res = sample_video_faces(path, n_frames, aligner=aligner)
    faces = [f.faces.crop for f in res.frames if f.faces.crop is not None]
    times = np.array([f.time_s for f in res.frames if f.faces.crop is not None], dtype=float)
    if not faces:
        raise DataError(f"{path.name}: no face found in any of the {len(res.frames)} sampled frames"
                        + (f" ({res.message})" if res.message else ""))
    note = f"{len(faces)} of {len(res.frames)} sampled frames had a face"
    if res.message:
        note += f"; {res.message}"
    return faces, times, note
