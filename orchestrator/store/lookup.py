"""Cache lookup: which render keys have a usable action record in a store, in few requests.

Requests: which records exist (``action_sizes``: a listing on S3), the copies of the records
kept in the story's latest run records, a GET for each existing record without a trusted copy,
and one batched existence check of every blob the records name. A copy is trusted only when a
record of the same key and size is in the store and its blobs are present; otherwise the
record itself is read.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError

from .base import ActionRecord, Store

RECORD_SOURCES = 3  # newest run records read for copies of action records

NEW_KEY = "new key"
BLOBS_MISSING = "record's blobs missing"


def lookup(store: Store, story: str | Sequence[str], keys: Sequence[str]
           ) -> dict[str, ActionRecord | str]:
    """For each key: its action record when the record and all its blobs are in the store,
    otherwise why not (:data:`NEW_KEY` or :data:`BLOBS_MISSING`)."""
    return lookup_with_copies(store, story, keys)[0]


def lookup_with_copies(store: Store, story: str | Sequence[str], keys: Sequence[str]
                       ) -> tuple[dict[str, ActionRecord | str], set[str]]:
    """:func:`lookup`, and the keys whose record is a run record's copy (never read from the
    store: a copy must be confirmed before it decides a master's content).

    ``story`` may be several stories (a nightly's combined plan): copies come from each one's
    latest run records, and the keys of all of them share one listing and one blob check."""
    sizes = store.action_sizes(list(keys))
    copies: dict[str, ActionRecord] = {}
    for name in ([story] if isinstance(story, str) else story):
        for key, rec in recorded_copies(store, name, sizes).items():
            copies.setdefault(key, rec)
    records: dict[str, ActionRecord | None] = dict(copies)
    records.update(store.get_actions([k for k in sizes if k not in copies]))
    refs = [o for r in records.values() if r for o in r.outputs.values()]
    present = store.has_blobs(refs) if refs else {}
    # A copy whose blobs are gone may be older than the stored record: read the record.
    stale = [k for k in copies if not all(present.get(o.sha256) for o in
                                          copies[k].outputs.values())]
    if stale:
        records.update(store.get_actions(stale))
        refs = [o for k in stale if records[k] for o in records[k].outputs.values()]
        present.update(store.has_blobs(refs) if refs else {})
    from_copy = {k for k in copies if records.get(k) is copies[k]}
    out: dict[str, ActionRecord | str] = {}
    for key in keys:
        rec = records.get(key)
        if rec is None:
            out[key] = NEW_KEY
        elif not all(present.get(o.sha256) for o in rec.outputs.values()):
            out[key] = BLOBS_MISSING
        else:
            out[key] = rec
    return out, from_copy


def recorded_copies(store: Store, story: str, sizes: dict[str, int]) -> dict[str, ActionRecord]:
    """Copies of action records from the story's latest run records (newest first, up to the
    newest finished run) for the keys in ``sizes`` whose stored record has the copy's exact
    size (a damaged or truncated record in the store is read, not trusted)."""
    out: dict[str, ActionRecord] = {}
    if not sizes:
        return out
    for run_id in reversed(store.list_runs(story)[-RECORD_SOURCES:]):
        doc = store.get_run(story, run_id)
        if not isinstance(doc, dict):
            continue
        kept = doc.get("records")
        for key, data in (kept.items() if isinstance(kept, dict) else ()):
            if key in out or key not in sizes or not isinstance(data, dict):
                continue
            try:
                rec = ActionRecord.model_validate({**data, "key": key})
            except ValidationError:
                continue
            if len(rec.to_json()) == sizes[key]:
                out[key] = rec
        if doc.get("status") != "running":
            break
    return out
