"""Reusing stored masters: a branch whose clips are unchanged is not assembled again.

A master's key is made of its clips' digests, the profile and the ffmpeg build that joins them
(:func:`~orchestrator.plan.keys.master_key`). A stored master is reused only when its frames
are the plan's and its bytes verify (re-hashed once per run, unless the output already holds
exactly those bytes); a corrupt one is reported and assembled again. Records copied from run
records (:mod:`orchestrator.store.lookup` trusts them to save requests) never decide a master
on their own: before a branch is assembled, or when a stored master's frames disagree with the
plan, the branch's copies are confirmed against the store's records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..plan.keys import master_key
from .assembly import stored_master
from .state import CACHED, DONE, PENDING, BranchRun, RunState, TaskRun

if TYPE_CHECKING:
    from ..plan.models import RenderPlan
    from ..spec.manifest import Profile
    from ..store import BlobRef, Store


class Masters:
    def __init__(self, plan: RenderPlan, store: Store, state: RunState,
                 found_corrupt: Callable[[str, str], None], note: Callable[[str], None]) -> None:
        self.plan = plan
        self.store = store
        self.state = state
        self.found_corrupt = found_corrupt  # (digest, found by): reported in the run record
        self.note = note
        self.from_copy: set[str] = set()  # task keys whose record is a run record's copy
        self.sound: set[str] = set()  # master digests re-hashed in this run
        # (branch name, digest) -> True when the output already holds exactly that master, so
        # publishing will not read the store's copy and re-hashing it can be skipped
        self.published: Callable[[str, str], bool] | None = None
        # master key -> the branches waiting for the one assembling it (branches of stories
        # joined in a night that share every clip share their master)
        self.assembling: dict[str, list[BranchRun]] = {}

    def profile(self, b: BranchRun) -> Profile:
        """The profile of ``b``'s clips: its tasks' (the plan's, unless the plan joins several
        stories, each with its own profile)."""
        return self.state.runs[b.tasks[0]].task.profile if b.tasks else self.plan.profile

    def key(self, b: BranchRun) -> str:
        return master_key([c.sha256 for c in self.state.clips(b)],
                          self.profile(b).model_dump(), self.plan.encoder)

    def expected_frames(self, b: BranchRun) -> int:
        return sum(self.state.runs[t].task.frames for t in b.tasks)

    def keys_of_cached(self) -> dict[str, str]:
        """The master key of every branch whose clips are all cached (computed from the clip
        digests, no request), by branch name: the first run record names them, so that a
        concurrent ``cache gc`` keeps the masters this run may reuse."""
        out = {}
        for b in self.state.branches:
            if all(self.state.runs[t].status == CACHED for t in b.tasks):
                b.key = self.key(b)
                out[b.name] = b.key
        return out

    def settle(self, b: BranchRun) -> bool | list[TaskRun]:
        """For a branch whose clips all exist: ``True`` when its stored master was reused,
        the tasks to render again when a copy of their record proved wrong and the store has
        no sound one, ``False`` when the master is to be assembled (copies confirmed)."""
        runs = self.state.runs
        if all(runs[t].record is not None for t in b.tasks) and self.reuse(b):
            return True
        if self.confirm_copies(b):  # a copy never decides a master's content unchecked
            lost = [runs[t] for t in b.tasks if runs[t].status not in DONE]
            if lost:
                return lost
            return self.reuse(b)
        return False

    def reuse(self, b: BranchRun) -> bool:
        """Reuse the stored master of ``b``'s clips when its record exists, its frames are the
        plan's and its bytes verify (a corrupt master is reported and assembled again)."""
        b.key, rec = stored_master(self.store, self.state.clips(b), self.profile(b),
                                   self.plan.encoder)
        if rec is None:
            return False
        if rec.frames != self.expected_frames(b):
            # The clips said to be this branch's are not: a copy of a record in a run record
            # disagrees with the store. Confirm the branch's records and look again.
            if self.confirm_copies(b) and all(self.state.runs[t].record is not None
                                              for t in b.tasks):
                return self.reuse(b)
            return False
        ref = rec.outputs["master"]
        if not self._sound(b, ref):
            self.store.delete_action(b.key)
            return False
        self.state.branch_done(b, ref, rec.frames, cached=True)
        return True

    def _sound(self, b: BranchRun, ref: BlobRef) -> bool:
        if ref.sha256 in self.sound or (self.published and self.published(b.name, ref.sha256)):
            return True
        from ..store.cache import rehash

        if rehash(self.store, ref.sha256) is not None:
            self.found_corrupt(ref.sha256, f"master {b.name}")
            self.note(f"corrupt master {ref.sha256[:12]} of {b.name}; assembling it again")
            return False
        self.sound.add(ref.sha256)
        return True

    def claim(self, b: BranchRun) -> bool:
        """For a branch to assemble (``b.key`` set): ``True`` when it is to assemble its
        master, ``False`` when another branch is assembling the same master in this run;
        ``b`` then waits for it (:meth:`assembled`), so a master is assembled once."""
        waiting = self.assembling.get(b.key)
        if waiting is None:
            self.assembling[b.key] = []
            return True
        b.status = "assembling"
        waiting.append(b)
        return False

    def assembled(self, b: BranchRun) -> list[BranchRun]:
        """``b``'s assembly ended: the branches that waited for its master are done with it
        (``cached``: not assembled for them), or, when it failed, waiting again to assemble
        their own. Returns the branches done."""
        waited = self.assembling.pop(b.key, []) if b.key else []
        for w in waited:
            if b.status == "done" and b.master is not None:
                self.state.branch_done(w, b.master, b.frames, cached=True)
            else:
                w.status = "waiting"
        return [w for w in waited if w.status == "done"]

    def confirm_copies(self, b: BranchRun) -> bool:
        """Read the stored records of ``b``'s tasks that came from run-record copies; a copy
        that differs from the store's record is replaced by it (or, when the store has none
        with its blobs, the task renders again). True when some copy was wrong."""
        runs = self.state.runs
        keys = sorted({runs[t].task.key for t in b.tasks} & self.from_copy)
        if not keys:
            return False
        stored = self.store.get_actions(keys)
        self.from_copy -= set(keys)
        wrong = False
        for t in b.tasks:
            run = runs[t]
            if run.task.key not in stored or run.status != CACHED:
                continue
            rec = stored[run.task.key]
            if rec == run.record:
                continue
            wrong = True
            present = rec is not None and all(self.store.has_blobs(rec.outputs.values()).values())
            if present:
                run.record = rec
            else:
                run.record, run.status = None, PENDING
                run.reason = "its run record's copy disagreed with the store"
        if wrong:
            self.note(f"{b.name}: a run record's copy of a record disagreed with the store; "
                      "the store's record is used")
        return wrong
