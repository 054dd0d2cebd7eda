"""Run the real ``reelfarm`` CLI in its own process with a slow test backend registered.

Used by the resume and concurrency tests, which kill or interrupt this process part-way::

    REELFARM_TEST_SLEEP_PER_FRAME=0.5 python tests/render_entry.py render story.yaml ...

It registers ``SleepBackend("sleep", per_frame_s=...)`` (see ``backends_for_tests``), and
``GateBackend("gate")`` when ``REELFARM_TEST_GATE_DIR`` is set, then calls
``orchestrator.cli.main``: every line of the render path is the product's own.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backends_for_tests import GateBackend, SleepBackend, use  # noqa: E402

from orchestrator.cli import main  # noqa: E402

if __name__ == "__main__":
    use(SleepBackend("sleep", per_frame_s=float(os.environ.get("REELFARM_TEST_SLEEP_PER_FRAME",
                                                                "0.1"))))
    if os.environ.get("REELFARM_TEST_GATE_DIR"):  # renders wait for <gate dir>/open
        use(GateBackend("gate"))
    main(prog_name="reelfarm")
