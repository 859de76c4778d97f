"""Manifests: building from the shared layout, the declared dataset tables, and clear errors."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from dfdet.cli import main
from dfdet.data import tables
from dfdet.data.manifest import (COLUMNS, MANIFEST_DIR, SHARED_MANIFEST, default_data_root, is_real_source,
                                 read_manifest, scan_folder, validate, write_manifest)
from dfdet.data.splits import SplitConfig, assign_splits
from dfdet.errors import DataError


def _tiny_tree(root: Path, videos: dict[str, int]) -> Path:
    """<root>/<dataset>/<source>/<video>/<k>.png with a few 8x8 frames each."""
    for video, n in videos.items():
        for k in range(n):
            p = root / video / f"{k:03d}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (k, 0, 0)).save(p)
    return root


def test_scan_shared_datasets_labels_identities_and_relative_paths(shared):
    root = shared / "datasets"
    df = scan_folder(root)
    assert list(df.columns) == COLUMNS
    assert len(df) == 2032 and df["path"].is_unique
    assert all((root / p).is_file() for p in df["path"].sample(50, random_state=0))
    assert not any(Path(p).is_absolute() for p in df["path"])
    assert (df["label"] == df["source"].map(lambda s: 0 if is_real_source(s) else 1)).all()
    by_video = df.drop_duplicates("video").set_index("video")["identity"]
    assert by_video["FF/DF/000_003"] == "FF/000+FF/003"  # a fake involves both people
    assert by_video["FF/real/000"] == "FF/000"
    assert by_video["CDFv2/Celeb-synthesis/id0_id1_0000"] == "CDFv2/id0+CDFv2/id1"
    assert by_video["CDFv2/Celeb-real/id0_0000"] == "CDFv2/id0"
    assert df.groupby("dataset")["video"].nunique().to_dict() == {"CDFv2": 3, "DFDC": 1000, "FF": 5,
                                                                  "GANFaces": 1000}


def test_shipped_shared_manifest_is_current_and_resolves(shared):
    """data_manifests/shared_datasets.csv == scan of ../shared/datasets + `dfdet split --seed 0`."""
    assert SHARED_MANIFEST.parent == MANIFEST_DIR and SHARED_MANIFEST.is_file()
    root = default_data_root(SHARED_MANIFEST)
    assert root == shared / "datasets"
    shipped = read_manifest(SHARED_MANIFEST, root)  # checks that every file exists under shared/datasets
    fresh = assign_splits(scan_folder(root), SplitConfig(seed=0))
    pd.testing.assert_frame_equal(shipped, validate(fresh, check_files=False))
    assert set(shipped["split"]) == {"train", "val", "test"}


def test_default_data_root_for_other_manifests(tmp_path):
    assert default_data_root(tmp_path / "m.csv") == tmp_path


def test_declared_sources_follow_the_generic_label_rule():
    for spec in tables.DATASETS.values():
        assert spec.identity in tables.IDENTITY_RULES
        for s in spec.sources:
            assert s.label == (0 if is_real_source(s.name) else 1), (spec.name, s.name)
    ff = tables.DATASETS["FF"]
    assert [s.name for s in ff.sources] == ["real", "DF", "F2F", "FS", "NT"] and ff.version == "c23"
    assert {s.name for s in tables.DATASETS["CDFv2"].sources} == {"Celeb-real", "YouTube-real", "Celeb-synthesis"}
    assert {"DFD", "UADFV", "DFDC", "FFIW", "CDFv1"} <= set(tables.DATASETS)


@pytest.mark.parametrize("dataset,source,video,expected", [
    ("FF", "NT", "004_982", ("FF/004", "FF/982")),
    ("FF++", "real", "004", ("FF++/004",)),  # aliases use the same rule
    ("CDFv2", "YouTube-real", "00170", ("CDFv2/00170",)),
    ("CDFv1", "Celeb-synthesis", "id12_id3_0007", ("CDFv1/id12", "CDFv1/id3")),
    ("DFD", "fake", "01_02__exit_phone_room__YVGY8LOK", ("DFD/01", "DFD/02")),
    ("DFD", "real", "01__exit_phone_room", ("DFD/01",)),
    ("UADFV", "fake", "0007_fake", ("UADFV/0007",)),
    ("DFDC", "fake", "aaqaifqrwn", ("DFDC/aaqaifqrwn",)),
    ("Unknown", "fake", "a_b", ("Unknown/a_b",)),
])
def test_identity_rules(dataset, source, video, expected):
    assert tables.identities(dataset, source, video) == expected


def test_layouts_file_matches_the_tables():
    assert (MANIFEST_DIR / "layouts.md").read_text() == tables.layouts_markdown()


def test_identity_map_overrides_rule(tmp_path):
    root = _tiny_tree(tmp_path / "d", {"DFDC/real/orig": 1, "DFDC/fake/made": 1})
    df = scan_folder(root, {"DFDC/fake/made": "DFDC/orig"})
    assert df.set_index("video").loc["DFDC/fake/made", "identity"] == "DFDC/orig"


def _write_csv(path: Path, rows: list[list[str]]) -> Path:
    path.write_text("\n".join(",".join(r) for r in [COLUMNS] + rows) + "\n")
    return path


@pytest.mark.parametrize("rows,needle", [
    ([["a/b/c/1.png", "2", "a", "b", "a/b/c", "a/c", ""]], "line 2: unknown label '2'"),
    ([["a/b/c/1.png", "0", "a", "b", "a/b/c", "a/c", ""], ["a/b/c/1.png", "0", "a", "b", "a/b/c", "a/c", ""]],
     "line 3: duplicate path"),
    ([["a/b/c/1.png", "0", "a", "b", "a/b/c", "a/c", ""], ["", "0", "a", "b", "a/b/c", "a/c", ""]],
     "line 3: empty 'path'"),
    ([["a/b/c/1.png", "1", "a", "b", "a/b/c", "a/c", ""]], "line 2: file not found"),
    ([["../../etc/passwd", "1", "a", "b", "a/b/c", "a/c", ""]], "line 2: path '../../etc/passwd' points outside"),
])
def test_bad_manifests_name_the_line(tmp_path, rows, needle):
    path = _write_csv(tmp_path / "m.csv", rows)
    with pytest.raises(DataError, match=needle.replace("(", r"\(")):
        read_manifest(path, tmp_path)


def test_bad_manifest_files(tmp_path):
    with pytest.raises(DataError, match="manifest not found"):
        read_manifest(tmp_path / "nope.csv")
    (tmp_path / "cols.csv").write_text("path,label\nx.png,0\n")
    with pytest.raises(DataError, match="missing columns"):
        read_manifest(tmp_path / "cols.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="not a readable CSV"):
        read_manifest(tmp_path / "empty.csv")


def test_write_read_roundtrip_is_atomic(tmp_path):
    root = _tiny_tree(tmp_path / "d", {"X/real/v1": 2, "X/fake/v2": 3})
    df = scan_folder(root)
    out = write_manifest(df, tmp_path / "sub" / "m.csv")
    assert not list(out.parent.glob("*.tmp")) and not list(out.parent.glob(".*"))
    back = read_manifest(out, root)
    pd.testing.assert_frame_equal(back, validate(df, check_files=False))
    assert back["label"].tolist() == [1, 1, 1, 0, 0]


def test_cli_manifest_build_check_and_layouts(tmp_path, capsys):
    root = _tiny_tree(tmp_path / "d", {"FF/real/000": 2, "FF/real/003": 2, "FF/DF/000_003": 2})
    out = tmp_path / "m.csv"
    assert main(["manifest", str(root), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "wrote" in text and "DF" in text and "real" in text
    assert main(["manifest", "--check", str(out), "--data-root", str(root)]) == 0
    assert "all valid" in capsys.readouterr().out
    df = read_manifest(out, root)
    df.loc[df["video"] == "FF/real/000", "split"] = "train"
    df.loc[df["video"] == "FF/DF/000_003", "split"] = "test"  # shares identity 000 with a train video
    write_manifest(df, out)
    assert main(["manifest", "--check", str(out), "--data-root", str(root)]) == 1
    assert "leak" in capsys.readouterr().out
    assert main(["manifest", "--layouts"]) == 0
    assert capsys.readouterr().out == tables.layouts_markdown()
    assert main(["manifest", str(tmp_path / "missing")]) == 2
    assert "data root not found" in capsys.readouterr().err
