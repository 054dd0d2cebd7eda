"""``--priority`` and ``--idle-timeout`` on the commands that render, and ``reelfarm farm``'s
refusals, without a cluster."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.jobs import client


@pytest.mark.parametrize("argv", [
    ["render", "manifests/heist.yaml"],
    ["submit", "manifests/heist.yaml"],
    ["nightly", "manifests", "--out", "renders"],
])
@pytest.mark.parametrize(("option", "value"), [
    ("--priority", "101"), ("--priority", "-1"), ("--priority", "high"),
    ("--idle-timeout", "0"), ("--idle-timeout", "nan"),
])
def test_a_bad_priority_or_idle_timeout_is_refused_with_exit_2(argv, option, value):
    r = CliRunner().invoke(main, [*argv, option, value])
    assert r.exit_code == 2
    assert option in r.stderr
    assert "Traceback" not in r.stderr


def test_the_api_refuses_a_priority_out_of_range():
    with pytest.raises(client.JobError, match="priority 101"):
        client.submit("manifests/heist.yaml", address="http://127.0.0.1:9", store="/tmp/s",
                      out="/tmp/o", priority=101)


def test_farm_needs_a_cluster_address_and_never_starts_one(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    r = CliRunner().invoke(main, ["farm"])
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == [
        "error: no Ray cluster given: pass --address HEAD:6379 or set RAY_ADDRESS "
        "(`reelfarm farm` never starts a cluster of its own)"]
