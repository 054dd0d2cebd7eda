"""The live run record's writer: snapshots on the driver's thread, writes on its own thread,
the newest snapshot replacing one still waiting, and nothing written after ``close``."""

from __future__ import annotations

import itertools
import threading
import time

from orchestrator.run.live_record import LiveRecord


def _until(pred, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_slow_write_never_holds_up_the_driver_and_the_newest_snapshot_wins():
    gates = {0: threading.Event(), 2: threading.Event()}  # the 1st and 3rd writes block
    written: list[int] = []
    writers: set[int] = set()

    def write(doc):
        writers.add(threading.get_ident())
        gate = gates.get(len(written))
        if gate is not None:
            gate.wait()
        written.append(doc["n"])

    n = itertools.count()
    live = LiveRecord(lambda: {"n": next(n)}, write, min_interval=0, heartbeat=1e9)
    live.start(None)  # snapshot 0: the writer takes it and blocks
    _until(lambda: writers, "the writer to take the first snapshot")
    for _ in range(5):  # the driver goes on while the write hangs
        live.task_finished(None, None)
        live.tick(None)
    gates[0].set()
    _until(lambda: len(written) == 2, "the newest snapshot to be written")
    assert written == [0, 5]  # snapshots 1-4 were replaced while they waited
    assert threading.get_ident() not in writers

    live.task_finished(None, None)
    live.tick(None)  # snapshot 6: taken by the writer, which blocks again
    _until(lambda: live._pending is None, "the writer to take snapshot 6")
    live.task_finished(None, None)
    live.tick(None)  # snapshot 7 waits
    closing = threading.Thread(target=live.close)
    closing.start()  # close waits for the write in flight ...
    gates[2].set()
    closing.join(timeout=30)
    assert not closing.is_alive()
    assert written == [0, 5, 6]  # ... and drops the one waiting: the final record comes next
    live.task_finished(None, None)
    live.tick(None)  # closed: no snapshot, no write
    assert written == [0, 5, 6] and live.writes == 3


def test_snapshots_wait_for_a_change_and_the_interval():
    snaps = itertools.count()
    taken: list[int] = []
    live = LiveRecord(lambda: {"n": taken.append(next(snaps)) or len(taken)}, lambda doc: None,
                      min_interval=1e9, heartbeat=1e9)
    live.start(None)
    for _ in range(3):
        live.task_started(None, None, None)
        live.tick(None)
    live.close()
    assert taken == [0]  # the first write only: the interval had not passed since


def test_a_failing_write_is_kept_as_an_error_and_the_render_goes_on():
    def write(doc):
        raise OSError("disk full")

    live = LiveRecord(lambda: {}, write, min_interval=0, heartbeat=1e9)
    live.start(None)
    _until(lambda: live.errors, "the write to fail")
    live.close()
    assert live.writes == 0 and live.errors == ["OSError: disk full"]
