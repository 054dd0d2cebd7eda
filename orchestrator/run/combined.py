"""Several stories rendered as one job: one plan, one pool of warm renderers, shared shots once.

:func:`combine` joins story plans into one :class:`~orchestrator.plan.models.RenderPlan`. Task
ids and branch names are qualified by their story (``story/task``, ``story/branch``: neither a
story name nor an id can hold ``/``), and tasks with the same render key are one task: the
first story (in the order given) that has the key runs it, and every other task with that key,
in any story, takes its record. Since a key names its upstream's key, the tasks a shared task
is conditioned on are shared too, so the joined plan is still a DAG.

:class:`CombinedRender` runs that plan with one :class:`~orchestrator.run.driver.Scheduler`:
one cache lookup for every key (copies of records from each story's latest run records, one
listing for all), one pool of warm actors, and masters assembled, each with its own story's
profile, as soon as their clips exist. The results are then split per story
(:class:`StoryView`), and each story is finished exactly as
:func:`~orchestrator.run.render.render_story` finishes one: its masters published to its own
output, its ``branches.json``, ``report.json`` and run record. In a story's report, a task whose
key another story's task rendered in this run is ``cached``, with that task as its reason.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from ..plan.models import Branch, RenderPlan
from ..store import Store, StoreError
from ..store.lookup import lookup_with_copies
from ..store.output_api import Output
from .driver import Interrupted, Scheduler, SchedulerOptions, Unplaceable
from .events import Listeners
from .live_record import MIN_INTERVAL_S, LiveRecord
from .metrics import RunMetrics
from .pool import one_line
from .progress import Progress
from .render import (
    EXIT_FAILED,
    RenderResult,
    _finish,
    _interrupt_code,
    _quietly,
    _report,
    _Signals,
    _stored,
    connect_ray,
    run_identity,
)
from .state import (
    BLOCKED,
    CACHED,
    FAILED,
    PENDING,
    READY,
    RENDERED,
    RUNNING,
    TERMINAL,
    BranchRun,
    TaskRun,
)
from .why import explain

SEP = "/"


def qualified(story: str, name: str) -> str:
    """A task id or branch name of ``story`` in a combined plan."""
    return f"{story}{SEP}{name}"


@dataclass(frozen=True)
class Combined:
    plan: RenderPlan  # the joined DAG
    stories: dict[str, RenderPlan]  # each story's own plan, by name, in the order given
    ids: dict[str, dict[str, str]]  # story -> its task id -> the joined task that runs its key


def combine(plans: Sequence[RenderPlan]) -> Combined:
    """One plan of every task and branch of ``plans`` (stories with distinct names), each key
    once (see the module docstring)."""
    by_key: dict[str, str] = {}
    tasks = []
    branches = []
    ids: dict[str, dict[str, str]] = {}
    for plan in plans:
        mine: dict[str, str] = {}
        for t in plan.tasks:  # upstream first, so an upstream is always mapped already
            joined = by_key.get(t.key)
            if joined is None:
                joined = by_key[t.key] = qualified(plan.story, t.id)
                up = mine[t.upstream] if t.upstream is not None else None
                tasks.append(t.model_copy(update={"id": joined, "upstream": up}))
            mine[t.id] = joined
        ids[plan.story] = mine
        branches += [Branch(name=qualified(plan.story, b.name),
                            segments=[qualified(plan.story, s) for s in b.segments],
                            choices=b.choices, shots=b.shots, tasks=[mine[t] for t in b.tasks])
                     for b in plan.branches]
    first = plans[0]
    joined_plan = RenderPlan(
        story=f"{len(plans)} stories" if len(plans) != 1 else first.story,
        title=", ".join(p.story for p in plans), profile=first.profile, salt=first.salt,
        branches=branches, tasks=tasks, naive_tasks=sum(p.naive_tasks for p in plans),
        encoder=first.encoder)
    return Combined(joined_plan, {p.story: p for p in plans}, ids)


class StoryView:
    """One story's share of a combined run, with the names its own plan uses: what
    :mod:`orchestrator.run.render` reads to report and publish a run (``plan``, ``runs``,
    ``branches``, ``corrupt``, ``progress``, ``waiting_for``, ``counts()``, ``records()``,
    ``model_switches()``)."""

    def __init__(self, combined: Combined, sched: Scheduler, story: str) -> None:
        self.plan = plan = combined.stories[story]
        self._ids = ids = combined.ids[story]
        self._sched = sched
        self.progress = sched.progress
        self.runs: dict[str, TaskRun] = {
            t.id: _story_run(t, sched.runs[ids[t.id]], ids[t.id] == qualified(story, t.id))
            for t in plan.tasks}
        joined = {b.name: b for b in sched.branches}
        self.branches: list[BranchRun] = [
            replace(joined[qualified(story, b.name)], name=b.name, tasks=list(b.tasks))
            for b in plan.branches]
        mine = qualified(story, "")
        self.corrupt: list[dict[str, str]] = []
        for c in sched.corrupt:  # found by "story/task", "master story/branch" ...
            words = c["found_by"].split(" ")
            if any(w.startswith(mine) for w in words):
                found_by = " ".join(w.removeprefix(mine) for w in words)
                self.corrupt.append({**c, "found_by": found_by})

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys((PENDING, READY, RUNNING, CACHED, RENDERED, FAILED, BLOCKED), 0)
        for r in self.runs.values():
            out[r.status] += 1
        return out

    def records(self) -> dict[str, dict[str, Any]]:
        return {r.record.key: r.record.model_dump(mode="json", exclude={"key"})
                for r in self.runs.values() if r.record is not None}

    def model_switches(self) -> int:
        return self._sched.model_switches()  # the shared pool's

    @property
    def workers(self) -> Any:
        return self._sched.workers  # the shared pool's

    @property
    def waiting_for(self) -> str | None:
        """What the joined run waits for from the autoscaler (the shared pool's)."""
        return self._sched.waiting_for

    @property
    def remaining(self) -> dict[str, float]:
        """Estimated seconds from each task's start to the end of its chain, in the joined
        plan (for the ETA)."""
        rem, ids = self._sched.remaining, self._ids
        return {tid: rem.get(ids[tid], 0.0) for tid in self.runs}

    def needs_cluster(self) -> bool:
        return any(r.status != CACHED for r in self.runs.values()) or any(
            b.status != "done" for b in self.branches)


def _story_run(task, joined: TaskRun, own: bool) -> TaskRun:
    """A story's task as the joined run left it; a task whose key another task rendered is
    ``cached`` here, its reason naming that task."""
    run = replace(joined, task=task)
    if not own and joined.status == RENDERED:
        run.status, run.reason = CACHED, f"rendered in this run as {joined.task.id}"
        run.seconds = run.load_seconds = 0.0
        run.attempts = run.lost = 0
    elif not own and joined.status not in TERMINAL:
        run.attempts = run.lost = 0
    return run


class _LiveRecords:
    """The live run record of each story being rendered: one listener of the joined run that
    hands each :class:`LiveRecord` only its own story's task and branch events (and every
    tick, for its heartbeat)."""

    def __init__(self) -> None:
        self.records: dict[str, LiveRecord] = {}

    def _of(self, name: str) -> LiveRecord | None:
        return self.records.get(name.split(SEP, 1)[0])

    def start(self, run: Any) -> None:
        for r in self.records.values():
            r.start(run)

    def task_started(self, run: Any, task: TaskRun, worker: Any) -> None:
        if (r := self._of(task.task.id)) is not None:
            r.task_started(run, task, worker)

    def task_finished(self, run: Any, task: TaskRun) -> None:
        if (r := self._of(task.task.id)) is not None:
            r.task_finished(run, task)

    def branch_finished(self, run: Any, branch: BranchRun) -> None:
        if (r := self._of(branch.name)) is not None:
            r.branch_finished(run, branch)

    def note(self, text: str) -> None:
        pass

    def tick(self, run: Any) -> None:
        for r in self.records.values():
            r.tick(run)

    def finish(self, run: Any) -> None:
        self.close()

    def stop(self) -> None:
        self.close()

    def close(self) -> None:
        for r in self.records.values():
            r.close()


class CombinedRender:
    """Render several stories (each with its own :class:`Output`) as one job."""

    def __init__(self, plans: Sequence[RenderPlan], store: Store, outs: dict[str, Output], *,
                 s3_endpoint: str | None = None, options: SchedulerOptions | None = None,
                 progress: Progress | None = None, seeds: dict[str, int] | None = None,
                 graphs: dict[str, dict[str, Any]] | None = None, priority: int = 50,
                 live_interval: float = MIN_INTERVAL_S) -> None:
        """``seeds`` (each story's base seed) let the reasons of new keys name what changed;
        ``graphs`` (each story's segment graph) go into its run records, as ``render``'s do."""
        self.combined = combine(plans)
        self.store = store
        self.outs = outs
        self.seeds = seeds or {}
        self.graphs = graphs or {}
        self.progress = progress or Progress("quiet")
        self.priority = priority
        self.live_interval = live_interval
        self.live = _LiveRecords()
        # the night's metrics are the farm job's, under the joined plan's name
        metrics = RunMetrics(self.combined.plan.story, priority=priority)
        self.sched = Scheduler(self.combined.plan, store, store_url=store.url,
                               s3_endpoint=s3_endpoint, options=options,
                               progress=Listeners(self.progress, self.live, metrics))
        self.sched.assembly.profiles = {qualified(p.story, b.name): p.profile
                                        for p in plans for b in p.branches}
        self.sched.masters.published = self._published

    @property
    def stories(self) -> list[str]:
        return list(self.combined.stories)

    def _published(self, name: str, sha256: str) -> bool:
        story, branch = name.split(SEP, 1)
        return self.outs[story].holds(f"masters/{branch}.mp4", sha256)

    def lookup(self) -> None:
        """Which tasks are cached (every key of every story in one lookup) and which masters
        are stored already."""
        found, from_copy = lookup_with_copies(self.store, self.stories,
                                              [t.key for t in self.combined.plan.tasks])
        self.sched.state.looked_up(found)
        self.sched.masters.from_copy = from_copy
        self.sched.master_keys()
        self.sched.lookup_masters()

    def view(self, story: str) -> StoryView:
        return StoryView(self.combined, self.sched, story)

    def render(self, stories: Sequence[str], run_ids: dict[str, str], *,
               address: str | None = None) -> dict[str, RenderResult]:
        """Render what ``stories`` need (after :meth:`lookup`) and finish each of them: run
        record (written first, then finalised whatever ends the run), masters,
        ``branches.json`` and ``report.json``. Stories not named here are left alone.

        A story that no node of the cluster can run fails on its own, as do shots that keep
        failing (and the tasks after them). Any other error of the run as a whole finalises
        every story's record as ``error`` and is raised."""
        sched, store, progress = self.sched, self.store, self.progress
        started = datetime.now(timezone.utc)
        t0 = time.monotonic()
        errors: dict[str, list[str]] = {s: [] for s in stories}
        results: dict[str, RenderResult] = {}
        who = run_identity(self.priority)

        def report(story: str, status: str) -> dict[str, Any]:
            return _report(self.view(story), run_ids[story], started, t0, status,  # type: ignore[arg-type]
                           store, who)

        for s in stories:
            self.live.records[s] = self._live_record(s, run_ids[s], report)

        with _Signals() as sig:
            status = "running"
            try:
                for s in stories:
                    self._explain(s)
                for s in stories:
                    store.put_run(s, run_ids[s], _stored(self.view(s), report(s, status),
                                                         self.graphs.get(s)))
                try:
                    if sched.needs_cluster():
                        connect_ray(address)
                        sig.install()
                        self._fail_unplaceable(stories, errors)
                        sched.run()
                    else:
                        progress.note("every clip and master is cached; nothing to do")
                    status = "succeeded"
                except (KeyboardInterrupt, Interrupted):
                    status = "interrupted"
                    sig.defer()
                    progress.stop()
                    progress.note("interrupted; stopping the running tasks (finished clips "
                                  "stay cached)")
                    _quietly(sched.shutdown)
                except StoreError as err:
                    status = "failed"
                    for s in stories:
                        errors[s].append(f"the store failed: {one_line(err)}")
                    _quietly(sched.shutdown)
                sig.defer()
                progress.stop()
                self.live.close()  # no live write after this: the final records come next
                for s in stories:
                    results[s] = self._finish(s, run_ids[s], started, t0, status, errors[s],
                                              who)
            except BaseException as err:
                sig.defer()
                progress.stop()
                self.live.close()
                _quietly(sched.shutdown)
                stopped = isinstance(err, KeyboardInterrupt)
                for s in stories:
                    if s in results:
                        continue
                    doc = report(s, "interrupted" if stopped else "error")
                    doc["errors"] = errors[s] + ([] if stopped else [one_line(err)])
                    with contextlib.suppress(Exception):
                        store.put_run(s, run_ids[s], _stored(self.view(s), doc,
                                                             self.graphs.get(s)))
                    results[s] = RenderResult(
                        _interrupt_code(sig.signum or signal.SIGINT) if stopped
                        else EXIT_FAILED, doc, [], self.outs[s].url)
                if not stopped:
                    raise
        if any(r.report["status"] == "interrupted" for r in results.values()):
            code = _interrupt_code(sig.signum or signal.SIGINT)
            for r in results.values():
                if r.report["status"] == "interrupted":
                    r.exit_code = code
        return results

    def _fail_unplaceable(self, stories: Sequence[str], errors: dict[str, list[str]]) -> None:
        """A story with shots no node can run fails here, as ``render`` refuses it: its tasks
        fail, except those it shares with stories that can run (which render for them)."""
        runs, ids = self.sched.runs, self.combined.ids
        bad: dict[str, str] = {}
        for s in stories:
            todo = sorted(j for j in set(ids[s].values()) if runs[j].status not in TERMINAL)
            try:
                self.sched.pool.check_placeable(runs[j].task for j in todo)
            except Unplaceable as err:
                bad[s] = "; ".join(ln.strip() for ln in str(err).splitlines() if ln.strip())
        needed = {j for s in stories if s not in bad for j in ids[s].values()}
        for s, why in bad.items():
            errors[s].append(why)
            for j in sorted(set(ids[s].values()) - needed):
                if runs[j].status not in TERMINAL:
                    self.sched.state.fail(runs[j], why)

    def _explain(self, story: str) -> None:
        """Why each of the story's tasks renders (as ``render`` says it), and its key document
        attached to the joined task that renders it, so that its action record keeps it."""
        view = self.view(story)
        explain(view.plan, view.runs, self.store, story_seed=self.seeds.get(story))
        ids, runs = self.combined.ids[story], self.sched.runs
        for tid, mine in view.runs.items():
            joined = runs[ids[tid]]
            if ids[tid] != qualified(story, tid) or joined.status == CACHED:
                continue  # another story's task, or nothing to render
            joined.reason = mine.reason
            if mine.task.inputs is not None:
                joined.task = joined.task.model_copy(update={"inputs": mine.task.inputs})

    def _live_record(self, story: str, run_id: str, report: Any) -> LiveRecord:
        """``story``'s run record, kept current while the night renders (as ``render``'s)."""
        graph = self.graphs.get(story)
        store = self.store

        def snapshot() -> dict[str, Any]:  # on the driver's thread: plain values only
            view = self.view(story)
            return {**report(story, "running"),
                    "records": [r.record for r in view.runs.values() if r.record is not None],
                    "graph": graph}

        def write(doc: dict[str, Any]) -> None:  # on the live record's thread
            doc["records"] = {r.key: r.model_dump(mode="json", exclude={"key"})
                              for r in doc["records"]}
            store.put_run(story, run_id, doc)

        return LiveRecord(snapshot, write, min_interval=self.live_interval)

    def _finish(self, story: str, run_id: str, started: datetime, t0: float, status: str,
                errors: list[str], who: dict[str, Any]) -> RenderResult:
        view = self.view(story)
        graph = self.graphs.get(story)
        try:
            return _finish(view, self.store, self.outs[story], run_id,  # type: ignore[arg-type]
                           started, t0, status, errors, who, graph)
        except Exception as err:  # noqa: BLE001 - one story's outputs never stop the others
            doc = _report(view, run_id, started, t0, "error", self.store,  # type: ignore[arg-type]
                          who)
            doc["errors"] = [*errors, one_line(err)]
            with contextlib.suppress(Exception):
                self.store.put_run(story, run_id, _stored(view, doc, graph))  # type: ignore[arg-type]
            return RenderResult(EXIT_FAILED, doc, [], self.outs[story].url)


__all__ = ["SEP", "Combined", "CombinedRender", "StoryView", "combine", "qualified"]
