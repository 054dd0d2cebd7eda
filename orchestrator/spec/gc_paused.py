"""Pause Python's cyclic garbage collector around a burst of allocations.

Loading and planning a large story allocate hundreds of thousands of small objects (YAML
nodes, dicts, models) and free almost none of them until the end. Each allocation counts toward
the collector's thresholds, and every full collection walks everything still alive, so a
10,000-task plan spends as much time in the collector as in its own work, more the larger the
story. Those objects form no reference cycles that need collecting before the burst ends; the
collector resumes (and may run) when it does.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic collector inside the block; restore its previous state after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
