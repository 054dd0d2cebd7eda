"""Run the real ``reelfarm`` CLI in its own process with a slow test backend registered.

Used by the resume and concurrency tests, which kill or interrupt this process part-way::

    REELFARM_TEST_SLEEP_PER_FRAME=0.5 python tests/render_entry.py render story.yaml ...

It registers ``SleepBackend("sleep", per_frame_s=...)`` (with ``REELFARM_TEST_SLEEP_LOG_DIR``,
each render leaves a start trace there), ``NoisyBackend("noisy")`` (failing the shots named in
``REELFARM_TEST_FAIL_SHOTS``), and ``GateBackend("gate")`` when ``REELFARM_TEST_GATE_DIR`` is
set, see ``backends_for_tests``, then calls
``orchestrator.cli.main``: every line of the render path is the product's own.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backends_for_tests import GateBackend, NoisyBackend, SleepBackend, use  # noqa: E402

from orchestrator.cli import main  # noqa: E402

if __name__ == "__main__":
    use(SleepBackend("sleep", per_frame_s=float(os.environ.get("REELFARM_TEST_SLEEP_PER_FRAME",
                                                                "0.1")),
                     log_dir=os.environ.get("REELFARM_TEST_SLEEP_LOG_DIR") or None))
    # `noisy`: prints in every way a backend can, and fails the shots named here
    use(NoisyBackend("noisy", fail_shots=frozenset(
        os.environ.get("REELFARM_TEST_FAIL_SHOTS", "").split(",")) - {""},
        secret_var=os.environ.get("REELFARM_TEST_SECRET_VAR", "")))
    if os.environ.get("REELFARM_TEST_GATE_DIR"):  # renders wait for <gate dir>/open
        use(GateBackend("gate"))
    main(prog_name="reelfarm")
