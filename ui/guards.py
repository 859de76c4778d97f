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


MODEL_SHARE = 3  # model requests one visitor (IP address) may have waiting at once


def fair_queue(app: gr.Blocks, share: int = MODEL_SHARE, model_queue: str | None = None) -> gr.Blocks:
    """Each visitor gets a fair share of the model queue, and the cheap views keep answering.

    gradio's queue has one size limit for all events: one visitor's 70 video requests filled it, and every
    other visitor, plain views included, got "Queue is full". Here the model queue and the views each have
    the app's max_size to themselves, and one visitor may have at most `share` model requests waiting."""
    from gradio import route_utils

    from .common import MODEL_QUEUE
    model_queue = model_queue or MODEL_QUEUE
    queue = app._queue
    limit, queue.max_size = queue.max_size, None  # enforced below, per kind of event
    push = queue.push

    async def fair(body, request, username):
        try:
            fn = route_utils.get_fn(app, None, body)
        except Exception:  # noqa: BLE001 - an unknown function: gradio's own push answers it
            return await push(body, request, username)
        model = fn.concurrency_id == model_queue
        waiting = [e for cid, q in queue.event_queue_per_concurrency_id.items()
                   if (cid == model_queue) == model for e in q.queue]
        if limit is not None and len(waiting) >= limit:
            what = "model requests" if model else "requests"
            return False, f"Queue is full: {len(waiting)} {what} waiting; try again in a minute.", "queue_full"
        if model:
            client = _client(request)
            mine = sum(_client(e.request) == client for e in waiting)
            if mine >= share:
                return (False, f"You already have {mine} model requests waiting (each visitor may have {share}); "
                        "wait for them to finish.", "queue_full")
        return await push(body, request, username)
    queue.push = fair
    return app


def _client(request) -> str:
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "unknown"
