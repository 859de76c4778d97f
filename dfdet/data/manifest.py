"""The manifest: one CSV row per face image, with paths relative to a data root.

Columns: path, label (0 real / 1 fake), dataset, source, video, identity, split.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..errors import DataError

COLUMNS = ["path", "label", "dataset", "source", "video", "identity", "split"]
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
SHARED_ENV = "DFDET_SHARED"  # where ../shared lives (tests, demo samples)


def shared_dir() -> Path:
    return Path(os.environ.get(SHARED_ENV, Path(__file__).resolve().parents[2].parent / "shared"))


def is_real_source(source: str) -> bool:
    return "real" in source.lower()


def scan_folder(root: str | Path) -> pd.DataFrame:
    """Build a manifest from <root>/<dataset>/<source>/<video>/<frame> (sorted, so reproducible)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data root not found: {root}")
    rows = []
    for path in sorted(root.glob("*/*/*/*")):
        if path.suffix.lower() not in IMAGE_EXTS or not path.is_file():
            continue
        dataset, source, video = path.relative_to(root).parts[:3]
        rows.append({"path": path.relative_to(root).as_posix(), "label": 0 if is_real_source(source) else 1,
                     "dataset": dataset, "source": source, "video": f"{dataset}/{source}/{video}",
                     "identity": f"{dataset}/{video}", "split": ""})
    if not rows:
        raise DataError(f"no images found under {root} in the layout <dataset>/<source>/<video>/<frame>")
    return pd.DataFrame(rows, columns=COLUMNS)


def validate(df: pd.DataFrame, where: str = "manifest", data_root: str | Path | None = None,
             check_files: bool = True) -> pd.DataFrame:
    """Check columns, labels, duplicates and (optionally) that files exist; errors name the CSV line."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{where}: missing columns {missing}; a manifest needs {COLUMNS}")
    df = df[COLUMNS].copy()
    for i, v in enumerate(df["label"].tolist()):
        if str(v).strip() not in ("0", "1"):
            raise DataError(f"{where}: line {i + 2}: unknown label {v!r} (expected 0 = real or 1 = fake)")
    df["label"] = df["label"].astype(int)
    dup = df["path"].duplicated()
    if dup.any():
        i = int(dup.to_numpy().nonzero()[0][0])
        raise DataError(f"{where}: line {i + 2}: duplicate path {df['path'].iloc[i]!r}")
    if check_files and data_root is not None:
        root = Path(data_root).resolve()
        for i, p in enumerate(df["path"].tolist()):
            full = (root / p).resolve()
            if not full.is_relative_to(root):
                raise DataError(f"{where}: line {i + 2}: path {p!r} points outside the data root {root}")
            if not full.is_file():
                raise DataError(f"{where}: line {i + 2}: file not found: {full}")
    return df.reset_index(drop=True)


def read_manifest(path: str | Path, data_root: str | Path | None = None, check_files: bool = True) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest not found: {path}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable CSV ({err})") from None
    return validate(df, str(path), data_root, check_files)


def write_manifest(df: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    df[COLUMNS].to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path
