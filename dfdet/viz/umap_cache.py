"""UMAP projections of a run's embeddings, fitted once and cached on disk per run and method.

A fit of ~2,000 faces takes seconds, and numba compiles UMAP's kernels on first use (tens of
seconds on a small CPU), so the app warms numba up at start and never refits what is cached.
Neighbours are computed exactly with numpy (the embeddings are unit vectors, so cosine distance
is one matrix product); that also skips pynndescent's own, slower, compile step.

New points (a SLERP path) are placed by their nearest embedded neighbours: an inverse-distance
weighted mean of the neighbours' coordinates, the same start point umap's `transform` refines.
It is exact at the run's own points and needs no pickled reducer on disk.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
_FIT_LOCK = threading.Lock()  # numba's parallel layer must not be entered from two threads at once


@dataclass(frozen=True)
class UmapParams:
    n_neighbors: int = 15  # neighbourhood size: small keeps local clusters, large keeps the global layout
    min_dist: float = 0.1  # how tightly points may pack in the projection
    seed: int = 0  # fixed, so a cached projection is reproducible
    version: int = 1  # bump when the fitting code changes, to invalidate old cache files


def unit_rows(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float32)
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def exact_knn(z: np.ndarray, k: int, queries: np.ndarray | None = None,
              chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """k nearest rows of z (cosine distance) for each query row (default: z itself, self included)."""
    z = unit_rows(z)
    q = z if queries is None else unit_rows(queries)
    k = min(k, len(z))
    idx = np.empty((len(q), k), dtype=np.int32)
    dist = np.empty((len(q), k), dtype=np.float32)
    for s in range(0, len(q), chunk):
        sim = q[s:s + chunk] @ z.T
        part = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        psim = np.take_along_axis(sim, part, 1)
        order = np.argsort(-psim, axis=1, kind="stable")
        idx[s:s + chunk] = np.take_along_axis(part, order, 1)
        dist[s:s + chunk] = np.clip(1.0 - np.take_along_axis(psim, order, 1), 0.0, 2.0)
    return idx, dist


def fit_umap(z: np.ndarray, dims: int = 2, params: UmapParams = UmapParams()) -> np.ndarray:
    """Project unit vectors to `dims` coordinates; tiny sets (< 8 rows) fall back to PCA."""
    z = unit_rows(z)
    n = len(z)
    if n < 8:
        centred = z - z.mean(0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        out = np.zeros((n, dims), dtype=np.float32)
        proj = centred @ vt[:dims].T
        out[:, :proj.shape[1]] = proj
        return out
    import umap
    k = max(2, min(params.n_neighbors, n - 1))
    idx, dist = exact_knn(z, k)
    with _FIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reducer = umap.UMAP(n_neighbors=k, n_components=dims, min_dist=params.min_dist, metric="cosine",
                            random_state=params.seed, precomputed_knn=(idx, dist, None), verbose=False)
        return reducer.fit_transform(z).astype(np.float32)


def warm_up() -> float:
    """Compile UMAP's numba kernels on a tiny random set; returns the seconds it took."""
    t0 = time.perf_counter()
    z = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    fit_umap(z, 2, UmapParams(n_neighbors=5))
    return time.perf_counter() - t0


def place(z_new: np.ndarray, z_ref: np.ndarray, coords_ref: np.ndarray, k: int = 8) -> np.ndarray:
    """Coordinates for new unit vectors: inverse-distance weighted mean of their k nearest references."""
    idx, dist = exact_knn(z_ref, k, queries=z_new)
    w = 1.0 / (dist + 1e-6)
    w /= w.sum(1, keepdims=True)
    return np.einsum("nk,nkd->nd", w, coords_ref[idx]).astype(np.float32)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class UmapCache:
    """Projections keyed by the embeddings file's content, so a re-run invalidates them by itself."""

    def __init__(self, root: str | Path, params: UmapParams = UmapParams()):
        self.root = Path(root)
        self.params = params
        self._digests: dict[tuple[str, float, int], str] = {}
        self._memory: dict[str, np.ndarray] = {}

    def key(self, embeddings_file: Path, dims: int) -> str:
        st = embeddings_file.stat()
        stamp = (str(embeddings_file.resolve()), st.st_mtime, st.st_size)
        if stamp not in self._digests:
            self._digests[stamp] = file_digest(embeddings_file)
        blob = json.dumps({"data": self._digests[stamp], "dims": dims, **asdict(self.params)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def path(self, embeddings_file: Path, dims: int) -> Path:
        return self.root / f"{self.key(embeddings_file, dims)}.npz"

    def cached(self, embeddings_file: Path, dims: int) -> bool:
        return self.path(embeddings_file, dims).is_file()

    def get(self, embeddings_file: Path, z: np.ndarray, dims: int = 2) -> np.ndarray:
        """The projection of z (the contents of embeddings_file), from memory, disk, or a new fit."""
        path = self.path(embeddings_file, dims)
        if path.name in self._memory:
            return self._memory[path.name]
        coords = None
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as f:
                    coords = f["coords"]
            except (OSError, ValueError, KeyError):
                log.warning("ignoring unreadable UMAP cache file %s", path)
        if coords is None or coords.shape != (len(z), dims):
            t0 = time.perf_counter()
            coords = fit_umap(z, dims, self.params)
            log.info("UMAP %dD of %d points in %.1f s", dims, len(z), time.perf_counter() - t0)
            self._write(path, coords)
        self._memory[path.name] = coords
        return coords

    def _write(self, path: Path, coords: np.ndarray) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{path.name}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, coords=coords)
            os.replace(tmp, path)
        except OSError as err:  # a read-only disk only costs refits, never a failed view
            log.warning("UMAP cache not written (%s); projections will be refitted next start", err)
