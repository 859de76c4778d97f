"""The one thing every view shares: the loaded models, the run folders, the sample faces and their caches.

One Store serves every visitor. It is read-mostly; the one shared mutable thing, the DetectorBank
(it swaps each method's LayerNorm overlay into one ViT), is used under `model_lock`. Faces are
always chosen by row number in a table the server owns, never by a path a user sent.
The views (dfdet.viz.services) and the start-up work (dfdet.viz.startup) read and fill it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image

from ..artifacts import PRED_PREFIX, Run, list_runs, load_run
from ..config import BackboneConfig
from ..errors import DataError, DfdetError
from . import plots, projection, style
from .media import data_uri, load_face, placeholder
from .umap_cache import UmapCache, file_digest

if TYPE_CHECKING:  # torch and open_clip load after the page is up (see dfdet.viz.startup)
    from ..inference import DetectorBank

log = logging.getLogger(__name__)
WEIGHTS_ENV = "DFDET_CLIP_WEIGHTS"  # the same variable dfdet.backbone reads (kept here to not import torch)
SAMPLES = "samples"  # the sample-manifest source; runs are "run:<name>"
COLOR_BY = ("label", "dataset", "source", "correct")
THUMBS_MAX = 2000  # runs up to this many faces embed hover thumbnails; larger ones fetch a face on demand
THUMB_KEEP = 4096  # faces fetched on hover kept in memory (~2 KB each)
EMB_IN_MEMORY = 128 << 20  # embeddings up to this many float32 bytes are read whole; larger ones are memory-mapped
EMB_KEEP = 2  # (run, method) embeddings kept at once: loaded per method on demand
FIGURE_BYTES = 48 << 20  # finished figures kept, by their JSON size (not by count)


@dataclass
class AppConfig:
    runs: str = "runs"  # folder of run folders written by `dfdet evaluate`
    checkpoints: str = "checkpoints"  # folder of checkpoint folders, one per method
    methods: list[str] = field(default_factory=list)  # registry methods to offer (empty = every registered one)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)  # default: ViT-L-14, openai weights
    manifest: str = ""  # sample faces for Compare; default data_manifests/shared_datasets.csv or a scan of shared/
    data_root: str = ""  # folder the manifest's paths are relative to (default: dfdet.data.manifest's rule)
    cache_dir: str = ""  # UMAP and thumbnail cache; default $DFDET_CACHE or ~/.cache/dfdet
    demo: str = "auto"  # without CLIP weights: "auto" (build in the background at start), "offer" (button), "off"
    demo_root: str = ""  # where dfdet.demo builds and keeps the demo assets (default: dfdet.demo.default_root())
    device: str = "cpu"  # cpu or cuda
    video_frames: int = 16  # frames sampled evenly from an uploaded video
    warm_up: bool = True  # at start, in the background: compile numba, fit missing UMAPs, make thumbnails
    hub_checkpoints: list[str] = field(default_factory=list)  # Hub repos of dfdet checkpoints to pull at start
    hub_runs: list[str] = field(default_factory=list)  # Hub repos holding run folders to pull at start
    import_released: bool = False  # with network: import the paper's model and GenD as live rows at start
    runtime: str = "auto"  # who runs the frozen backbone (dfdet.runtime); auto = the CPU default that met the bar


@dataclass
class ModelStatus:
    mode: str  # "live" (real weights), "demo" (random-weight backbone), "loading", "none" (no model loaded)
    message: str  # what is loaded, or what is missing and how to provide it


def md_escape(text: str) -> str:
    """Messages hold placeholders like <manifest>; Markdown would swallow them as HTML tags."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def default_cache_dir() -> Path:
    return Path(os.environ.get("DFDET_CACHE") or Path.home() / ".cache" / "dfdet")


class Store:
    def __init__(self, cfg: AppConfig):
        self.cfg = cfg
        self.cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
        self.umap = UmapCache(self.cache_dir / "umap")
        self.model_lock = threading.Lock()
        self.bank: DetectorBank | None = None
        self.status = ModelStatus("none", "")
        self.runs: dict[str, Run] = {}
        self.skipped_runs: dict[str, str] = {}  # run folder -> why it is not shown (older layout, damaged)
        self.extra_runs: dict[str, Path] = {}  # name -> folder, runs outside cfg.runs (demo, Hub)
        self._emb: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self._thumbs: dict[str, list[str]] = {}
        self._hover: dict[str, list[str]] = {}
        self._thumb: dict[tuple[str, int], str] = {}  # (run, row) -> one face's hover thumbnail, fetched on demand
        self.spheres = FigureCache(FIGURE_BYTES)  # (run, method, colour, dims, ...) -> finished figure
        self._proj: dict[tuple[str, str, int], projection.Projection] = {}
        self._aligner = None
        self.samples: pd.DataFrame | None = None
        self.samples_root: Path | None = None
        self.samples_note = ""
        self.load_samples()
        self.reload_runs()

    # -- models --------------------------------------------------------------------------------
    def require_bank(self) -> DetectorBank:
        if self.status.mode == "loading":
            raise DfdetError(f"the models are still loading ({self.status.message}); try again in a moment")
        if self.bank is None:
            raise DfdetError("no model is loaded: " + (self.status.message or "CLIP weights are missing").rstrip(".")
                             + f". Provide weights with --clip-weights PATH or ${WEIGHTS_ENV}.")
        return self.bank

    def face_aligner(self):
        from ..data.faces import FaceAligner
        if self._aligner is None:
            self._aligner = FaceAligner()  # loads dlib's ~100 MB landmark model once
        return self._aligner

    def align(self, image: Image.Image):
        from ..data.faces import align_image
        return align_image(image, aligner=self.face_aligner())

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

    def face(self, source: str, row: int) -> tuple[Image.Image, dict]:
        """The face at a row of a source, and its manifest fields."""
        df, root = self.source_table(source)
        row = check_row(row, len(df), source)
        rec = df.iloc[row].to_dict()
        return load_face(root, rec["path"]), rec

    @staticmethod
    def describe(rec: dict) -> str:
        return f"{rec['path']} · {rec['dataset']} / {rec['source']} · ground truth: {truth_of(rec)}"

    # -- runs ----------------------------------------------------------------------------------
    def reload_runs(self) -> None:
        runs: dict[str, Run] = {}
        skipped: dict[str, str] = {}
        from ..swap import recover_swaps
        for note in recover_swaps(self.cfg.runs):  # a re-evaluation killed mid-swap: the old run goes back
            log.warning("%s", note)
        # hidden folders are staging (.X.eval-*, .X.pull-*, .X.replaced): never listed
        named = [(f.name, f) for f in list_runs(self.cfg.runs) if not f.name.startswith(".")]
        named += list(self.extra_runs.items())
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
        for cache in (self._emb, self._thumbs, self._hover, self._thumb, self.spheres, self._proj):
            cache.clear()

    def add_run(self, name: str, folder: Path) -> None:
        """A run from outside cfg.runs (the demo, a Hub repo): shown from now on, in every view."""
        self.extra_runs[name] = Path(folder)
        self.reload_runs()

    def run(self, name: str | None) -> Run:
        if not name and not self.runs:
            demo = " (demo mode builds one at start: see the status line)" if self.cfg.demo != "off" else ""
            raise DataError(f"no runs found in {self.cfg.runs}/: make one with `dfdet evaluate --manifest "
                            f"<manifest.csv> --out {self.cfg.runs}/<name>`{demo}")
        if name not in self.runs:
            known = ", ".join(self.runs) or "none yet"
            raise DataError(f"unknown run {name!r}; runs: {known}")
        return self.runs[name]

    def methods_of(self, run: Run) -> list[str]:
        """The run's method columns in the one order every view uses (the registry's)."""
        return style.method_order(run.methods, lambda m: run.info.get("methods", {}).get(m, {}).get("method", m))

    def _chosen_thresholds(self, run_name: str) -> dict[str, float]:
        """method -> the threshold its checkpoint chose on validation, as the run's metrics record it."""
        try:
            m = self.run(run_name).metrics
        except DfdetError:
            return {}
        if m.empty or "threshold" not in m or "method" not in m:
            return {}
        first = m.dropna(subset=["threshold"]).drop_duplicates("method")
        return {str(k): float(v) for k, v in zip(first["method"], first["threshold"])}

    def validation_threshold(self, run_name: str, method: str) -> float | None:
        """The threshold `method` chose on validation (its checkpoint's calibration, recorded in the run's
        metrics), or None for a checkpoint trained before calibration existed."""
        return self._chosen_thresholds(run_name).get(method)

    def thresholds(self, run_name: str) -> dict[str, float]:
        """method -> its validation threshold, for the run's methods that have one (a verdict filter's)."""
        chosen = self._chosen_thresholds(run_name)
        return {m: chosen[m] for m in self.run(run_name).methods if m in chosen}

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
        """(z, norm) of one method: float32 in memory for a small run, the stored float16 memory-mapped for a
        large one (nothing read until used); the last EMB_KEEP are kept."""
        key = (run_name, method)
        if key not in self._emb:
            path = projection.embeddings_file(self.run(run_name).folder, method)
            if not path.is_file():
                raise DataError(f"run {run_name} has no embeddings for {method}")
            z, norm = projection.load_embeddings(path)
            if z.size * 4 <= EMB_IN_MEMORY:
                z = np.asarray(z, dtype=np.float32)
            while len(self._emb) >= EMB_KEEP:
                self._emb.pop(next(iter(self._emb)))
            self._emb[key] = (z, np.asarray(norm, dtype=np.float32))
        return self._emb[key]

    def projection_info(self, run_name: str, method: str, dims: int = 2) -> projection.Projection:
        """The run's stored projection; for a small run without one, a fit here (cached on disk)."""
        key = (run_name, method, dims)
        if key in self._proj:
            return self._proj[key]
        run = self.run(run_name)
        found = projection.load(run.folder, method, dims)
        if found is not None and len(found.coords) != len(run.predictions):
            found = None  # written for another predictions.csv: never shown against these rows
        if found is None:
            n = len(run.predictions)
            if n > projection.APP_FIT_MAX:
                raise DataError(f"run {run_name} has {n} faces and no stored {dims}-D projection for {method}: "
                                f"precompute it with `dfdet project {run.folder}` (fitting {n} faces here would "
                                "take minutes)")
            z, _ = self.embeddings(run_name, method)
            coords = self.umap.get(projection.embeddings_file(run.folder, method), z, dims)
            found = projection.Projection(coords, np.arange(n), "fitted")
        self._proj[key] = found
        return found

    def projection(self, run_name: str, method: str, dims: int = 2) -> np.ndarray:
        return self.projection_info(run_name, method, dims).coords

    def projection_cached(self, run_name: str, method: str, dims: int = 2) -> bool:
        """Whether the projection is ready without a fit (the view then says how long a cold one takes)."""
        run = self.run(run_name)
        if (run_name, method, dims) in self._proj or projection.projection_file(run.folder, method, dims).is_file():
            return True
        return len(run.predictions) > projection.APP_FIT_MAX or \
            self.umap.cached(projection.embeddings_file(run.folder, method), dims)

    def thumbnails(self, run_name: str) -> list[str]:
        """Hover thumbnails (data URIs) for every row of a small run, cached on disk by predictions + root.

        A run above THUMBS_MAX faces gets none ([]): its figure embeds no image, a face is fetched on click."""
        if run_name in self._thumbs:
            return self._thumbs[run_name]
        run = self.run(run_name)
        if len(run.predictions) > THUMBS_MAX:
            return []
        root = self.run_data_root(run)
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
            thumbs = [face_uri(root, rel) for rel in run.predictions["path"]]
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(thumbs))
                os.replace(tmp, path)
            except OSError as err:
                log.warning("thumbnail cache not written: %s", err)
        self._thumbs[run_name] = thumbs
        return thumbs

    def thumbnail(self, run_name: str, row) -> str:
        """One face's hover thumbnail (a 48-px JPEG data URI, ~2 KB), for a run too large to embed them all;
        the last THUMB_KEEP are kept."""
        run = self.run(run_name)
        row = check_row(row, len(run.predictions), f"run {run_name}")
        key = (run_name, row)
        if key not in self._thumb:
            if len(self._thumb) >= THUMB_KEEP:
                self._thumb.pop(next(iter(self._thumb)))
            self._thumb[key] = face_uri(self.run_data_root(run), run.predictions["path"].iloc[row])
        return self._thumb[key]

    def hover_text(self, run_name: str, rows: np.ndarray | None = None) -> list[str]:
        """Per face (every row, cached per run, or only `rows`): dataset/source, truth, path, each p_fake."""
        if rows is None and run_name in self._hover:
            return self._hover[run_name]
        run = self.run(run_name)
        preds = run.predictions if rows is None else run.predictions.iloc[rows]
        methods = self.methods_of(run)
        labels = {m: method_label(run, m) for m in methods}
        cols = {m: preds[PRED_PREFIX + m].to_numpy() for m in methods}
        truth = np.where(preds["label"].astype(int).to_numpy() == 1, "fake", "real")
        lines = []
        for i, (ds, src, path) in enumerate(zip(preds["dataset"], preds["source"], preds["path"])):
            scores = "<br>".join(f"{md_escape(labels[m])}: p_fake {cols[m][i]:.3f}" for m in methods)
            lines.append(f"<b>{md_escape(ds)} / {md_escape(src)}</b> ({truth[i]})<br>{md_escape(path)}<br>{scores}")
        if rows is None:
            self._hover[run_name] = lines
        return lines


class FigureCache(dict):
    """Finished figures bounded by their JSON bytes (a 10^6-face run's figure must not evict by count alone)."""

    def __init__(self, budget: int):
        super().__init__()
        self.budget = budget
        self.sizes: dict = {}

    def __setitem__(self, key, fig) -> None:
        size = len(fig.to_json()) if hasattr(fig, "to_json") else 0
        self.pop(key, None)
        while self and sum(self.sizes.values()) + size > self.budget:
            self.pop(next(iter(self)))
        super().__setitem__(key, fig)
        self.sizes[key] = size

    def pop(self, key, *default):
        self.sizes.pop(key, None)
        return super().pop(key, *default)

    def clear(self) -> None:
        super().clear()
        self.sizes.clear()

    def nbytes(self) -> int:
        return sum(self.sizes.values())


def method_label(run: Run, method: str) -> str:
    from .roc import method_label as label
    return label(run, method)


def truth_of(rec: dict) -> str:
    return {0: "real", 1: "fake"}.get(int(rec["label"]), "?")


def face_uri(root, rel: str) -> str:
    """A face's hover thumbnail; a grey square when its file is not on this machine."""
    try:
        return data_uri(load_face(root, rel))
    except DfdetError:
        return data_uri(placeholder())


def check_row(row, n: int, what: str) -> int:
    """A row number from a visitor: a whole number in range, else one clear message (3.7 is not a row)."""
    try:
        value = float(row)
    except (TypeError, ValueError):
        raise DataError(f"row must be a whole number, not {row!r}") from None
    if not np.isfinite(value) or value != int(value):
        raise DataError(f"row must be a whole number, not {row!r}")
    value = int(value)
    if not 0 <= value < n:
        raise DataError(f"row {value} is out of range: {what} has rows 0..{n - 1}")
    return value
