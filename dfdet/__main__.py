import atexit
import os
import sys

from .cli import main
from .distributed import launched

rc = main()
if launched():
    # A torchrun rank skips interpreter finalisation, where gloo's worker threads can still hold
    # tensors and abort the process (SIGABRT) after its outputs are written. Exit handlers still run.
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
raise SystemExit(rc)
