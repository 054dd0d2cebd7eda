"""Why each task renders, after the cache lookup: the reasons ``plan`` and run records give.

The lookup says a key has no usable record (``new key``); this module says why, by finding the
shot's previous render and comparing key documents (:mod:`orchestrator.plan.why`):

* the previous render is the newest done entry (``cached`` or ``rendered``) for the same task
  id, else for the same shot, in the story's latest run records (task entries carry ``shot``
  and ``key``);
* the same key as before, but no record: :data:`~orchestrator.plan.why.RECORD_MISSING`;
* no previous render: :data:`~orchestrator.plan.why.NEVER_RENDERED`;
* another key: the differences between the document the key is made from now and the one the
  previous record kept (``inputs``, from the run record's copy of the record or from the store;
  trusted only when it hashes to that key), e.g. ``prompt: "red coat" → "green coat"``.

Every task that renders gets its key document attached (``RenderTask.inputs``), so that the
action record its renderer writes keeps it for the next comparison. A cached task downstream of
a forced one says so, since forcing a shot does not change the keys after it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from ..plan import why
from ..plan.expand import key_inputs, profile_key
from ..plan.keys import derive_seed, digest
from ..store.base import ActionRecord, Store, StoreError
from ..store.lookup import NEW_KEY
from .state import CACHED

if TYPE_CHECKING:
    from ..plan.models import RenderPlan, RenderTask
    from .state import TaskRun

#: Newest run records searched for a shot's previous render.
PREVIOUS_RUNS = 5
DONE = ("cached", "rendered")


def explain(plan: RenderPlan, runs: Mapping[str, TaskRun], store: Store | None, *,
            story_seed: int | None = None, force: Collection[str] = frozenset()) -> None:
    """Give every task that renders its reason and its key document (see the module's text);
    ``runs`` are the tasks' states after the lookup, changed in place."""
    todo = [t for t in plan.tasks if runs[t.id].status != CACHED]
    _note_forced_upstream(plan, runs, force)
    if not todo:
        return
    prof_key = profile_key(plan.profile, plan.encoder)
    docs = {t.id: key_inputs(t, plan.salt, prof_key) for t in todo}
    for t in todo:
        runs[t.id].task = runs[t.id].task.model_copy(update={"inputs": docs[t.id]})
    unexplained = [t for t in todo if runs[t.id].reason == NEW_KEY]
    if not unexplained:
        return
    if store is None:
        for t in unexplained:
            runs[t.id].reason = why.NEVER_RENDERED
        return
    previous = _previous(store, plan.story, {t.id for t in unexplained},
                         {t.shot for t in unexplained})
    old_docs = _old_documents(store, previous, {
        entry["key"] for t in unexplained
        if (entry := previous.entry(t)) is not None and entry["key"] != t.key})
    own: dict[str, list[str]] = {}
    for t in unexplained:  # plan order: an upstream task is explained before its dependents
        entry = previous.entry(t)
        if entry is None:
            runs[t.id].reason = why.NEVER_RENDERED
            continue
        if entry["key"] == t.key:
            runs[t.id].reason = why.RECORD_MISSING
            continue
        old = old_docs.get(entry["key"])
        if old is None:
            runs[t.id].reason = why.KEY_CHANGED
            continue
        up = plan.by_id[t.upstream] if t.upstream else None
        runs[t.id].reason, own[t.id] = why.reason(
            docs[t.id], old, upstream_shot=up.shot if up else None,
            upstream_changes=own.get(up.id) if up else None,
            seed_follows_prompt=_seed_follows_prompt(t, old, story_seed))


def _seed_follows_prompt(task: RenderTask, old: Mapping[str, Any], story_seed: int | None
                         ) -> bool:
    """Both seeds are the ones derived from their prompts (the shot sets no seed)."""
    if story_seed is None:
        return False
    old_prompt = (old.get("prompt") or {}).get("text")
    return (task.seed == derive_seed(story_seed, task.prompt) and isinstance(old_prompt, str)
            and old.get("seed") == derive_seed(story_seed, old_prompt))


def _note_forced_upstream(plan: RenderPlan, runs: Mapping[str, TaskRun],
                          force: Collection[str]) -> None:
    """A cached task conditioned (at any distance) on a forced one: its key did not change,
    so it stays cached, and its reason says so."""
    if not force:
        return
    forced_by: dict[str, str] = {}
    for t in plan.tasks:
        if t.shot in force or t.id in force:
            forced_by[t.id] = t.shot
        elif t.upstream in forced_by:
            forced_by[t.id] = forced_by[t.upstream]
            if runs[t.id].status == CACHED:
                runs[t.id].reason = (f"cached: upstream {forced_by[t.id]} forced, "
                                     "its own key unchanged")


class _Previous:
    """Done task entries of the newest run records, by task id and by shot, and the copies of
    action records those runs kept."""

    def __init__(self) -> None:
        self.by_id: dict[str, dict[str, Any]] = {}
        self.by_shot: dict[str, dict[str, Any]] = {}
        self.records: dict[str, Any] = {}

    def entry(self, task: RenderTask) -> dict[str, Any] | None:
        return self.by_id.get(task.id) or self.by_shot.get(task.shot)


def _previous(store: Store, story: str, ids: set[str], shots: set[str]) -> _Previous:
    out = _Previous()
    try:
        run_ids = store.list_runs(story)[-PREVIOUS_RUNS:]
    except (StoreError, ValueError):
        return out
    for run_id in reversed(run_ids):
        if ids <= set(out.by_id):
            break
        try:
            doc = store.get_run(story, run_id)
        except StoreError:
            continue
        if not isinstance(doc, dict):
            continue
        tasks = doc.get("tasks")
        for entry in tasks if isinstance(tasks, list) else ():
            if not (isinstance(entry, dict) and entry.get("status") in DONE
                    and isinstance(entry.get("key"), str)):
                continue
            tid, shot = entry.get("id"), entry.get("shot")
            if tid in ids and tid not in out.by_id:
                out.by_id[tid] = entry
            if shot in shots and shot not in out.by_shot:
                out.by_shot[shot] = entry
        kept = doc.get("records")
        for key, data in (kept.items() if isinstance(kept, dict) else ()):
            out.records.setdefault(key, data)
    return out


def _trusted(key: str, inputs: Any) -> dict[str, Any] | None:
    """A kept key document, if it is the one ``key`` is the hash of."""
    if not isinstance(inputs, dict):
        return None
    try:
        return inputs if digest(inputs) == key else None
    except (TypeError, ValueError):
        return None


def _old_documents(store: Store, previous: _Previous, keys: set[str]) -> dict[str, dict]:
    """The key documents of previous renders: from the run records' copies, else the store."""
    out: dict[str, dict] = {}
    for key in keys:
        data = previous.records.get(key)
        doc = _trusted(key, data.get("inputs")) if isinstance(data, dict) else None
        if doc is not None:
            out[key] = doc
    rest = sorted(keys - set(out))
    if rest:
        try:
            found = store.get_actions(rest)
        except (StoreError, ValueError):
            found = {}
        for key, rec in found.items():
            if isinstance(rec, ActionRecord) and (doc := _trusted(key, rec.inputs)):
                out[key] = doc
    return out
