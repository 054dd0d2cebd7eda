"""The farm's lease policy (which job each renderer actor works for), without Ray."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.run.lease import (
    AGING_POINTS_PER_S,
    FarmWorker,
    JobDemand,
    decide,
    effective_priority,
    shares,
    tier,
)


def _free(n, pool="p", warm=None, start=1):
    return [FarmWorker(i, pool, warm) for i in range(start, start + n)]


def test_a_higher_priority_job_gets_the_free_workers_first():
    jobs = [JobDemand("low", 10, 0, want={"p": 4}, work={"p": 4}),
            JobDemand("high", 90, 1, want={"p": 4}, work={"p": 4})]
    d = decide(jobs, _free(4))
    assert set(d.grants.values()) == {"high"} and len(d.grants) == 4
    assert d.shares == {"low": {"p": 0}, "high": {"p": 4}}


def test_equal_priorities_share_a_pool_evenly():
    jobs = [JobDemand("a", 50, 0, want={"p": 6}), JobDemand("b", 50, 1, want={"p": 6})]
    d = decide(jobs, _free(4))
    assert sorted(d.grants.values()) == ["a", "a", "b", "b"]


def test_a_high_priority_job_takes_workers_back_at_their_task_boundary():
    held = [FarmWorker(i, "p", lessee="low", busy=True) for i in range(1, 5)]
    jobs = [JobDemand("low", 10, 0, want={"p": 8}),
            JobDemand("high", 90, 1, want={"p": 3})]
    d = decide(jobs, held)
    assert d.grants == {}
    assert len(d.revoke) == 3  # what high needs, no more
    # already returning: nothing more is revoked for the same need
    returning = [FarmWorker(w.id, "p", lessee="low", busy=True, returning=w.id in d.revoke)
                 for w in held]
    assert decide(jobs, returning).revoke == frozenset()


def test_idle_workers_are_revoked_before_busy_ones():
    held = [FarmWorker(1, "p", lessee="a", busy=True), FarmWorker(2, "p", lessee="a"),
            FarmWorker(3, "p", lessee="a", busy=True)]
    jobs = [JobDemand("a", 50, 0, want={"p": 2}), JobDemand("b", 50, 1, want={"p": 1})]
    assert decide(jobs, held).revoke == frozenset({2})


def test_a_job_keeps_workers_nobody_else_needs():
    held = [FarmWorker(i, "p", lessee="a") for i in range(1, 5)]
    jobs = [JobDemand("a", 10, 0, want={"p": 1}, work={"p": 9}),
            JobDemand("b", 90, 1, want={}, work={"p": 3})]
    d = decide(jobs, held)
    assert d.revoke == frozenset() and d.grants == {}


def test_a_lone_job_gets_free_workers_for_work_not_ready_yet():
    jobs = [JobDemand("a", 50, 0, want={"p": 1}, work={"p": 3})]
    assert sorted(decide(jobs, _free(5)).grants) == [1, 2, 3]


def test_max_workers_caps_a_job():
    jobs = [JobDemand("a", 50, 0, want={"p": 8}, work={"p": 8}, cap=2)]
    assert len(decide(jobs, _free(5)).grants) == 2


def test_warm_models_go_to_the_job_that_needs_them():
    workers = [FarmWorker(1, "p", "m-a"), FarmWorker(2, "p", "m-b")]
    jobs = [JobDemand("a", 50, 0, want={"p": 1}, models={"p": {"m-b": 1}}),
            JobDemand("b", 50, 1, want={"p": 1}, models={"p": {"m-a": 1}})]
    assert decide(jobs, workers).grants == {1: "b", 2: "a"}


def test_aging_lifts_a_starved_job_into_the_higher_tier():
    high = JobDemand("high", 90, 0, want={"p": 4})
    fresh = JobDemand("low", 10, 1, want={"p": 4})
    aged = JobDemand("low", 10, 1, want={"p": 4}, starved_s=80 / AGING_POINTS_PER_S)
    assert shares([high, fresh], {"p": 4})["low"] == {"p": 0}
    assert effective_priority(aged) >= 90 and tier(aged) == 90
    assert shares([high, aged], {"p": 4}) == {"high": {"p": 2}, "low": {"p": 2}}


def test_workers_of_another_pool_are_never_granted():
    jobs = [JobDemand("a", 50, 0, want={"gpu": 2}, work={"gpu": 2})]
    assert decide(jobs, _free(3, pool="cpu")).grants == {}


# -- properties ------------------------------------------------------------------------------

_job = st.builds(
    lambda i, prio, want, work, cap, starved: JobDemand(
        f"j{i}", prio, i, want={"p": want}, work={"p": want + work}, cap=cap,
        starved_s=starved),
    st.integers(0, 5), st.integers(0, 100), st.integers(0, 8), st.integers(0, 4),
    st.one_of(st.none(), st.integers(1, 6)), st.sampled_from([0.0, 30.0, 600.0]))


@st.composite
def _farms(draw):
    jobs = list({j.job: j for j in draw(st.lists(_job, max_size=5))}.values())
    names = [None] + [j.job for j in jobs]
    workers = [FarmWorker(i, "p", draw(st.sampled_from([None, "m1", "m2"])),
                          draw(st.sampled_from(names)), draw(st.booleans()))
               for i in range(draw(st.integers(0, 10)))]
    return jobs, workers


@settings(max_examples=300, deadline=None)
@given(_farms())
def test_decisions_respect_priority_fairness_and_leases(farm):
    jobs, workers = farm
    d = decide(jobs, workers)
    by_id = {w.id: w for w in workers}
    free = {w.id for w in workers if w.lessee is None}
    assert set(d.grants) <= free  # only free workers are granted, each once
    assert all(by_id[w].lessee is not None for w in d.revoke)  # only leased ones revoked
    share = d.shares
    size = len(workers)
    assert sum(s.get("p", 0) for s in share.values()) <= size
    for j in jobs:
        want = min(j.want.get("p", 0), j.cap if j.cap is not None else 1 << 30)
        assert share[j.job].get("p", 0) <= want
        held = sum(1 for w in workers if w.lessee == j.job)
        if held <= share[j.job].get("p", 0):  # at or below its share: it loses nothing
            assert not any(by_id[w].lessee == j.job for w in d.revoke)
        granted = sum(1 for job in d.grants.values() if job == j.job)
        if granted:  # never granted more than it can use
            assert granted + held <= max(want, min(j.work.get("p", 0), j.cap or 1 << 30))
    for a in jobs:
        for b in jobs:
            sa, sb = share[a.job].get("p", 0), share[b.job].get("p", 0)
            wa = min(a.want.get("p", 0), a.cap if a.cap is not None else 1 << 30)
            if tier(a) > tier(b) and sb > 0:
                assert sa == wa  # a lower tier gets workers only once a higher one has all
            if tier(a) == tier(b) and sa < wa:
                assert sb <= sa + 1  # max-min fair within a tier
