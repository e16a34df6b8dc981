"""Leave the interpreter quickly once a run is over.

Importing torch, torchvision, diffusers and transformers creates about half a million long-lived
Python objects. When the process exits after pytest's summary, CPython's finalization runs several
full garbage collections, each walking all of them: about 1 s on 2 cores (benchmarks/RESULTS.md),
spent after the last line of output, on every run. Freezing the heap at exit moves those objects
out of the collector's reach; their memory goes back to the OS with the process anyway.
"""

from __future__ import annotations

import atexit
import gc

_registered = False


def freeze_heap_at_exit() -> None:
    """Register the exit-time freeze once per process (pytester runs pytest many times in one)."""
    global _registered
    if not _registered:
        atexit.register(_collect_then_freeze)
        _registered = True


def _collect_then_freeze() -> None:
    # One collection first, so objects that are garbage already still have their finalizers run
    # (unflushed files, weakref callbacks); only what is alive at exit is frozen.
    gc.collect()
    gc.freeze()
