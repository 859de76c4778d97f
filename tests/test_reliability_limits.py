"""Resource limits (issue #11 §5): the image pixel limit holds for video frames, and images are accepted by
what their bytes are, exactly the formats the README lists, whatever the file name says."""
from __future__ import annotations

import av
import numpy as np
import pytest
from PIL import Image

from dfdet.errors import DataError
from dfdet.images import FORMATS, check_image_file, open_image


def test_a_tiny_video_of_huge_frames_is_refused_before_decoding(tmp_path):
    path = tmp_path / "big.mp4"
    with av.open(str(path), "w") as c:  # 8192x8192: ~14 KB on disk, 200 MB per decoded RGB frame
        s = c.add_stream("libx264", rate=1)
        s.width = s.height = 8192
        s.pix_fmt = "yuv420p"
        for packet in [*s.encode(av.VideoFrame.from_ndarray(np.zeros((8192, 8192, 3), np.uint8))), *s.encode()]:
            c.mux(packet)
    assert path.stat().st_size < 100_000
    from dfdet.data.video import probe, sample_frames
    for read in (probe, sample_frames):
        with pytest.raises(DataError, match=r"big.mp4: video frames too large \(8192x8192 = 67 MP\); the limit is 40"):
            read(path)


@pytest.mark.parametrize("fmt", ["ICO", "PPM", "TGA", "PCX", "SGI"])
def test_formats_outside_the_readme_list_are_refused_by_content(tmp_path, fmt):
    path = tmp_path / "renamed.jpg"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(path, format=fmt)
    for read in (check_image_file, open_image):
        with pytest.raises(DataError, match=f"renamed.jpg: {fmt} images are not accepted; use JPEG, PNG, WebP"):
            read(path)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"])
def test_the_readme_formats_are_read(tmp_path, fmt):
    path = tmp_path / "face.img"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(path, format=fmt)
    assert check_image_file(path)[0] in FORMATS and open_image(path).size == (64, 64)


def test_image_output_folders_of_killed_processes_are_removed_at_start(tmp_path):
    import os
    import subprocess
    import time

    from dfdet.viz.media import remove_stale_image_dirs
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    folders = {"dead": tmp_path / f"dfdet_images_{dead.pid}_abc", "alive": tmp_path / f"dfdet_images_{os.getpid()}_x",
               "old": tmp_path / "dfdet_images_q1w2e3", "new": tmp_path / "dfdet_images_r4t5y6"}
    for d in folders.values():
        d.mkdir()
        (d / "0123.png").write_bytes(b"x")
    os.utime(folders["old"], (time.time() - 7200,) * 2)
    assert sorted(remove_stale_image_dirs(tmp_path)) == sorted([folders["dead"], folders["old"]])
    assert folders["alive"].is_dir() and folders["new"].is_dir()
