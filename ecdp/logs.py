"""Send a workflow step's output (prints, warnings, progress bars, tracebacks) to its log file,
and keep a second process off the same step."""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sys
import traceback
from pathlib import Path


@contextlib.contextmanager
def logged(path: str | os.PathLike):
    """Append stdout, stderr and ``logging`` to ``path``; a crash is logged, then re-raised.

    The step holds an exclusive lock on ``.<log name>.lock`` beside its log while it runs
    (every rule has its own log; Snakemake deletes the log itself before a job, so the lock is
    a file of its own), so a second process started on the same step stops at once, before it
    writes anything: Snakemake 9.27 removes the whole ``.snakemake/locks`` folder when any run
    in the folder ends, after which its own lock no longer keeps a second run off jobs a first
    one is running (docs/workflow.md, "Two runs in one folder"). The torchrun workers of a
    multi-GPU training (``LOCAL_RANK`` set) run the step's script again under the lock their
    launcher holds: they log without taking it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        try:
            if "LOCAL_RANK" not in os.environ:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(
                f"{path}: another process is running this step (it holds {lock.name}); two "
                f"runs of one target in one folder would write the same outputs. Wait for the "
                f"other run to end, then run again") from None
        with open(path, "a", buffering=1) as f, _to(f):
            yield


@contextlib.contextmanager
def _to(f):
    """stdout, stderr and logging into ``f`` for the block; a crash is logged, then raised."""
    with contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        handler = logging.StreamHandler(f)
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            yield
        except BaseException:
            traceback.print_exc(file=f)
            raise
        finally:
            root.removeHandler(handler)
            sys.stdout.flush()
