"""Installed as `sitecustomize` in a subprocess a test starts: pauses it at a known point of progress.

Signal tests must not race the work they interrupt (a short run can finish before the signal comes).
With DFDET_PAUSE=module:function, the Nth call (DFDET_PAUSE_AFTER, default 1) whose arguments mention
DFDET_PAUSE_MATCH runs, then the process writes DFDET_PAUSE_MARKER and waits there until a signal
stops it. The test waits for the marker, so the signal always lands mid-run, at that point.
"""
import os

if os.environ.get("DFDET_PAUSE"):
    import importlib
    import time
    from pathlib import Path

    _module, _name = os.environ["DFDET_PAUSE"].split(":")
    _mod = importlib.import_module(_module)
    _real = getattr(_mod, _name)
    _calls = []

    def _paused(*args, **kwargs):
        out = _real(*args, **kwargs)
        if os.environ.get("DFDET_PAUSE_MATCH", "") in repr((args, kwargs)):
            _calls.append(1)
            if len(_calls) == int(os.environ.get("DFDET_PAUSE_AFTER", "1")):
                Path(os.environ["DFDET_PAUSE_MARKER"]).write_text(str(os.getpid()))
                while True:  # until a signal unwinds the process (or its handler exits it)
                    time.sleep(0.05)
        return out

    setattr(_mod, _name, _paused)
