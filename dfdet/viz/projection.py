"""UMAP projections stored in the run folder, computed where compute is (`dfdet evaluate`, `dfdet project`).

    runs/<run>/projections/<method>.<dims>d.npz   coords float32 [N, dims]; sample int32 (the fitted rows);
                                                  meta: JSON (embeddings fingerprint, params, n, seconds)

UMAP's fit is superlinear and its exact neighbour search O(N^2), so a large run is fitted on a
stratified sample (dataset x source x label, at most `fit_n` faces) and every other face is placed
by its approximate nearest sampled neighbours (pynndescent, which umap-learn depends on): the
inverse-distance weighted mean of their coordinates, the start point umap's own transform refines.
A projection is keyed to its embeddings by a fingerprint (size + sampled blocks), so a re-run
invalidates it without hashing gigabytes at every start. Embeddings are memory-mapped from the
stored npz, never copied whole.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import DfdetError

log = logging.getLogger(__name__)
FOLDER = "projections"
APP_FIT_MAX = 5000  # the app fits a run without a stored projection in-process only up to this many faces
CHUNK = 1 << 15  # rows converted/placed at a time (bounds memory at any N)
EXACT_PAIRS = 5 * 10**7  # below this many (row, sampled row) pairs an exact search beats building an index


@dataclass(frozen=True)
class ProjectParams:
    n_neighbors: int = 15  # UMAP neighbourhood size (as umap_cache.UmapParams)
    min_dist: float = 0.1  # UMAP packing
    seed: int = 0  # sample and fit are reproducible
    fit_n: int = 15000  # at most this many faces are fitted; the rest are placed
    place_k: int = 8  # sampled neighbours that place one face
    version: int = 1  # bump when the procedure changes: old stored projections are then refitted


@dataclass
class Projection:
    coords: np.ndarray  # [N, dims] float32
    sample: np.ndarray  # rows UMAP was fitted on (all rows for a small run); SLERP paths are placed on these
    source: str  # "stored" (in the run folder) or "fitted" (in the app, small run)


def embeddings_file(folder: Path, method: str) -> Path:
    return Path(folder) / "embeddings" / f"{method}.npz"


def projection_file(folder: Path, method: str, dims: int) -> Path:
    return Path(folder) / FOLDER / f"{method}.{dims}d.npz"


def open_npy_member(path: Path, member: str):
    """A memory map of one array in a stored (uncompressed) npz; None when it is compressed."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
        if info.compress_type != zipfile.ZIP_STORED:
            return None
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if local[:4] != b"PK\x03\x04":
            return None
        name_len, extra_len = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read is None:
            return None
        shape, fortran, dtype = read(f)  # a plain header parse: nothing is unpickled
        if dtype.hasobject:
            raise DfdetError(f"{path} is not a dfdet embeddings file (arrays z and norm of numbers): it holds an "
                             "object array, refused (never unpickled)")
        offset = f.tell()
    return np.memmap(path, dtype=dtype, mode="r", shape=shape, order="F" if fortran else "C", offset=offset)


def load_embeddings(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(z, norm): z memory-mapped when the npz is stored uncompressed (np.savez), else read."""
    if not path.is_file():
        raise DfdetError(f"no embeddings file {path}")
    try:
        z = open_npy_member(path, "z.npy")
        with np.load(path, allow_pickle=False) as f:
            norm = f["norm"]
            if z is None:
                z = f["z"]
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise DfdetError(f"{path} is not a dfdet embeddings file (arrays z and norm of numbers): {err}") from None
    if z.ndim != 2 or len(z) != len(norm):
        raise DfdetError(f"{path}: z {z.shape} and norm {norm.shape} disagree")
    return z, norm


def fingerprint(path: Path, blocks: int = 64, size: int = 1 << 16) -> str:
    """Size + SHA-256 of evenly spaced blocks: changes with any re-run's embeddings, reads ~4 MB at any N."""
    st = path.stat()
    h = hashlib.sha256(str(st.st_size).encode())
    with open(path, "rb") as f:
        for off in np.linspace(0, max(st.st_size - size, 0), blocks).astype(np.int64):
            f.seek(int(off))
            h.update(f.read(size))
    return h.hexdigest()[:32]


def unit_chunk(z, rows) -> np.ndarray:
    x = np.asarray(z[rows], dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def stratified_sample(strata: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Sorted rows, at most n, each stratum in proportion and every stratum at least once."""
    total = len(strata)
    if total <= n:
        return np.arange(total)
    rng = np.random.default_rng(seed)
    keys, inv = np.unique(strata, return_inverse=True)
    counts = np.bincount(inv)
    take = np.maximum(1, np.floor(counts * n / total)).astype(int)
    order = np.argsort(rng.random(total), kind="stable")
    order = order[np.argsort(inv[order], kind="stable")]  # rows grouped by stratum, shuffled within
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    out = np.concatenate([order[s:s + t] for s, t in zip(starts, take)])
    return np.sort(out)


def meta_of(path: Path) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as f:
            return json.loads(str(f["meta"]))
    except (OSError, ValueError, KeyError):
        return None


def load(folder: Path, method: str, dims: int, params: ProjectParams = ProjectParams(),
         key: str | None = None) -> Projection | None:
    """The stored projection, or None when there is none or it belongs to other embeddings/params."""
    path = projection_file(folder, method, dims)
    if not path.is_file():
        return None
    emb = embeddings_file(folder, method)
    key = key or fingerprint(emb)
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            if meta.get("embeddings") != key or meta.get("params", {}).get("version") != params.version:
                return None  # other embeddings, or an older procedure (any fit_n/sample size is fine)
            coords, sample = f["coords"], f["sample"]
    except (OSError, ValueError, KeyError):
        log.warning("ignoring unreadable projection %s", path)
        return None
    if coords.ndim != 2 or coords.shape[1] != dims or coords.shape[0] != meta.get("n"):
        return None
    return Projection(coords.astype(np.float32, copy=False), sample.astype(np.int64), "stored")


def _write_npz(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def neighbours(folder: Path, method: str, z, sample: np.ndarray, key: str, params: ProjectParams,
               tick: Callable[[int], None]) -> tuple[np.ndarray, np.ndarray]:
    """For every row not in the sample: its place_k nearest sampled rows (approximate) and distances.

    Kept beside the projections (shared by 2-D and 3-D, and by a resumed run)."""
    cache = Path(folder) / FOLDER / f".{method}.knn.npz"
    key = f"{key}:{len(sample)}:{params.seed}:{params.place_k}:{params.version}"  # the search's own inputs
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as f:
                if str(f["key"]) == key and f["idx"].shape[0] == len(z) - len(sample):
                    tick(len(z) - len(sample))
                    return f["idx"], f["dist"]
        except (OSError, ValueError, KeyError):
            pass
    zs = unit_chunk(z, sample)
    rest = np.setdiff1d(np.arange(len(z)), sample, assume_unique=True)
    if len(rest) * len(sample) <= EXACT_PAIRS:
        from .umap_cache import exact_knn
        query = lambda q: exact_knn(zs, params.place_k, queries=q)  # noqa: E731
    else:
        import pynndescent
        index = pynndescent.NNDescent(zs, metric="euclidean", n_neighbors=30, random_state=params.seed,
                                      low_memory=True)
        index.prepare()
        query = lambda q: index.query(q, k=params.place_k)  # noqa: E731
    idx = np.empty((len(rest), params.place_k), np.int32)
    dist = np.empty((len(rest), params.place_k), np.float32)
    for s in range(0, len(rest), CHUNK):
        i, d = query(unit_chunk(z, rest[s:s + CHUNK]))
        idx[s:s + CHUNK], dist[s:s + CHUNK] = i, d
        tick(len(i))
    _write_npz(cache, key=np.array(key), idx=idx, dist=dist)
    return idx, dist


def place_rows(coords_s: np.ndarray, idx: np.ndarray, dist: np.ndarray) -> np.ndarray:
    w = 1.0 / (dist + 1e-6)
    w /= w.sum(1, keepdims=True)
    return np.einsum("nk,nkd->nd", w, coords_s[idx]).astype(np.float32)


def strata_of(folder: Path) -> np.ndarray:
    """dataset x source x label of every row (read from predictions.csv, the run's row order)."""
    import pandas as pd
    p = pd.read_csv(Path(folder) / "predictions.csv", usecols=["dataset", "source", "label"],
                    keep_default_na=False, dtype=str)
    return pd.factorize(p["dataset"] + "\x1f" + p["source"] + "\x1f" + p["label"])[0]


def project_method(folder: Path, method: str, dims_list=(2, 3), params: ProjectParams = ProjectParams(),
                   strata: np.ndarray | None = None, progress=None, force: bool = False) -> list[Path]:
    """Write the method's projections (each dims) unless current; returns the files written."""
    from .umap_cache import UmapParams, fit_umap
    folder = Path(folder)
    emb = embeddings_file(folder, method)
    z, _ = load_embeddings(emb)
    key = fingerprint(emb)
    todo = [d for d in dims_list if force or load(folder, method, d, params, key) is None]
    if not todo:
        return []
    strata = strata_of(folder) if strata is None else strata
    if len(strata) != len(z):
        raise DfdetError(f"{emb} has {len(z)} rows but predictions.csv has {len(strata)}")
    sample = stratified_sample(strata, params.fit_n, params.seed)
    tick = progress or (lambda n: None)
    zs = unit_chunk(z, sample)
    idx = dist = None
    if len(sample) < len(z):
        idx, dist = neighbours(folder, method, z, sample, key, params, tick)
    written = []
    for dims in todo:
        t0 = time.perf_counter()
        cs = fit_umap(zs, dims, UmapParams(params.n_neighbors, params.min_dist, params.seed))
        coords = np.empty((len(z), dims), np.float32)
        coords[sample] = cs
        if idx is not None:
            rest = np.setdiff1d(np.arange(len(z)), sample, assume_unique=True)
            coords[rest] = place_rows(cs, idx, dist)
        meta = {"embeddings": key, "params": asdict(params), "n": len(z), "dims": dims, "fitted": len(sample),
                "seconds": round(time.perf_counter() - t0, 1), "method": method}
        out = projection_file(folder, method, dims)
        _write_npz(out, coords=coords, sample=sample.astype(np.int32), meta=np.array(json.dumps(meta)))
        written.append(out)
        tick(len(sample))
    return written


def methods_of(folder: Path) -> list[str]:
    return sorted(p.stem for p in (Path(folder) / "embeddings").glob("*.npz"))


def work_units(folder: Path, methods: list[str], dims_list, params: ProjectParams) -> int:
    """Rows the progress bar counts: per method, placement of the unsampled rows + one fit per dims."""
    import pandas as pd
    n = len(pd.read_csv(Path(folder) / "predictions.csv", usecols=["label"]))
    fit = min(n, params.fit_n)
    return len(methods) * ((n - fit) + fit * len(dims_list))


def project_run(folder: Path, methods: list[str] | None = None, dims_list=(2, 3),
                params: ProjectParams = ProjectParams(), force: bool = False, bar: bool = True) -> list[Path]:
    """Every method's projections for a run folder; finished ones are skipped (resumable)."""
    folder = Path(folder)
    if not (folder / "predictions.csv").is_file():
        raise DfdetError(f"{folder} is not a run folder (no predictions.csv)")
    methods = methods or methods_of(folder)
    if not methods:
        raise DfdetError(f"{folder}/embeddings holds no <method>.npz: nothing to project")
    strata = strata_of(folder)
    from tqdm import tqdm
    written = []
    with tqdm(total=work_units(folder, methods, dims_list, params), unit="face", disable=not bar,
              desc="projecting") as pbar:
        for m in methods:
            pbar.set_postfix_str(m)
            before = pbar.n
            out = project_method(folder, m, dims_list, params, strata, pbar.update, force)
            done = before + (len(strata) - min(len(strata), params.fit_n)) + min(len(strata), params.fit_n) * len(dims_list)
            pbar.update(max(0, done - pbar.n))  # a skipped (current) method counts as done
            written += out
    return written
