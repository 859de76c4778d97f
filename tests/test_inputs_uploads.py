"""A file input's preprocessing never fails before the handler: a text file renamed .png or a video dropped on
the image input becomes the guard's one-line refusal, raised by the handler (ui.guards), never gradio's error
with the server's temp path."""
from __future__ import annotations

import shutil
from pathlib import Path

import gradio as gr
import pytest
from gradio.data_classes import FileData

from ui.guards import Refused, guard_image_upload, uploaded


@pytest.fixture()
def image_input():
    return guard_image_upload(gr.Image(type="filepath", image_mode=None))


def bad_files(folder: Path, shared: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    text = folder / "notes.png"
    text.write_text("not an image at all\n")
    jpg = folder / "notes.jpg"
    jpg.write_text("still not an image\n")
    video = folder / "clip.mp4"
    shutil.copyfile(next((shared / "videos").rglob("*.mp4")), video)
    return {"text .png": text, "text .jpg": jpg, "video": video}


def test_a_bad_upload_is_a_refusal_not_a_preprocessing_error(image_input, tmp_path, shared):
    # gradio rebuilds a visitor's copy of a component from its class after any update (gr.skip() included):
    # the copy must guard too
    copy = type(image_input)(**{**image_input.constructor_args, "render": False})
    assert copy.get_block_name() == "image"
    for what, path in bad_files(tmp_path / "up", shared).items():
        value = image_input.preprocess(FileData(path=str(path), orig_name=path.name))
        assert isinstance(value, Refused), what
        assert isinstance(copy.preprocess(FileData(path=str(path), orig_name=path.name)), Refused), what
        with pytest.raises(gr.Error) as err:
            uploaded(value)
        message = str(err.value.message)
        assert path.name in message and str(tmp_path) not in message and "/" not in message, (what, message)
        assert "\n" not in message


def test_a_good_upload_passes_unchanged(image_input, shared):
    src = sorted((shared / "datasets" / "FF" / "real").glob("*/*.png"))[0]
    value = image_input.preprocess(FileData(path=str(src), orig_name=src.name))
    assert not isinstance(value, Refused) and Path(value).is_file()
    assert uploaded(value) == value and uploaded(None) is None
