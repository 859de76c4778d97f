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


def test_upload_folders_of_killed_instances_are_removed_at_start_and_live_ones_kept(tmp_path):
    """app.py gives gradio a folder of its own (dfdet.viz.media.app_temp_dir), locked while the process lives.
    A start removes the folders of instances that are gone, even after a kill -9, and nothing else."""
    import os
    import signal
    import subprocess
    import sys

    from pathlib import Path

    from dfdet.viz.media import APP_DIR_PREFIX, remove_stale_app_dirs
    code = ("import sys; from dfdet.viz.media import app_temp_dir; print(app_temp_dir(sys.argv[1]), flush=True); "
            "sys.stdin.read()")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    def instance():
        proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=env)
        folder = Path(proc.stdout.readline().strip())  # printed once its folder is made and locked
        (folder / "5e1f" / "upload.png").parent.mkdir()
        (folder / "5e1f" / "upload.png").write_bytes(b"an upload")
        return proc, folder
    (alive, live), (killed, dead) = instance(), instance()
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    making = tmp_path / f"{APP_DIR_PREFIX}1_new"  # another instance between mkdtemp and its lock
    making.mkdir()
    foreign = [tmp_path / "5e1f", tmp_path / "dfdet_images_1_x"]  # gradio's own layout, another folder kind
    for d in foreign:
        d.mkdir()
    try:
        assert remove_stale_app_dirs(tmp_path) == [dead] and not dead.exists()
        assert (live / "5e1f" / "upload.png").is_file() and making.is_dir() and all(d.is_dir() for d in foreign)
    finally:
        alive.communicate("")  # a normal exit removes its own folder
    assert not live.exists()
    assert remove_stale_app_dirs(tmp_path) == []


def test_the_heap_trimmer_gives_freed_memory_back(tmp_path):
    """The load test's growth was mostly memory freed but kept in glibc's arenas (dfdet.heap). In a fresh
    process: 96 MB of chunks, every other one freed, stay resident until trim() hands their pages back."""
    import os
    import subprocess
    import sys

    from dfdet import heap
    if heap.libc() is None:
        pytest.skip("not glibc")
    code = ("from dfdet.heap import rss_bytes, trim\n"
            "blocks = [bytes(32 * 1024 - 64) for _ in range(3000)]\n"
            "for i in range(0, len(blocks), 2):\n    blocks[i] = None\n"
            "before = rss_bytes()\nreleased = trim()\nprint(before - rss_bytes(), released)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    given_back, released = out.stdout.split()
    assert released == "True" and int(given_back) > 24 * 2 ** 20, out.stdout  # of the 48 MB freed
    assert heap.limit_arenas(8) and heap.rss_bytes() > 0
