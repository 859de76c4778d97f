"""The upload guards: every file a request names passes here before any handler sees it."""
from __future__ import annotations

import functools
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

from dfdet.errors import DfdetError
from dfdet.images import UPLOAD_MAX_SIDE, check_image_file
from dfdet.uploads import UploadBudget, UploadGate, UploadLimits, check_payload
from dfdet.viz.media import IMAGE_EXTS, check_upload

from .common import scrub


class Refused(str):
    """An upload the image guard refused; its text is the one-line reason. Preprocessing never raises (that
    would put an "Error" badge on every output and gradio's text in a toast): the handler raises it with
    `uploaded`, where the view's own status line says it and keeps the last good results."""


def uploaded(value):
    """The upload a handler was given, or the guard's refusal raised as the one-line message."""
    if isinstance(value, Refused):
        raise gr.Error(str(value), print_exception=False)
    return value


class GuardedImage(gr.Image):
    """gr.Image whose preprocessing never raises. Gradio opens an upload with Pillow before any handler
    runs, and its errors name server paths and put an "Error" badge on every output. The header is checked
    first (format, size, bomb), and anything Pillow still cannot read (a text file renamed .png) is refused
    the same way: a Refused value that the handler raises (`uploaded`). A subclass, not an instance
    override: gradio rebuilds a session's copy of a component from its class after any update."""

    def get_block_name(self) -> str:
        return "image"  # the browser's component

    def preprocess(self, payload):
        path = getattr(payload, "path", None) if payload is not None else None
        if path:
            try:
                check_image_file(check_upload(path, "image"), UPLOAD_MAX_SIDE)
            except DfdetError as err:
                return Refused(scrub(str(err)))
        try:
            return super().preprocess(payload)
        except Exception:  # noqa: BLE001 - whatever Pillow says about it, the visitor reads one line
            return Refused(f"{Path(str(path or 'upload')).name}: not a readable image; upload a "
                           f"{', '.join(IMAGE_EXTS)} photo")


def guard_image_upload(component: gr.Image) -> gr.Image:
    """An existing gr.Image made a GuardedImage (same configuration)."""
    component.__class__ = GuardedImage
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
    push = queue.push

    async def fair(body, request, username):
        try:
            fn = route_utils.get_fn(app, None, body)
        except Exception:  # noqa: BLE001 - an unknown function: gradio's own push answers it
            return await push(body, request, username)
        limit = queue.max_size  # the app's setting, applied below to each kind of event on its own
        model = fn.concurrency_id == model_queue
        waiting = [e for cid, q in queue.event_queue_per_concurrency_id.items()
                   if (cid == model_queue) == model for e in q.queue]
        if limit is not None and len(waiting) >= limit:
            return False, f"Queue is full. Max size is {limit} and size is {len(waiting)}.", "queue_full"
        if model:
            client = _client(request)
            mine = sum(_client(e.request) == client for e in waiting)
            if mine >= share:
                return (False, f"You already have {mine} model requests waiting (each visitor may have {share}); "
                        "wait for them to finish.", "queue_full")
        queue.max_size = None  # gradio's own check (all events together) runs first in push, before any await
        try:
            return await push(body, request, username)
        finally:
            queue.max_size = limit
    queue.push = fair
    return app


def _client(request) -> str:
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "unknown"
