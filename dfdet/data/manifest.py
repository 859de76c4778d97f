"""The manifest: one CSV row per face image, with paths relative to a data root.

Columns: path, label (0 real / 1 fake), dataset, source, video, identity, split.
`video` is "<dataset>/<source>/<video>", the unit splits never cut; `identity` lists the
dataset-qualified people a video involves, joined by "+" (FF fake 000_003 -> "FF/000+FF/003"),
from the declared rules in dfdet.data.tables; `split` is train, val, test or empty (unused).
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..errors import DataError
from .tables import IDENTITY_SEP, identities

COLUMNS = ["path", "label", "dataset", "source", "video", "identity", "split"]
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
SHARED_ENV = "DFDET_SHARED"  # where ../shared lives (tests, demo samples)
MANIFEST_DIR = Path(__file__).resolve().parents[2] / "data_manifests"  # manifests shipped with the repo
SHARED_MANIFEST = MANIFEST_DIR / "shared_datasets.csv"  # ../shared/datasets; paths relative to that folder


def shared_dir() -> Path:
    return Path(os.environ.get(SHARED_ENV, Path(__file__).resolve().parents[2].parent / "shared"))


def default_data_root(manifest: str | Path) -> Path:
    """The folder a manifest's paths are relative to when none is given: shared/datasets for the
    shipped shared manifest (so it works wherever $DFDET_SHARED points), else the manifest's folder."""
    manifest = Path(manifest)
    if manifest.resolve() == SHARED_MANIFEST.resolve():
        return shared_dir() / "datasets"
    return manifest.parent


def is_real_source(source: str) -> bool:
    return "real" in source.lower()


def scan_folder(root: str | Path, identity_map: dict[str, str] | None = None) -> pd.DataFrame:
    """Build a manifest from <root>/<dataset>/<source>/<video>/<frame> (sorted, so reproducible).

    identity_map overrides the declared identity rule for some videos ("<dataset>/<source>/<video>"
    -> "+"-joined identities), e.g. DFDC fakes mapped to the identity of their original video.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data root not found: {root}")
    identity_map = identity_map or {}
    rows = []
    for path in sorted(root.glob("*/*/*/*")):
        if path.suffix.lower() not in IMAGE_EXTS or not path.is_file() or path.name.startswith("."):
            continue
        dataset, source, video = path.relative_to(root).parts[:3]
        key = f"{dataset}/{source}/{video}"
        ident = identity_map.get(key) or IDENTITY_SEP.join(identities(dataset, source, video))
        rows.append({"path": path.relative_to(root).as_posix(), "label": 0 if is_real_source(source) else 1,
                     "dataset": dataset, "source": source, "video": key, "identity": ident, "split": ""})
    if not rows:
        raise DataError(f"no images found under {root} in the layout <dataset>/<source>/<video>/<frame>")
    return pd.DataFrame(rows, columns=COLUMNS)


def read_identity_map(path: str | Path) -> dict[str, str]:
    """A CSV with columns video,identity (video = "<dataset>/<source>/<video>") -> dict."""
    df = read_csv_table(path, ["video", "identity"])
    for i, (v, ident) in enumerate(zip(df["video"], df["identity"])):
        if not v.strip() or not ident.strip():
            raise DataError(f"{path}: line {i + 2}: empty video or identity")
    return dict(zip(df["video"], df["identity"]))


def read_csv_table(path: str | Path, columns: list[str]) -> pd.DataFrame:
    """Read a small CSV as strings, with errors that say which file and what is missing."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable CSV ({err})") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing columns {missing}; expected {columns}")
    return df


def validate(df: pd.DataFrame, where: str = "manifest", data_root: str | Path | None = None,
             check_files: bool = True) -> pd.DataFrame:
    """Check columns, labels, duplicates and (optionally) that files exist; errors name the CSV line."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{where}: missing columns {missing}; a manifest needs {COLUMNS}")
    df = df[COLUMNS].copy()
    for col in ("path", "dataset", "source", "video", "identity"):
        empty = df[col].astype(str).str.strip() == ""
        if empty.any():
            i = int(empty.to_numpy().nonzero()[0][0])
            raise DataError(f"{where}: line {i + 2}: empty {col!r}")
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
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable CSV ({err})") from None
    return validate(df, str(path), data_root, check_files)


def write_manifest(df: pd.DataFrame, path: str | Path) -> Path:
    from ..fileio import atomic_write
    return atomic_write(path, lambda tmp: df[COLUMNS].to_csv(tmp, index=False))  # a folder or /proc: a message
