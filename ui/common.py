"""What every tab module shares: the context it builds into, error handling, and open choice lists.

Two kinds of events wire each view:
- the public API endpoint (api_name as documented in the README): its outputs never change, and a
  refusal raises gr.Error, so a gradio_client caller gets an exception with the one-line reason;
- the visitor's event (private): the same service call, but a refusal never raises. The view keeps
  its last good results and the tab's status line says what went wrong and stays until the next
  action, instead of red "Error" badges over the outputs and a toast that fades.
"""
from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass, field
from typing import Callable

import gradio as gr
import pandas as pd

from dfdet.errors import DfdetError
from dfdet.viz.session import Session
from dfdet.viz.store import md_escape

log = logging.getLogger("dfdet.app")
MODEL_QUEUE = "model"  # one model call at a time: the bank swaps overlays into one shared ViT
MODEL_KW = dict(concurrency_limit=1, concurrency_id=MODEL_QUEUE)
PRIVATE = dict(api_visibility="private")
SERVER_PATH = re.compile(r"(?<![\w.~:/])/(?:[^/\s'\"]+/)+")  # the folders of an absolute path


@dataclass
class Ctx:
    """What the page hands each tab module: the back end and the components other tabs need."""
    session: Session
    tabs: gr.Tabs | None = None
    run_lists: list = field(default_factory=list)  # run dropdowns refreshed when runs appear (demo, Hub)
    # (fn(run) -> updates, outputs): what follows a run choice (its methods), set in the same update as the run
    # list, so a run's change event never lands after a shared link's selection and resets it
    run_followers: list = field(default_factory=list)
    face_source: gr.Dropdown | None = None  # Compare's face source: runs appear here too
    face_row: gr.Number | None = None
    compare_open: Callable | None = None  # (source, row) -> Compare outputs: open a face in Compare
    compare_outputs: list = field(default_factory=list)
    url_inputs: dict = field(default_factory=dict)  # tab -> {query parameter: component it sets} (shareable links)
    on_load: list = field(default_factory=list)  # (fn, output): filled when a page loads


def scrub(message: str) -> str:
    """Files are named by file name only: the server's folders (temp, working, data) are no visitor's business."""
    return SERVER_PATH.sub("", message)


def message_of(err: BaseException) -> str:
    if isinstance(err, gr.Error):
        return scrub(str(err.message))
    if isinstance(err, DfdetError):
        return scrub(str(err))
    return f"Something went wrong ({type(err).__name__}: {scrub(str(err))}). The details are in the server log."


def friendly(fn):
    """For API endpoints: library errors become one readable gr.Error; anything else a short note."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except DfdetError as err:
            raise gr.Error(message_of(err), print_exception=False) from None
        except Exception as err:  # noqa: BLE001 - shown as a message; the traceback goes to the server log
            log.exception("handler %s failed", fn.__name__)
            raise gr.Error(message_of(err), print_exception=False) from None
    return wrapper


def ok(text: str = "") -> str:
    return f"<div class='status ok'>{text}</div>" if text else ""


def failed(err: BaseException) -> str:
    """The persistent inline status line of a failed action (escaped: messages hold <placeholders>)."""
    return f"<div class='status err' role='alert'>⚠ {md_escape(message_of(err))}</div>"


def for_visitor(fn, n_out: int, done: str | Callable | None = None):
    """A visitor's handler: fn's outputs plus the status line; on failure nothing else changes."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            out = fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - every failure becomes the status line
            if not isinstance(err, (DfdetError, gr.Error)):
                log.exception("handler %s failed", fn.__name__)
            return (*[gr.skip()] * n_out, failed(err))
        out = out if isinstance(out, tuple) else (out,)
        text = done(*args) if callable(done) else (done or "")
        return (*out, ok(md_escape(text)) if text else "")
    return wrapper


def for_visitor_stream(fn, n_out: int):
    """for_visitor for a generator (a video scored frame by frame): each yield redraws the outputs; a failure
    part-way keeps what was shown and says why in the status line. Not functools.wraps: gradio must see
    a generator function here, not the wrapped one."""
    def wrapper(*args, **kwargs):
        try:
            for out in fn(*args, **kwargs):
                yield (*(out if isinstance(out, tuple) else (out,)), "")
        except Exception as err:  # noqa: BLE001 - every failure becomes the status line
            if not isinstance(err, (DfdetError, gr.Error)):
                log.exception("handler %s failed", getattr(fn, "__name__", "stream"))
            yield (*[gr.skip()] * n_out, failed(err))
    wrapper.__name__ = getattr(fn, "__name__", "stream")
    return wrapper


def status_line(elem_id: str) -> gr.HTML:
    return gr.HTML("", elem_id=elem_id, elem_classes=["status-line"])


def display_table(df: pd.DataFrame) -> pd.DataFrame:
    """NaN is not valid JSON: missing scores travel as empty cells."""
    return df.astype(object).where(df.notna(), None)


def fit_columns(columns: list[str], percent: dict[str, float]) -> list[str]:
    """gr.Dataframe column_widths as shares of the table's width, so a table fits its box at 1400 px instead of
    scrolling sideways (gradio otherwise sizes each column to its longest cell, unwrapped)."""
    return [f"{percent[c]}%" if c in percent else "auto" for c in columns]


def OpenCheckboxGroup(*args, **kwargs) -> gr.CheckboxGroup:  # noqa: N802 - used like the component it makes
    """A CheckboxGroup whose choices are filled per run (demo and Hub runs appear after the page is built):
    the service checks the values against the run, so the component accepts what a caller sends. (An
    instance override, not a subclass: the browser renders components by their class name.)"""
    box = gr.CheckboxGroup(*args, **kwargs)
    box.preprocess = lambda payload: list(payload or [])
    return box


def open_dropdown(choices, value=None, **kw) -> gr.Dropdown:
    """A dropdown whose choices change with the runs: the service, not gradio's build-time list, checks values."""
    return gr.Dropdown(choices, value=value, allow_custom_value=True, **kw)


def on_gpu(fn):
    """ZeroGPU Spaces: model calls run under `spaces.GPU` when the `spaces` package is there; else as they are."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(fn)


def how_to_read(text: str) -> gr.Markdown:
    return gr.Markdown(f"<span class='how'>**How to read this:** {text}</span>")
