"""The autoscaler decisions without Ray: which node types fit a pool's need, the bundles a run
asks for, what it says it waits for; and ``--capacity-timeout`` on the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.run import capacity
from orchestrator.run.capacity import NodeType
from orchestrator.run.driver import SchedulerOptions

HEIST = Path(__file__).resolve().parent.parent / "manifests" / "heist.yaml"

CPU = NodeType("cpu", {"CPU": 2}, 2)
GPU = NodeType("gpu", {"CPU": 8, "GPU": 1, "accelerator_type:H100": 1}, 4)
NONE_LEFT = NodeType("gpu-x2", {"CPU": 8, "GPU": 2}, 0)


def test_a_node_type_fits_a_need_it_holds_once():
    assert capacity.type_fits({"CPU": 1}, CPU)
    assert capacity.type_fits({"CPU": 2}, CPU)
    assert not capacity.type_fits({"CPU": 3}, CPU)
    assert capacity.type_fits({"CPU": 1, "GPU": 1, "accelerator_type:H100": 1}, GPU)
    assert not capacity.type_fits({"CPU": 1, "GPU": 1}, CPU)  # a resource it lacks
    assert not capacity.type_fits({"GPU": 1, "accelerator_type:A100": 1}, GPU)


def test_memory_a_type_does_not_declare_does_not_rule_it_out():
    # Ray sizes a node's memory from its machine; a config rarely declares it
    assert capacity.type_fits({"CPU": 1, "memory": 8 * 1024**3}, CPU)
    small = NodeType("small", {"CPU": 4, "memory": 2 * 1024**3}, None)
    assert not capacity.type_fits({"CPU": 1, "memory": 8 * 1024**3}, small)


def test_a_type_that_may_launch_no_node_fits_nothing():
    assert not capacity.type_fits({"GPU": 2}, NONE_LEFT)
    assert capacity.launchable_for({"GPU": 2}, [CPU, GPU, NONE_LEFT]) == []
    assert capacity.launchable_for({"CPU": 2}, [CPU, GPU, NONE_LEFT]) == [CPU, GPU]
    assert capacity.type_fits({"CPU": 1}, NodeType("any", {"CPU": 1}, None))


def test_bundles_are_one_per_actor_shaped_like_the_pools():
    cpu, gpu = {"CPU": 1.0}, {"CPU": 0.5, "GPU": 1.0}
    assert capacity.bundles([(cpu, 3), (gpu, 0)]) == [cpu, cpu, cpu]
    assert capacity.bundles([]) == []
    assert capacity.bundles([(cpu, 2), ({}, 5)]) == [cpu, cpu]  # a need of nothing: no bundle


def test_max_workers_caps_the_bundles_and_every_pool_keeps_a_share():
    cpu, gpu = {"CPU": 1.0}, {"CPU": 0.5, "GPU": 1.0}
    got = capacity.bundles([(cpu, 10), (gpu, 10)], cap=4)
    assert got == [cpu, gpu, cpu, gpu]
    got = capacity.bundles([(cpu, 10), (gpu, 1)], cap=5)
    assert got.count(gpu) == 1 and got.count(cpu) == 4
    assert capacity.bundles([(cpu, 10)], cap=0) == []


def test_what_the_run_waits_for_reads_as_counts_of_shapes():
    gpu = {"GPU": 1.0}
    assert capacity.awaited_text([gpu] * 4) == "4 × {GPU: 1}"
    text = capacity.awaited_text([{"CPU": 1.0, "GPU": 1.0}, {"CPU": 2.0}, {"CPU": 1.0,
                                                                          "GPU": 1.0}])
    assert text == "2 × {CPU: 1, GPU: 1} and 1 × {CPU: 2}"
    assert capacity.shape_text({"CPU": 1.0, "memory": 4 * 1024**3}) == "{CPU: 1, memory: 4GiB}"


def test_shortfall_is_what_live_nodes_cannot_hold():
    gpu = {"CPU": 1.0, "GPU": 1.0}
    nodes = [{"CPU": 4.0, "GPU": 1.0}, {"CPU": 2.0}]
    assert capacity.slots(gpu, nodes) == 1
    assert capacity.slots({"CPU": 1.0}, nodes) == 6
    assert capacity.shortfall([gpu] * 3, nodes) == [gpu, gpu]
    assert capacity.shortfall([{"CPU": 1.0}] * 3, nodes) == []
    assert capacity.shortfall([gpu], []) == [gpu]  # a cluster at zero


def test_node_types_from_an_autoscaling_config():
    config = {
        "max_workers": 10,
        "head_node_type": "head",
        "available_node_types": {
            "head": {"resources": {"CPU": 0}, "max_workers": 0},
            "cpu": {"resources": {"CPU": 2, "object_store_memory": 1e8}, "max_workers": 2},
            "gpu": {"resources": {"CPU": 1, "GPU": "1", "bad": "x"}},
        },
    }
    types = {t.name: t for t in capacity.node_types_from_config(config)}
    assert set(types) == {"cpu", "gpu"}  # the head is never launched
    assert types["cpu"].max_workers == 2
    assert types["gpu"].resources == {"CPU": 1.0, "GPU": 1.0} and types["gpu"].max_workers is None
    frozen = {**config, "max_workers": 0}
    assert all(t.max_workers == 0 for t in capacity.node_types_from_config(frozen))
    assert capacity.node_types_from_config({}) == ()


def test_the_capacity_timeout_defaults_to_15_minutes():
    assert SchedulerOptions().capacity_timeout == 900.0


@pytest.mark.parametrize("value", ["nan", "inf", "-5", "0", "soon"])
def test_capacity_timeout_must_be_a_positive_finite_number(value, tmp_path):
    runner = CliRunner()
    for cmd in (["render", str(HEIST), "--store", str(tmp_path / "s")],
                ["nightly", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--store", str(tmp_path / "s")],
                ["submit", str(HEIST), "--store", "s3://b/p", "--out", "s3://b/o"]):
        r = runner.invoke(main, [*cmd, "--capacity-timeout", value], catch_exceptions=False)
        assert r.exit_code == 2, (cmd, r.output)
        assert "--capacity-timeout" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "s").exists()


def test_only_a_monitor_with_node_types_of_its_own_launches_nodes():
    # every head runs a monitor; without an autoscaling config its read-only provider names
    # each live node's type after the node
    readonly = {"autoscaler_report": {"node_type_mapping": {"ab12": "node_ab12",
                                                            "cd34": "node_cd34"}}}
    assert not capacity.launches_nodes(readonly)
    fake = {"autoscaler_report": {"node_type_mapping": {"ff00": "ray.head.default",
                                                        "ff01": "gpu"}}}
    assert capacity.launches_nodes(fake)
    assert not capacity.launches_nodes({"time": 1.0})  # a monitor that has not reported yet
    assert not capacity.launches_nodes([])
