"""The dispatch policy and the task/branch state machine, without Ray."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.run.policy import (
    Held,
    Idle,
    Queued,
    Ready,
    ReadyQueue,
    assign,
    preempts,
    remaining_seconds,
    steals,
)
from orchestrator.run.state import BLOCKED, DONE, FAILED, PENDING, READY, RENDERED, RunState


def _ready(task, model=None, prio=(1, 0.0, 0, 0), pool="p", **kw):
    return Ready(task, pool, model, prio, **kw)


def test_longest_remaining_path_goes_first():
    ready = [_ready("short", prio=(1, -2.0, 0, 0)), _ready("long", prio=(1, -9.0, 0, 1))]
    assert assign(ready, [Idle(1, "p")], now=0, remaining={"short": 2, "long": 9}) == [
        (1, "long")]


def test_preview_first_and_branch_order_break_before_plan_order():
    ready = [_ready("later-branch", prio=(1, -5.0, 1, 0)),
             _ready("first-branch", prio=(1, -5.0, 0, 1)),
             _ready("preview", prio=(0, -1.0, 3, 2))]
    got = assign(ready, [Idle(1, "p"), Idle(2, "p"), Idle(3, "p")], now=0,
                 remaining={"later-branch": 5, "first-branch": 5, "preview": 1})
    assert [t for _, t in got] == ["preview", "first-branch", "later-branch"]


def test_a_warm_model_wins_unless_a_clearly_longer_path_waits():
    rem = {"cold": 20.0, "warm": 15.0}
    ready = [_ready("cold", "m2", (1, -20.0, 0, 0)), _ready("warm", "m1", (1, -15.0, 0, 1))]
    # the gap (5 s) is under the switch cost (10 s): stay on the warm model
    assert assign(ready, [Idle(1, "p", "m1")], now=0, remaining=rem) == [(1, "warm")]
    # a switch that costs 2 s is worth a 5 s longer path
    assert assign(ready, [Idle(1, "p", "m1")], now=0, remaining=rem,
                  switch_cost={"m2": 2.0}) == [(1, "cold")]


def test_back_off_and_the_failed_worker_are_respected():
    ready = [_ready("retry", prio=(1, -9.0, 0, 0), not_before=5.0, avoid=1),
             _ready("other", prio=(1, -1.0, 0, 1))]
    rem = {"retry": 9, "other": 1}
    assert assign(ready, [Idle(1, "p")], now=1.0, remaining=rem) == [(1, "other")]
    # out of back-off: another idle worker takes it, not the one it failed on
    assert assign(ready, [Idle(1, "p"), Idle(2, "p")], now=6.0, remaining=rem) == [
        (1, "other"), (2, "retry")]
    # alone, the worker it failed on may take it
    assert assign(ready[:1], [Idle(1, "p")], now=6.0, remaining=rem) == [(1, "retry")]


def test_a_worker_takes_only_its_own_pool():
    ready = [_ready("gpu-task", pool="gpu")]
    assert assign(ready, [Idle(1, "cpu")], now=0, remaining={"gpu-task": 1}) == []


def test_remaining_seconds_follows_the_longest_path():
    tasks = [SimpleNamespace(id=i) for i in "abcd"]
    deps = {"a": ["b", "c"], "b": ["d"], "c": [], "d": []}
    assert remaining_seconds(tasks, deps, {"a": 1, "b": 2, "c": 10, "d": 3}) == {
        "a": 11, "b": 5, "c": 10, "d": 3}


# -- properties ---------------------------------------------------------------------------

@st.composite
def forests(draw):
    """Tasks in topological order, each conditioned on at most one earlier task."""
    n = draw(st.integers(1, 12))
    ups = [None] + [draw(st.one_of(st.none(), st.integers(0, i - 1))) for i in range(1, n)]
    models = [draw(st.sampled_from(["m1", "m2", None])) for _ in range(n)]
    return ups, models


def _plan(ups):
    tasks = [SimpleNamespace(id=f"t{i}", upstream=None if u is None else f"t{u}", shot=f"s{i}",
                             key=f"k{i}", segment="seg") for i, u in enumerate(ups)]
    deps = {t.id: [] for t in tasks}
    for t in tasks:
        if t.upstream:
            deps[t.upstream].append(t.id)
    return SimpleNamespace(tasks=tasks, dependents=deps, branches=[])


@settings(max_examples=150, deadline=None)
@given(forests(), st.lists(st.sampled_from(["m1", "m2", None]), min_size=1, max_size=4),
       st.randoms(use_true_random=False))
def test_a_dependent_is_never_assigned_before_its_conditioning_task(forest, warm, rnd):
    ups, models = forest
    plan = _plan(ups)
    state = RunState(plan)
    rem = remaining_seconds(plan.tasks, plan.dependents, {t.id: 1.0 for t in plan.tasks})
    model = {t.id: models[i] for i, t in enumerate(plan.tasks)}
    queue = {r.task.id for r in state.initially_ready()}
    workers = {i + 1: m for i, m in enumerate(warm)}
    running: dict[int, str] = {}
    for _ in range(10 * len(plan.tasks) + 10):
        ready = [Ready(t, "p", model[t], (1, -rem[t], 0, int(t[1:]))) for t in sorted(queue)]
        idle = [Idle(w, "p", workers[w]) for w in workers if w not in running]
        for wid, tid in assign(ready, idle, now=0, remaining=rem):
            run = state.runs[tid]
            assert run.status == READY
            up = run.task.upstream
            assert up is None or state.runs[up].status in DONE, (tid, up)
            queue.discard(tid)
            state.started(run, 0.0, "node")
            running[wid] = tid
            workers[wid] = model[tid] or workers[wid]
        if not running:
            break
        wid = rnd.choice(sorted(running))
        tid = running.pop(wid)
        rec = SimpleNamespace(seconds=1.0, load_seconds=0.0, node="node", outputs={})
        queue |= {d.task.id for d in state.rendered(state.runs[tid], rec)}
    assert all(r.status == RENDERED for r in state.runs.values())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["m1", "m2", "m3"]), min_size=1, max_size=8),
       st.sampled_from(["m1", "m2", "m3"]), st.floats(0, 100))
def test_a_worker_with_the_model_warm_is_preferred_when_priorities_tie(models, warm, rem_s):
    ready = [Ready(f"t{i}", "p", m, (1, -rem_s, 0)) for i, m in enumerate(models)]
    rem = {r.task: rem_s for r in ready}
    [(wid, tid)] = assign(ready, [Idle(7, "p", warm)], now=0, remaining=rem)
    chosen = next(r for r in ready if r.task == tid)
    if warm in models:
        assert chosen.model == warm
    else:
        assert chosen == min(ready, key=lambda r: (r.priority, r.task))


# -- pipelined dispatch: taking queued tasks back ------------------------------------------


def _q(task, rem, model=None, **kw):
    return Queued(task, model, (1, -rem, 0, 0), **kw)


def test_an_idle_worker_takes_a_task_queued_elsewhere_that_goes_before_every_ready_one():
    busy = Held(1, "p", running=True, queued=(_q("late", 3.0),))
    rem = {"late": 3.0, "minor": 1.0, "major": 9.0}
    assert steals([], [busy, Held(2, "p")], now=0, remaining=rem) == [(2, 1, "late")]
    # a ready task on a shorter path does not keep it waiting behind the running one
    minor = _ready("minor", prio=(1, -1.0, 0, 0))
    assert steals([minor], [busy, Held(2, "p")], now=0, remaining=rem) == [(2, 1, "late")]
    # one on a longer path goes first: the idle worker takes that one (assign gives it)
    major = _ready("major", prio=(1, -9.0, 0, 0))
    assert steals([major], [busy, Held(2, "p")], now=0, remaining=rem) == []
    # two idle workers: the first takes the ready one, the second the queued one
    assert steals([major], [busy, Held(2, "p"), Held(3, "p")], now=0, remaining=rem) == [
        (3, 1, "late")]
    # not from another pool, not a recall already under way
    assert steals([], [busy, Held(2, "other")], now=0, remaining=rem) == []
    asked = Held(1, "p", running=True, queued=(_q("late", 3.0, recallable=False),))
    assert steals([], [asked, Held(2, "p")], now=0, remaining=rem) == []


def test_an_idle_worker_steals_the_queued_task_of_its_warm_model_unless_a_longer_path_waits():
    a = Held(1, "p", running=True, queued=(_q("m2-task", 9.0, "m2"),))
    b = Held(2, "p", running=True, queued=(_q("m1-task", 5.0, "m1"),))
    rem = {"m2-task": 9.0, "m1-task": 5.0}
    assert steals([], [a, b, Held(3, "p", "m1")], now=0, remaining=rem) == [(3, 2, "m1-task")]
    # a switch that costs 1 s is worth a 4 s longer path
    assert steals([], [a, b, Held(3, "p", "m1")], now=0, remaining=rem,
                  switch_cost={"m2": 1.0}) == [(3, 1, "m2-task")]


def test_a_ready_task_on_a_longer_path_takes_a_queued_place_on_the_worker_freeing_first():
    workers = [Held(1, "p", running=True, queued=(_q("short", 2.0),)),
               Held(2, "p", running=True, queued=(_q("shorter", 1.0),))]
    rem = {"short": 2.0, "shorter": 1.0, "critical": 8.0, "minor": 0.5}
    critical = _ready("critical", prio=(1, -8.0, 0, 0))
    assert preempts([critical], workers, now=0, remaining=rem) == [(2, "shorter")]
    # a shorter path waits its turn; so does one still in back-off
    assert preempts([_ready("minor", prio=(1, -0.5, 0, 0))], workers, now=0,
                    remaining=rem) == []
    backoff = _ready("critical", prio=(1, -8.0, 0, 0), not_before=5.0)
    assert preempts([backoff], workers, now=1.0, remaining=rem) == []
    # of the queued tasks it beats, it takes the place on the worker that frees first
    soon = [Held(1, "p", running=True, queued=(_q("short", 2.0),), free_at=3.0),
            Held(2, "p", running=True, queued=(_q("shorter", 1.0),), free_at=9.0)]
    assert preempts([critical], soon, now=0, remaining=rem) == [(1, "short")]


def test_a_task_of_another_model_takes_a_queued_place_only_for_more_than_the_switch_cost():
    workers = [Held(1, "p", "m1", running=True, queued=(_q("queued", 2.0, "m1"),))]
    rem = {"queued": 2.0, "other-model": 8.0}
    ready = [_ready("other-model", "m2", (1, -8.0, 0, 0))]
    assert preempts(ready, workers, now=0, remaining=rem) == []  # 6 s < the default 10 s
    assert preempts(ready, workers, now=0, remaining=rem, switch_cost={"m2": 1.0}) == [
        (1, "queued")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.lists(st.floats(0, 50), max_size=3)),
                min_size=1, max_size=6),
       st.lists(st.floats(0, 50), max_size=6))
def test_recalls_name_only_queued_tasks_each_once(workers, ready_rems):
    held, rem = [], {}
    for i, (running, queued) in enumerate(workers):
        qs = tuple(_q(f"w{i}q{j}", r) for j, r in enumerate(queued))
        rem.update({q.task: -q.priority[1] for q in qs})
        held.append(Held(i, "p", running=running or bool(qs), queued=qs))
    ready = [_ready(f"r{k}", prio=(1, -r, 0, k)) for k, r in enumerate(ready_rems)]
    rem.update({r.task: -r.priority[1] for r in ready})
    queued_on = {q.task: w.id for w in held for q in w.queued}
    idle = {w.id for w in held if not w.running and not w.queued}
    stolen = steals(ready, held, now=0, remaining=rem)
    assert len({t for _, _, t in stolen}) == len(stolen)
    assert all(queued_on.get(t) == wid and to in idle for to, wid, t in stolen)
    assert len({to for to, _, _ in stolen}) == len(stolen)  # one task for each idle worker
    pre = preempts(ready, held, now=0, remaining=rem)
    assert len({t for _, t in pre}) == len(pre) <= len(ready)
    assert all(queued_on.get(t) == wid for wid, t in pre)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["p", "q"]), st.sampled_from(["m1", "m2", None]),
                          st.integers(0, 20), st.booleans(), st.booleans()),
                min_size=0, max_size=40),
       st.dictionaries(st.sampled_from(["p", "q"]), st.integers(1, 4)),
       st.sets(st.integers(0, 39)), st.integers(0, 3))
def test_the_ready_queue_gives_the_whole_queues_best_tasks_per_pool(items, places, gone,
                                                                      requeued):
    q = ReadyQueue()
    everything = {}
    for i, (pool, model, prio, backoff, avoid) in enumerate(items):
        r = Ready(f"t{i:02d}", pool, model, (1, -prio, 0, i), not_before=5.0 if backoff else 0,
                  avoid=1 if avoid else None)
        q.put(r)
        everything[r.task] = r
    for i in range(min(requeued, len(items))):  # queued again with a new priority
        r = everything[f"t{i:02d}"]
        r = Ready(r.task, r.pool, r.model, (0, 0, 0, i), r.not_before, r.avoid)
        q.put(r)
        everything[r.task] = r
    alive = {t for t in everything if int(t[1:]) not in gone}
    got = q.best(places, 1.0, lambda t: t in alive)
    assert len({r.task for r in got}) == len(got)
    assert all(r == everything[r.task] and r.task in alive for r in got)
    for pool, k in places.items():
        for model in ("m1", "m2", None):
            group = sorted((r for t, r in everything.items() if t in alive
                            and (r.pool, r.model) == (pool, model)), key=lambda r: r.priority)
            free = [r for r in group if r.not_before <= 1.0 and r.avoid is None]
            want = {r.task for r in free[:k]}
            mine = {r.task for r in got if (r.pool, r.model) == (pool, model)}
            assert want <= mine
            # and nothing beyond the k-th free task but tasks that wait or avoid a worker
            if len(free) > k:
                cut = free[k - 1].priority
                assert all(r.priority <= cut or r.not_before > 1.0 or r.avoid is not None
                           for r in got if (r.pool, r.model) == (pool, model))
    # asking again gives the same: nothing was lost from the queue
    assert {r.task for r in q.best(places, 1.0, lambda t: t in alive)} == {r.task for r in got}


# -- the state machine --------------------------------------------------------------------

def test_a_failure_blocks_everything_downstream_and_nothing_else():
    plan = _plan([None, 0, 1, None])
    state = RunState(plan)
    assert [r.task.id for r in state.initially_ready()] == ["t0", "t3"]
    state.started(state.runs["t0"], 0.0, "n")
    assert state.errored(state.runs["t0"], "boom", retries=0, not_before=0, worker=1) is None
    assert {t: r.status for t, r in state.runs.items()} == {
        "t0": FAILED, "t1": BLOCKED, "t2": BLOCKED, "t3": READY}
    assert state.runs["t2"].error == "upstream task t0 failed"


def test_a_retry_is_ready_again_with_its_back_off_until_retries_run_out():
    state = RunState(_plan([None]))
    run = state.initially_ready()[0]
    state.started(run, 0.0, "n")
    assert state.errored(run, "boom", retries=1, not_before=3.0, worker=2) is run
    assert (run.status, run.not_before, run.avoid, run.error) == (READY, 3.0, 2, "boom")
    state.started(run, 0.0, "n")
    assert state.errored(run, "boom", retries=1, not_before=3.0, worker=2) is None
    assert run.status == FAILED


def test_a_lost_worker_requeues_without_spending_a_retry():
    state = RunState(_plan([None]))
    run = state.initially_ready()[0]
    state.started(run, 0.0, "n")
    assert state.lost(run) is run and run.attempts == 0 and run.status == READY
    for _ in range(4):
        state.started(run, 0.0, "n")
        state.lost(run)
    assert run.status == FAILED and "died 5 times" in run.error


def test_a_corrupt_blob_sends_its_task_back_and_its_ready_dependents_to_pending():
    state = RunState(_plan([None, 0]))
    t0 = state.initially_ready()[0]
    state.started(t0, 0.0, "n")
    blob = SimpleNamespace(sha256="ab" * 32)
    rec = SimpleNamespace(seconds=1.0, load_seconds=0.0, node="n", outputs={"clip": blob})
    assert [r.task.id for r in state.rendered(t0, rec)] == ["t1"]
    invalid, ready = state.corrupt("ab" * 32)
    assert invalid == [t0] and ready == [t0]
    assert (t0.status, t0.record, state.runs["t1"].status) == (READY, None, PENDING)


def test_stall_blocks_what_can_no_longer_run():
    state = RunState(_plan([None, 0]))
    state.stall()
    assert {r.status for r in state.runs.values()} == {BLOCKED}
    assert state.finished()


def test_a_lookup_caches_found_records_unless_forced_and_says_why_the_rest_render():
    state = RunState(_plan([None, 0, None]))
    rec = SimpleNamespace(node="n1", outputs={})
    state.looked_up({"k0": rec, "k1": "new key", "k2": rec}, force={"s2"})
    assert [(r.status, r.reason) for r in state.runs.values()] == [
        ("cached", "cached"), (PENDING, "new key"), (PENDING, "forced")]
    assert state.runs["t0"].record is rec and state.needs_cluster()
