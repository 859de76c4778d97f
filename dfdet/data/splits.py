"""Leak-free train/val/test splits: by video, with every identity on one side only.

Videos that share a person (FF++ fake A_B and the real videos of A and B) form one group, the
connected component of the video-identity graph. Groups, never videos, are dealt to splits, so
no video and no identity crosses splits. FF25/50/75 are nested prefixes of each split's groups:
a group keeps its split in every subset, so a model trained on FF25 never saw FF100's test.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from .tables import IDENTITY_SEP, lookup

SPLITS = ("train", "val", "test")
UNUSED = ""  # split value of rows outside the chosen subset
SUBSETS = {"FF25": 0.25, "FF50": 0.50, "FF75": 0.75, "FF100": 1.0}  # name -> fraction of videos kept


@dataclass
class SplitConfig:
    fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)  # train:val:test share of videos (paper: 70:15:15)
    seed: int = 0  # permutation of groups; the same seed gives the same splits
    subset: str = "FF100"  # key of SUBSETS: fraction of each split's groups kept (nested across subsets)
    datasets: tuple[str, ...] = ()  # datasets to split (empty = all); the others keep their split column
    others: str = "keep"  # rows of the other datasets: "keep" their split, mark all "test", or "drop" them


def _identity_keys(value: str) -> list[str]:
    return [i for i in str(value).split(IDENTITY_SEP) if i]


def identity_groups(df: pd.DataFrame) -> dict[str, str]:
    """Map each video to its group: videos sharing any identity end up in one group (union-find)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    pairs = df[["video", "identity"]].drop_duplicates()
    for video, ident in zip(pairs["video"], pairs["identity"]):
        nodes = [f"v:{video}"] + [f"i:{i}" for i in _identity_keys(ident)]
        for n in nodes:
            parent.setdefault(n, n)
        root = find(nodes[0])
        for n in nodes[1:]:
            other = find(n)
            if other != root:
                parent[max(other, root)] = min(other, root)  # deterministic root: the smaller name
                root = min(other, root)
    return {v: find(f"v:{v}") for v in df["video"].unique()}


def _deal(order: list[str], sizes: dict[str, int], fractions) -> dict[str, str]:
    """Deal groups in order, each to the split relatively furthest below its target, so every
    prefix of the order (hence every stratum) is split in about the target proportions."""
    total = sum(sizes[g] for g in order)
    targets = np.asarray(fractions, dtype=float) / sum(fractions) * total
    have = np.zeros(len(SPLITS))
    out = {}
    for g in order:
        k = int(np.argmax(np.where(targets > 0, 1.0 - have / np.maximum(targets, 1e-12), -np.inf)))
        out[g] = SPLITS[k]
        have[k] += sizes[g]
    return out


def _spread(groups: list[str], strata: dict[str, tuple], pos: dict[str, int]) -> list[str]:
    """Order groups so that any prefix holds about the same share of every stratum (nested subsets)."""
    count: dict[tuple, int] = {}
    rank: dict[str, float] = {}
    for g in groups:
        count[strata[g]] = count.get(strata[g], 0) + 1
    seen: dict[tuple, int] = {}
    for g in groups:
        k = seen.get(strata[g], 0)
        seen[strata[g]] = k + 1
        rank[g] = (k + 0.5) / count[strata[g]]
    return sorted(groups, key=lambda g: (rank[g], pos[g]))


def assign_splits(df: pd.DataFrame, cfg: SplitConfig | None = None) -> pd.DataFrame:
    """A copy of the manifest with the split column set for cfg.datasets (see SplitConfig).

    Groups are shuffled with the seed, then dealt stratum by stratum (a stratum = the set of
    sources in a group), so every split gets about the same share of each source.
    """
    cfg = cfg or SplitConfig()
    if cfg.subset not in SUBSETS:
        raise DataError(f"unknown subset {cfg.subset!r}; choose one of {list(SUBSETS)}")
    if len(cfg.fractions) != 3 or min(cfg.fractions) < 0 or sum(cfg.fractions) <= 0:
        raise DataError(f"split fractions must be three non-negative numbers (train:val:test), got {cfg.fractions}")
    if cfg.others not in ("keep", "test", "drop"):
        raise DataError(f"others must be keep, test or drop, got {cfg.others!r}")
    df = df.copy()
    present = sorted(df["dataset"].unique())
    chosen = list(cfg.datasets) or present
    unknown = [d for d in chosen if d not in present]
    if unknown:
        raise DataError(f"datasets {unknown} are not in the manifest (it has {present})")
    mask = df["dataset"].isin(chosen)
    part = df[mask]
    group_of = identity_groups(part)
    sizes: dict[str, int] = {}
    sources: dict[str, set] = {}
    for v, ds, src in part[["video", "dataset", "source"]].drop_duplicates("video").itertuples(index=False):
        g = group_of[v]
        sizes[g] = sizes.get(g, 0) + 1
        sources.setdefault(g, set()).add(f"{ds}/{src}")
    strata = {g: tuple(sorted(s)) for g, s in sources.items()}
    groups = sorted(sizes)
    shuffled = [groups[i] for i in np.random.default_rng(cfg.seed).permutation(len(groups))]
    pos = {g: i for i, g in enumerate(shuffled)}
    split_of = _deal(sorted(shuffled, key=lambda g: strata[g]), sizes, cfg.fractions)  # stable: random within stratum

    keep: set[str] = set()  # groups in the subset: a prefix of a stratum-spread order within each split
    frac = SUBSETS[cfg.subset]
    for s in SPLITS:
        in_split = _spread([g for g in shuffled if split_of[g] == s], strata, pos)
        goal, have = frac * sum(sizes[g] for g in in_split), 0
        for g in in_split:
            if have >= goal - 1e-9 and have > 0:
                break
            keep.add(g)
            have += sizes[g]
    video_split = {v: (split_of[g] if g in keep else UNUSED) for v, g in group_of.items()}
    df.loc[mask, "split"] = part["video"].map(video_split)
    if cfg.others == "test":
        df.loc[~mask, "split"] = "test"
    elif cfg.others == "drop":
        df = df[mask]
    return df.reset_index(drop=True)


def find_leaks(df: pd.DataFrame) -> list[str]:
    """Every video or identity that appears in more than one split (rows with no split ignored)."""
    used = df[df["split"].astype(str) != UNUSED]
    problems = []
    per_video = used.groupby("video")["split"].nunique()
    for v in per_video[per_video > 1].index:
        problems.append(f"video {v} is in splits {sorted(used.loc[used['video'] == v, 'split'].unique())}")
    seen: dict[str, set[str]] = {}
    for ident, split in zip(used["identity"], used["split"]):
        for i in _identity_keys(ident):
            seen.setdefault(i, set()).add(split)
    problems += [f"identity {i} is in splits {sorted(s)}" for i, s in sorted(seen.items()) if len(s) > 1]
    return problems


def check_no_leaks(df: pd.DataFrame, where: str = "manifest") -> None:
    problems = find_leaks(df)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise DataError(f"{where}: splits leak: " + "; ".join(problems[:5]) + more
                        + ". Re-assign them with `dfdet split`.")


def count_table(df: pd.DataFrame, unit: str = "videos") -> pd.DataFrame:
    """Videos (or frames) per dataset x source x split, with totals: the paper's table layout."""
    if unit not in ("videos", "frames"):
        raise ValueError("unit must be 'videos' or 'frames'")
    rows = df.drop_duplicates("video") if unit == "videos" else df
    splits = [s for s in SPLITS if (rows["split"] == s).any()]
    splits += sorted(set(rows["split"].astype(str)) - set(SPLITS) - {UNUSED})
    if (rows["split"].astype(str) == UNUSED).any():
        splits.append(UNUSED)
    tab = pd.crosstab([rows["dataset"], rows["source"]], rows["split"].astype(str))
    tab = tab.reindex(columns=splits, fill_value=0)
    tab = tab.rename(columns={UNUSED: "unused"})
    tab["total"] = tab.sum(axis=1)
    tab.loc[("all", ""), :] = tab.sum(axis=0)
    return tab.astype(int)


def format_counts(tab: pd.DataFrame, unit: str = "videos") -> str:
    """A fixed-width text table: dataset/source rows, split columns."""
    cols = list(tab.columns)
    head = ["dataset", "source"] + cols
    body = [[d, s] + [f"{int(v):,}" for v in tab.loc[(d, s)]] for d, s in tab.index]
    widths = [max(len(str(r[i])) for r in [head] + body) for i in range(len(head))]

    def line(r: list) -> str:  # text columns left-aligned, counts right-aligned
        return "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    out = [f"{unit} per source and split", line(head), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in body[:-1]] + ["  ".join("-" * w for w in widths), line(body[-1])]
    return "\n".join(out)


# ---- official split files, in the formats the releases use (see tables.OfficialSplit) ----

def read_ff_official(split_dir: str | Path) -> dict[str, str]:
    """FF++ train/val/test.json (lists of [target, source] id pairs) -> {video id: split}."""
    split_dir = Path(split_dir)
    out: dict[str, str] = {}
    for s in SPLITS:
        path = split_dir / f"{s}.json"
        if not path.is_file():
            raise DataError(f"FF++ official split file not found: {path} (expected train.json, val.json, test.json)")
        try:
            pairs = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(f"{path}: not valid JSON ({err})") from None
        for k, pair in enumerate(pairs):
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
                raise DataError(f"{path}: entry {k}: expected a [target, source] pair of id strings, got {pair!r}")
            for i in pair:
                if out.setdefault(i, s) != s:
                    raise DataError(f"{path}: id {i} is listed in both {out[i]} and {s}")
    return out


def apply_ff_official(df: pd.DataFrame, split_dir: str | Path, dataset: str = "FF") -> pd.DataFrame:
    """Set FF rows' splits from the official pair lists; videos of unlisted ids become unused."""
    id_split = read_ff_official(split_dir)
    df = df.copy()
    mask = df["dataset"] == dataset
    if not mask.any():
        raise DataError(f"the manifest has no {dataset!r} rows to split")

    def split_of(ident: str) -> str:
        sides = {id_split.get(i.split("/", 1)[-1], UNUSED) for i in _identity_keys(ident)}
        return sides.pop() if len(sides) == 1 else UNUSED  # a cross-split fake would leak: leave it out

    df.loc[mask, "split"] = df.loc[mask, "identity"].map(split_of)
    return df


def read_cdf_test_list(path: str | Path) -> dict[str, int]:
    """Celeb-DF List_of_testing_videos.txt ('<1 real|0 fake> <source>/<video>.mp4') -> {source/video: label}."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Celeb-DF test list not found: {path}")
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in ("0", "1") or "/" not in parts[1]:
            raise DataError(f"{path}: line {n}: expected '<1 real|0 fake> <source>/<video>.mp4', got {line!r}")
        key = parts[1].rsplit(".", 1)[0] if parts[1].lower().endswith((".mp4", ".avi")) else parts[1]
        out[key] = 0 if parts[0] == "1" else 1  # the list says 1 = real; the manifest says 0 = real
    return out


def apply_test_list(df: pd.DataFrame, listed: dict[str, int], dataset: str) -> pd.DataFrame:
    """Mark the listed videos of one dataset 'test' and its other videos unused; labels must agree."""
    df = df.copy()
    mask = df["dataset"] == dataset
    if not mask.any():
        raise DataError(f"the manifest has no {dataset!r} rows; test lists apply to one dataset")
    keys = df.loc[mask, "video"].str.split("/", n=1).str[1]
    hit = keys.isin(listed)
    wrong = df.loc[mask][hit & (keys.map(listed) != df.loc[mask, "label"].astype(int))]
    if len(wrong):
        raise DataError(f"test list labels disagree with the manifest for {wrong['video'].iloc[0]} "
                        f"(and {wrong['video'].nunique() - 1} more videos)")
    df.loc[mask, "split"] = np.where(hit, "test", UNUSED)
    missing = set(listed) - set(keys)
    if missing:
        spec = lookup(dataset)
        name = spec.title if spec else dataset
        df.attrs["missing_from_test_list"] = sorted(missing)
        if len(missing) == len(listed):
            raise DataError(f"none of the {len(listed)} listed {name} test videos are in the manifest; "
                            "is the dataset folder laid out as <dataset>/<source>/<video>/<frame>?")
    return df
