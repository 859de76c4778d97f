"""Issue 19 LOW: a planted ONNX graph with a recomputed checksum loaded silently and flipped the verdict.
The runtime cache is trusted code, so it is used only when it is private to this user."""
from __future__ import annotations

import json
import os

import pytest

from dfdet.backbone import VisionBackbone
from dfdet.errors import DfdetError
from dfdet.runtime import ARTEFACT_FORMAT, ensure_artefact, frozen_hash


def plant(folder, backbone) -> None:
    """An attacker's graph with a sidecar whose sha256 matches it (anyone who can write here can do this)."""
    from dfdet.checkpoint import file_sha256
    digest = frozen_hash(backbone)
    stem = f"vit-{digest[:16]}-onnx-int8"
    (folder / f"{stem}.onnx").write_bytes(b"not the model")
    (folder / f"{stem}.json").write_text(json.dumps({"format": ARTEFACT_FORMAT, "weights_sha256": digest,
                                                     "sha256": file_sha256(folder / f"{stem}.onnx")}))


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
@pytest.mark.parametrize("target", ["folder", "file"])
def test_a_cache_others_can_write_is_never_loaded(tiny_clip, tmp_path, target):
    backbone = VisionBackbone(tiny_clip.model.visual)
    folder = tmp_path / "runtime"
    folder.mkdir()
    plant(folder, backbone)
    victim = folder if target == "folder" else next(folder.glob("*.onnx"))
    victim.chmod(0o777 if target == "folder" else 0o666)
    with pytest.raises(DfdetError, match="is writable by other users"):
        ensure_artefact("onnx-int8", backbone, folder=folder)


def test_a_private_cache_is_still_used(tiny_clip, tmp_path):
    backbone = VisionBackbone(tiny_clip.model.visual)
    folder = tmp_path / "runtime"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    plant(folder, backbone)
    for p in folder.iterdir():
        p.chmod(0o644)
    art = ensure_artefact("onnx-int8", backbone, folder=folder)  # private: trusted, as documented
    assert not art.built and art.path.parent == folder
