"""Splits: by video, identity-grouped, seeded, nested FF subsets, and proven leak-free.

../shared holds one video per FF source, so the split logic is tested on synthetic FF-like
manifests with many videos, generated here with the real FF++ naming (fake A_B and B_A per pair).
"""
from __future__ import annotations

import json
import random

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfdet.cli import main
from dfdet.data.manifest import COLUMNS, IDENTITY_SEP, write_manifest
from dfdet.data.splits import (SPLITS, SUBSETS, UNUSED, SplitConfig, apply_ff_official, apply_test_list,
                               assign_splits, check_no_leaks, count_table, find_leaks, format_counts,
                               identity_groups, read_cdf_test_list, read_ff_official)
from dfdet.data.tables import identities
from dfdet.errors import DataError

FF_FAKES = ("DF", "F2F", "FS", "NT")


def ff_like(n_ids: int = 200, frames: int = 2, seed: int = 0, extra: bool = False) -> pd.DataFrame:
    """FF++-shaped manifest: n_ids real videos, ids paired; each pair gives fakes A_B and B_A per method."""
    ids = [f"{i:03d}" for i in range(n_ids)]
    perm = ids[:]
    random.Random(seed).shuffle(perm)
    pairs = [(perm[2 * k], perm[2 * k + 1]) for k in range(n_ids // 2)]
    rows = []

    def add(source, video, label):
        ident = IDENTITY_SEP.join(identities("FF", source, video))
        for f in range(frames):
            rows.append({"path": f"FF/{source}/{video}/{f:03d}.png", "label": label, "dataset": "FF",
                         "source": source, "video": f"FF/{source}/{video}", "identity": ident, "split": ""})
    for a in ids:
        add("real", a, 0)
    for a, b in pairs:
        for t, s in ((a, b), (b, a)):
            for src in FF_FAKES:
                add(src, f"{t}_{s}", 1)
    if extra:  # a second dataset, to be kept, tested or dropped
        for k in range(6):
            rows.append({"path": f"CDFv2/Celeb-real/id{k}_0000/000.png", "label": 0, "dataset": "CDFv2",
                         "source": "Celeb-real", "video": f"CDFv2/Celeb-real/id{k}_0000",
                         "identity": f"CDFv2/id{k}", "split": "test"})
    return pd.DataFrame(rows, columns=COLUMNS)


def _videos(df, split):
    return set(df.loc[df["split"] == split, "video"])


def _ids(df, split):
    return {i for v in df.loc[df["split"] == split, "identity"] for i in v.split(IDENTITY_SEP)}


@pytest.mark.parametrize("subset", list(SUBSETS))
@pytest.mark.parametrize("seed", [0, 1, 42])
def test_zero_video_and_identity_overlap(subset, seed):
    df = assign_splits(ff_like(), SplitConfig(seed=seed, subset=subset))
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not _videos(df, a) & _videos(df, b), (a, b)
                assert not _ids(df, a) & _ids(df, b), (a, b)
    assert find_leaks(df) == []
    check_no_leaks(df)
    # every frame of a video shares its split
    assert (df.groupby("video")["split"].nunique() == 1).all()


def test_fractions_by_video_and_per_source():
    df = assign_splits(ff_like(400), SplitConfig(seed=3))
    tab = count_table(df)
    total = tab.loc[("all", ""), "total"]
    assert total == 400 * 5
    for split, frac in zip(SPLITS, (0.70, 0.15, 0.15)):
        assert abs(tab.loc[("all", ""), split] / total - frac) < 0.01
        for src in ("real",) + FF_FAKES:  # each source is split like the whole
            assert abs(tab.loc[("FF", src), split] / 400 - frac) < 0.02
    # a fake A_B sits with the real videos of A and B
    real_split = df.drop_duplicates("video").query("source == 'real'").set_index("identity")["split"]
    for video, ident, split in df.drop_duplicates("video").query("source != 'real'")[
            ["video", "identity", "split"]].itertuples(index=False):
        assert {real_split[i] for i in ident.split(IDENTITY_SEP)} == {split}, video


def test_subsets_are_nested_and_sized():
    base = ff_like(400)
    prev: dict[str, set] = {s: set() for s in SPLITS}
    full = assign_splits(base, SplitConfig(seed=5, subset="FF100"))
    for name, frac in SUBSETS.items():
        df = assign_splits(base, SplitConfig(seed=5, subset=name))
        for s in SPLITS:
            vids = _videos(df, s)
            assert prev[s] <= vids, (name, s)  # FF25 within FF50 within ...
            assert vids <= _videos(full, s)  # a video keeps its split in every subset
            target = frac * len(_videos(full, s))
            assert target <= len(vids) <= target + 10  # at most one group (10 videos) above the share
            prev[s] = vids
        assert set(df.loc[~df["video"].isin(set().union(*prev.values())), "split"]) <= {UNUSED}


def test_seeded_and_reproducible():
    base = ff_like()
    a = assign_splits(base, SplitConfig(seed=7))
    b = assign_splits(base.sample(frac=1.0, random_state=1), SplitConfig(seed=7))  # row order does not matter
    assert a.set_index("path")["split"].to_dict() == b.set_index("path")["split"].to_dict()
    c = assign_splits(base, SplitConfig(seed=8))
    assert a["split"].tolist() != c["split"].tolist()


def test_chained_identities_form_one_group():
    df = pd.DataFrame([
        {"path": f"X/fake/{v}/0.png", "label": 1, "dataset": "X", "source": "fake", "video": f"X/fake/{v}",
         "identity": ident, "split": ""}
        for v, ident in [("a_b", "X/a+X/b"), ("b_c", "X/b+X/c"), ("c_d", "X/c+X/d"), ("e", "X/e")]],
        columns=COLUMNS)
    groups = identity_groups(df)
    assert groups["X/fake/a_b"] == groups["X/fake/b_c"] == groups["X/fake/c_d"] != groups["X/fake/e"]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.integers(0, 15), min_size=1, max_size=3), min_size=1, max_size=40),
       st.integers(0, 2 ** 16), st.sampled_from(list(SUBSETS)))
def test_random_identity_graphs_never_leak(videos, seed, subset):
    """Any identity graph: no video or identity crosses splits."""
    df = pd.DataFrame([{"path": f"X/s/v{k}/0.png", "label": k % 2, "dataset": "X", "source": "s",
                        "video": f"X/s/v{k}", "identity": IDENTITY_SEP.join(f"X/{i}" for i in ids), "split": ""}
                       for k, ids in enumerate(videos)], columns=COLUMNS)
    out = assign_splits(df, SplitConfig(seed=seed, subset=subset))
    assert find_leaks(out) == []
    assert set(out["split"]) <= set(SPLITS) | {UNUSED}
    if subset == "FF100":
        assert (out["split"] != UNUSED).all()


def test_leak_detector_finds_injected_leaks():
    df = assign_splits(ff_like(40), SplitConfig())
    v = df.loc[df["source"] == "DF", "video"].iloc[0]
    moved = df.copy()
    rows = moved.index[moved["video"] == v]
    moved.loc[rows[:1], "split"] = "test" if moved.loc[rows[0], "split"] != "test" else "train"
    problems = find_leaks(moved)
    assert any(p.startswith(f"video {v}") for p in problems)
    assert any(p.startswith("identity FF/") for p in problems)
    with pytest.raises(DataError, match="splits leak"):
        check_no_leaks(moved)


def test_other_datasets_keep_test_or_drop():
    base = ff_like(20, extra=True)
    keep = assign_splits(base, SplitConfig(datasets=("FF",)))
    assert set(keep.loc[keep["dataset"] == "CDFv2", "split"]) == {"test"}
    base.loc[base["dataset"] == "CDFv2", "split"] = ""
    test = assign_splits(base, SplitConfig(datasets=("FF",), others="test"))
    assert set(test.loc[test["dataset"] == "CDFv2", "split"]) == {"test"}
    drop = assign_splits(base, SplitConfig(datasets=("FF",), others="drop"))
    assert set(drop["dataset"]) == {"FF"}
    with pytest.raises(DataError, match="not in the manifest"):
        assign_splits(base, SplitConfig(datasets=("DFD",)))
    with pytest.raises(DataError, match="unknown subset"):
        assign_splits(base, SplitConfig(subset="FF10"))


def test_count_table_like_the_paper():
    df = assign_splits(ff_like(100, frames=3), SplitConfig())
    tab = count_table(df)
    assert list(tab.columns) == ["train", "val", "test", "total"]
    assert tab.loc[("FF", "real"), "total"] == 100 and tab.loc[("all", ""), "total"] == 500
    assert count_table(df, "frames").loc[("all", ""), "total"] == 1500
    text = format_counts(tab)
    assert text.splitlines()[1].split() == ["dataset", "source", "train", "val", "test", "total"]
    assert any(line.split()[:2] == ["FF", "NT"] for line in text.splitlines())


def test_official_ff_split(tmp_path):
    df = ff_like(20)
    ids = sorted({i for v in df["identity"] for i in v.split(IDENTITY_SEP)})
    fakes = df.loc[df["source"] == "DF", "video"].str.split("/").str[-1].unique()
    pairs = sorted({tuple(sorted(v.split("_"))) for v in fakes})
    assert len(pairs) * 2 == len(ids)
    for name, part in zip(SPLITS, (pairs[:6], pairs[6:8], pairs[8:])):
        (tmp_path / f"{name}.json").write_text(json.dumps([list(p) for p in part]))
    out = apply_ff_official(df, tmp_path)
    check_no_leaks(out)
    assert out.drop_duplicates("video")["split"].value_counts().to_dict() == {"train": 60, "val": 20, "test": 20}
    (tmp_path / "val.json").write_text(json.dumps([list(pairs[0])]))
    with pytest.raises(DataError, match="listed in both"):
        read_ff_official(tmp_path)
    (tmp_path / "val.json").write_text("[[1, 2]]")
    with pytest.raises(DataError, match="entry 0"):
        read_ff_official(tmp_path)


def test_cdf_test_list(tmp_path):
    rows = [{"path": f"CDFv2/{src}/{v}/000.png", "label": lab, "dataset": "CDFv2", "source": src,
             "video": f"CDFv2/{src}/{v}", "identity": f"CDFv2/{v}", "split": ""}
            for src, v, lab in [("Celeb-real", "id0_0001", 0), ("Celeb-real", "id0_0002", 0),
                                ("Celeb-synthesis", "id0_id1_0001", 1), ("YouTube-real", "00170", 0)]]
    df = pd.DataFrame(rows, columns=COLUMNS)
    lst = tmp_path / "List_of_testing_videos.txt"
    lst.write_text("1 YouTube-real/00170.mp4\n0 Celeb-synthesis/id0_id1_0001.mp4\n1 Celeb-real/id9_0009.mp4\n")
    listed = read_cdf_test_list(lst)
    assert listed == {"YouTube-real/00170": 0, "Celeb-synthesis/id0_id1_0001": 1, "Celeb-real/id9_0009": 0}
    out = apply_test_list(df, listed, "CDFv2")
    assert out.set_index("video")["split"].to_dict() == {
        "CDFv2/Celeb-real/id0_0001": "", "CDFv2/Celeb-real/id0_0002": "",
        "CDFv2/Celeb-synthesis/id0_id1_0001": "test", "CDFv2/YouTube-real/00170": "test"}
    assert out.attrs["missing_from_test_list"] == ["Celeb-real/id9_0009"]
    lst.write_text("0 YouTube-real/00170.mp4\n")  # list says fake, manifest says real
    with pytest.raises(DataError, match="disagree"):
        apply_test_list(df, read_cdf_test_list(lst), "CDFv2")
    lst.write_text("real YouTube-real/00170.mp4\n")
    with pytest.raises(DataError, match="line 1"):
        read_cdf_test_list(lst)


def test_cli_split_prints_counts_and_writes(tmp_path, capsys):
    src = write_manifest(ff_like(60), tmp_path / "ff.csv")
    out = tmp_path / "ff50.csv"
    assert main(["split", str(src), "-o", str(out), "--subset", "FF50", "--seed", "1"]) == 0
    text = capsys.readouterr().out
    assert "no video or identity crosses splits" in text and "unused" in text
    lines = {tuple(line.split()[:2]): line.split()[2:] for line in text.splitlines()}
    assert lines[("FF", "real")][-1] == "60"  # the total column
    df = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert find_leaks(df) == []
    assert main(["split", str(src), "--fractions", "80:10:10"]) == 0
    assert main(["split", str(src), "--datasets", "DFD"]) == 2
    assert "not in the manifest" in capsys.readouterr().err
