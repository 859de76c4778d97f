"""The upload guards: every file a request names passes here before any handler sees it."""
from __future__ import annotations

import functools

import gradio as gr
from gradio.utils import get_upload_folder

from dfdet.errors import DfdetError
from dfdet.images import UPLOAD_MAX_SIDE, check_image_file
from dfdet.uploads import UploadBudget, UploadGate, UploadLimits, check_payload
from dfdet.viz.media import check_upload

from .common import scrub


def guard_image_upload(component: gr.Image) -> gr.Image:
    """Gradio opens an uploaded image with Pillow before any handler runs, and its errors name server
    paths. Check the header first (format, size, bomb), so the user reads the library's one message."""
    preprocess = component.preprocess

    def checked(payload):
        if payload is not None and getattr(payload, "path", None):
            try:
                check_image_file(check_upload(payload.path, "image"), UPLOAD_MAX_SIDE)
            except DfdetError as err:
                raise gr.Error(scrub(str(err)), print_exception=False) from None
        return preprocess(payload)
    component.preprocess = checked
    return component


def guard_file_inputs(app: gr.Blocks) -> gr.Blocks:
    """Every file a request names, in any input of any event, must be an upload to this server
    (dfdet.uploads), checked on the raw payload before gradio touches it: a payload without gradio's
    `meta` skips gradio's own check, and one with a URL for a path makes gradio fetch it."""
    preprocess_data = app.preprocess_data

    async def checked(block_fn, inputs, *args, **kwargs):
        server = getattr(app, "server_app", None)
        folder = getattr(server, "uploaded_file_dir", None) or get_upload_folder()
        try:
            for i, value in enumerate(inputs or []):
                block = block_fn.inputs[i] if i < len(block_fn.inputs) else None
                check_payload(value, folder, file_input=is_file_input(block))
        except DfdetError as err:
            raise gr.Error(str(err), print_exception=False) from None
        return await preprocess_data(block_fn, inputs, *args, **kwargs)
    app.preprocess_data = checked
    return app


def is_file_input(block) -> bool:
    """A component whose value names server files: its data model has a `path` (image, video, file, gallery...)."""
    return _names_files(getattr(block, "data_model", None))


@functools.lru_cache(maxsize=None)
def _names_files(model) -> bool:
    try:
        return '"path"' in str(model.model_json_schema()).replace("'", '"')
    except Exception:  # noqa: BLE001 - no model, or not a pydantic one: not a file input
        return False


def upload_gate(app: gr.Blocks, limits: UploadLimits | None = None) -> dict:
    """launch()'s app_kwargs: dfdet.uploads.UploadGate in front of every route, with this app's byte budget
    (kept as app.upload_budget). gradio's max_file_size bounds one file; this bounds what a visitor, and all of
    them, have in flight and on disk."""
    from starlette.middleware import Middleware
    app.upload_budget = UploadBudget(limits or UploadLimits.from_env(), get_upload_folder())
    return {"middleware": [Middleware(UploadGate, budget=app.upload_budget)]}
