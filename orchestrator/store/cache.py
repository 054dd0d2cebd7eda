"""Cache maintenance: what a store holds, whether its bytes are sound, and what can go.

Three operations on any :class:`~orchestrator.store.Store` (local or S3), used by
``reelfarm cache`` (:mod:`orchestrator.cli_cache`):

* :func:`stats`: objects and bytes by kind (clips, last frames, masters, unreferenced blobs,
  action records, run records) and, per story, what its run records reach.
* :func:`verify`: re-hash every blob, check that every action record points at blobs that are
  present; ``repair`` deletes corrupt blobs and the records that point at them (and records that
  are damaged or point at missing blobs), so the next render renders those tasks again.
* :func:`plan_gc` / :func:`apply_gc`: delete what the recent runs of each story cannot reach.

What a run *reaches*: the action records of its tasks and of its branch masters (their keys are
in the run record), every blob those records name (clip, last frame, poster, log, master), and
the clip, log and master digests the run record names itself (a failed task's log is named only
there).

What gc keeps, for each story:

* runs, newest first, until ``keep_runs`` *finished* runs (status ``succeeded`` or ``failed``)
  are kept; newer runs that did not finish (interrupted, error, running) are kept on the way,
  so a crashed render never pushes out the last good one;
* every run that is ``running`` and started less than ``grace`` ago (a render in progress);
* every object (blob, record, run record) written less than ``grace`` ago: a render that is
  writing now has not named its objects in a run record yet.

Deletion order is records, then blobs, then run records: a reader that races gc sees a missing
record (a cache miss), never a record whose blob is gone. Before deleting, gc lists the runs
again and keeps what any run that appeared meanwhile reaches.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from . import ActionRecord, BlobMissing, CorruptBlob, LocalStore, Store, sha256_file
from .base import SHA256_RE, blob_path

T = TypeVar("T")

#: Run statuses that mean the run finished (its run record names everything it used).
FINISHED = ("succeeded", "failed")
DEFAULT_GRACE_S = 6 * 3600.0
WORKERS = 8


# -- listing with sizes and times ---------------------------------------------------------


@dataclass(frozen=True)
class Obj:
    """One object of the store: its path under the root, size and last-modified time."""

    rel: str
    size: int
    mtime: float  # seconds since the epoch


def list_objects(store: Store, prefix: str) -> list[Obj]:
    """Every object under ``prefix`` (``cas/``, ``ac/``, ``runs/``) with size and time.

    In-flight temporaries of a local store (``.tmp-*``) are not objects; see
    :func:`local_temporaries`.
    """
    from .s3 import S3Store

    if isinstance(store, LocalStore):
        base = store.root / prefix
        if not base.is_dir():
            return []
        out = []
        for p in base.rglob("*"):
            if p.name.startswith(".tmp-"):
                continue
            try:
                st = p.stat()
            except FileNotFoundError:  # deleted while listing
                continue
            if p.is_file():
                out.append(Obj(p.relative_to(store.root).as_posix(), st.st_size, st.st_mtime))
        return sorted(out, key=lambda o: o.rel)
    if isinstance(store, S3Store):
        return [
            Obj(o["Key"][len(store.prefix):], int(o.get("Size", 0)),
                o["LastModified"].timestamp())
            for o in store._list(store.key_for(prefix))
            if not o["Key"].endswith("/")
        ]
    # Another implementation: no times known, so everything counts as new (gc keeps it).
    now = time.time()
    if prefix.startswith("cas"):
        return [Obj(blob_path(b.sha256), b.size, now) for b in store.iter_blobs()]
    if prefix.startswith("ac"):
        return [Obj(f"ac/{k}.json", 0, now) for k in store.iter_action_keys()]
    return [Obj(p, 0, now) for p in store.list_docs(prefix)]


def local_temporaries(store: Store) -> list[Obj]:
    """Temporaries left by writers that died mid-write (local stores only)."""
    if not isinstance(store, LocalStore):
        return []
    out = []
    for p in store.root.rglob(".tmp-*"):
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        out.append(Obj(p.relative_to(store.root).as_posix(), st.st_size, st.st_mtime))
    return out


def _blob_digest(rel: str) -> str | None:
    parts = rel.split("/")
    if len(parts) == 4 and parts[:2] == ["cas", "sha256"] and SHA256_RE.match(parts[3]) and (
            parts[2] == parts[3][:2]):
        return parts[3]
    return None


def _record_key(rel: str) -> str | None:
    name = rel.removeprefix("ac/")
    if "/" not in name and name.endswith(".json") and SHA256_RE.match(name[:-5]):
        return name[:-5]
    return None


def _pmap(fn: Callable[[Any], T], items: Iterable[Any], workers: int = WORKERS) -> list[T]:
    items = list(items)
    if len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reelfarm-cache") as pool:
        return list(pool.map(fn, items))


# -- a snapshot of the store ----------------------------------------------------------------


@dataclass
class Run:
    story: str
    run_id: str
    rel: str
    doc: dict[str, Any] | None  # None: unreadable
    mtime: float
    size: int = 0

    @property
    def status(self) -> str:
        return str((self.doc or {}).get("status", "unreadable"))

    @property
    def started(self) -> float:
        """Start time from the run id (``YYYYmmddTHHMMSSZ-…``), else the record's time."""
        try:
            t = datetime.strptime(self.run_id[:16], "%Y%m%dT%H%M%SZ")
            return t.replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            return self.mtime

    def refs(self) -> tuple[set[str], set[str]]:
        """(action keys, blob digests) the run record names."""
        keys: set[str] = set()
        digests: set[str] = set()
        doc = self.doc or {}
        for t in doc.get("tasks") or []:
            if isinstance(t, dict):
                _add(keys, t.get("key"))
                _add(digests, t.get("clip"))
                _add(digests, t.get("log"))
        for b in doc.get("branches") or []:
            if isinstance(b, dict):
                _add(keys, b.get("key"))
                _add(digests, b.get("master"))
        return keys, digests


    def roles(self) -> dict[str, str]:
        """Blob digests the run record names -> clip, log or master."""
        doc = self.doc or {}
        out = {t["log"]: "log" for t in doc.get("tasks") or []
               if isinstance(t, dict) and isinstance(t.get("log"), str)}
        out.update({t["clip"]: "clip" for t in doc.get("tasks") or []
                    if isinstance(t, dict) and isinstance(t.get("clip"), str)})
        out.update({b["master"]: "master" for b in doc.get("branches") or []
                    if isinstance(b, dict) and isinstance(b.get("master"), str)})
        return out


def _add(into: set[str], value: Any) -> None:
    if isinstance(value, str) and SHA256_RE.match(value):
        into.add(value)


@dataclass
class Snapshot:
    blobs: dict[str, Obj]
    records: dict[str, Obj]
    record_docs: dict[str, ActionRecord | None]  # None: damaged (or gone since listing)
    runs: list[Run]
    other_docs: list[Obj] = field(default_factory=list)

    def roles(self) -> dict[str, str]:
        """Each blob digest a record names -> its role: clip, last_frame, master, ..."""
        out: dict[str, str] = {}
        for rec in self.record_docs.values():
            if rec is None:
                continue
            for name, ref in rec.outputs.items():
                out.setdefault(ref.sha256, name)
        return out

    def reach(self, runs: Iterable[Run]) -> tuple[set[str], set[str]]:
        """(record keys, blob digests) reached from ``runs``."""
        keys: set[str] = set()
        digests: set[str] = set()
        for run in runs:
            k, d = run.refs()
            keys |= k
            digests |= d
        for k in keys:
            rec = self.record_docs.get(k)
            if rec is not None:
                digests |= {o.sha256 for o in rec.outputs.values()}
        return keys, digests

    def stories(self) -> dict[str, list[Run]]:
        out: dict[str, list[Run]] = defaultdict(list)
        for r in self.runs:
            out[r.story].append(r)
        return {s: sorted(rs, key=lambda r: r.run_id) for s, rs in sorted(out.items())}


def read_runs(store: Store, objs: list[Obj] | None = None) -> list[Run]:
    objs = list_objects(store, "runs/") if objs is None else objs
    found = []
    for o in objs:
        parts = o.rel.split("/")
        if len(parts) == 3 and parts[2].endswith(".json"):
            found.append((o, parts[1], parts[2][:-5]))

    def read(item: tuple[Obj, str, str]) -> Run:
        o, story, run_id = item
        raw = store.get_doc(o.rel)
        try:
            doc = json.loads(raw) if raw is not None else None
        except ValueError:
            doc = None
        return Run(story, run_id, o.rel, doc if isinstance(doc, dict) else None, o.mtime, o.size)

    return _pmap(read, found)


def snapshot(store: Store) -> Snapshot:
    blobs = {d: o for o in list_objects(store, "cas/") if (d := _blob_digest(o.rel))}
    records = {k: o for o in list_objects(store, "ac/") if (k := _record_key(o.rel))}
    record_docs = store.get_actions(list(records)) if records else {}
    run_objs = list_objects(store, "runs/")
    return Snapshot(blobs, records, record_docs, read_runs(store, run_objs))


# -- stats ----------------------------------------------------------------------------------


def _count(objs: Iterable[Obj]) -> dict[str, int]:
    objs = list(objs)
    return {"objects": len(objs), "bytes": sum(o.size for o in objs)}


def stats(store: Store) -> dict[str, Any]:
    """Objects and bytes in the store, by kind and per story."""
    snap = snapshot(store)
    roles = snap.roles()
    for run in snap.runs:  # blobs only run records name: a failed render's log
        for digest, role in run.roles().items():
            roles.setdefault(digest, role)
    by_role: dict[str, list[Obj]] = defaultdict(list)
    for digest, o in snap.blobs.items():
        by_role[roles.get(digest, "unreferenced")].append(o)
    kinds: dict[str, list[Obj]] = defaultdict(list)
    damaged = 0
    for key, o in snap.records.items():
        rec = snap.record_docs.get(key)
        if rec is None:
            damaged += 1
        kinds[rec.kind if rec else "damaged"].append(o)
    stories = {}
    for story, runs in snap.stories().items():
        _, digests = snap.reach(runs)
        present = [d for d in digests if d in snap.blobs]
        named = {d: role for r in runs for d, role in r.roles().items()}
        last = runs[-1]
        stories[story] = {
            "runs": len(runs),
            "last_run": {"id": last.run_id, "status": last.status},
            **{
                role: _count(snap.blobs[d] for d in present
                             if (roles.get(d) or named.get(d)) == name)
                for role, name in (("clips", "clip"), ("last_frames", "last_frame"),
                                   ("posters", "poster"), ("logs", "log"),
                                   ("masters", "master"))
            },
            "bytes": sum(snap.blobs[d].size for d in present),
        }
    return {
        "store": store.url,
        "salt": store.salt,
        "blobs": {
            **_count(snap.blobs.values()),
            "clips": _count(by_role.get("clip", [])),
            "last_frames": _count(by_role.get("last_frame", [])),
            "posters": _count(by_role.get("poster", [])),
            "logs": _count(by_role.get("log", [])),
            "masters": _count(by_role.get("master", [])),
            "unreferenced": _count(by_role.get("unreferenced", [])),
        },
        "records": {
            **_count(snap.records.values()),
            "render": len(kinds.get("render", [])),
            "master": len(kinds.get("master", [])),
            "damaged": damaged,
        },
        "runs": _count(list_objects(store, "runs/")),
        "stories": stories,
    }


# -- verify ---------------------------------------------------------------------------------


def rehash(store: Store, digest: str) -> str | None:
    """Read a blob whole and hash it: ``None`` when sound (or gone), else the actual digest."""
    from .s3 import S3Store, _NullSink

    try:
        if isinstance(store, LocalStore):
            actual = sha256_file(store.root / blob_path(digest))[0]
            return None if actual == digest else actual
        if isinstance(store, S3Store):
            store._stream(digest, lambda: _NullSink())
            return None
        with tempfile.TemporaryDirectory(prefix="reelfarm-verify-") as tmp:
            store.get_file(digest, Path(tmp) / "blob")
        return None
    except CorruptBlob as e:
        return e.actual
    except (BlobMissing, FileNotFoundError):
        return None  # deleted since it was listed (gc, repair): nothing to verify


def verify(store: Store, *, repair: bool = False, workers: int = WORKERS,
           on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Re-hash every blob; check every record's blobs are present. Optionally repair."""
    blobs = {d: o for o in list_objects(store, "cas/") if (d := _blob_digest(o.rel))}
    done = 0
    digests = sorted(blobs)

    def check(d: str) -> tuple[str, str | None]:
        nonlocal done
        actual = rehash(store, d)
        done += 1
        if on_progress:
            on_progress(done, len(digests))
        return d, actual

    bad = {d: a for d, a in _pmap(check, digests, workers) if a is not None}
    keys = [k for o in list_objects(store, "ac/") if (k := _record_key(o.rel))]
    records = store.get_actions(keys) if keys else {}
    # A record written after the blob listing may name a blob written after it, too.
    unlisted = [o for r in records.values() if r for o in r.outputs.values()
                if o.sha256 not in blobs]
    late = store.has_blobs(unlisted) if unlisted else {}
    corrupt: dict[str, dict[str, Any]] = {
        d: {"sha256": d, "actual": a, "size": blobs[d].size, "records": []}
        for d, a in sorted(bad.items())
    }
    missing: list[dict[str, str]] = []
    damaged: list[str] = []
    for key in keys:
        rec = records.get(key)
        if rec is None:
            if store.get_doc(f"ac/{key}.json") is not None:  # still there: damaged
                damaged.append(key)
            continue
        for name, ref in rec.outputs.items():
            if ref.sha256 in corrupt:
                corrupt[ref.sha256]["records"].append(key)
            elif ref.sha256 not in blobs and not late.get(ref.sha256):
                missing.append({"record": key, "output": name, "sha256": ref.sha256})
            elif ref.sha256 in blobs and blobs[ref.sha256].size != ref.size:
                missing.append({"record": key, "output": name, "sha256": ref.sha256,
                                "size": f"{blobs[ref.sha256].size} != {ref.size}"})
    report: dict[str, Any] = {
        "store": store.url,
        "blobs": len(blobs),
        "bytes": sum(o.size for o in blobs.values()),
        "records": len(keys),
        "corrupt": list(corrupt.values()),
        "missing": missing,
        "damaged_records": damaged,
        "ok": not (corrupt or missing or damaged),
        "repaired": None,
    }
    if repair and not report["ok"]:
        drop = sorted({k for c in corrupt.values() for k in c["records"]}
                      | {m["record"] for m in missing} | set(damaged))
        _pmap(store.delete_action, drop)  # records first: never a record without its blob
        _pmap(store.delete_blob, sorted(corrupt))
        report["repaired"] = {"records_deleted": drop, "blobs_deleted": sorted(corrupt)}
    return report


# -- gc -------------------------------------------------------------------------------------


@dataclass
class Doomed:
    kind: str  # blob | record | run | temporary
    rel: str
    size: int
    what: str = ""  # role of a blob (clip, last_frame, master, unreferenced), a record's kind

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.rel, "bytes": self.size, "what": self.what}


@dataclass
class GcPlan:
    keep_runs: int
    grace_s: float
    now: float
    kept_runs: list[str]  # rel paths
    seen_runs: set[str]
    delete: list[Doomed]
    kept: dict[str, int]
    labels: dict[str, str]  # blob digest -> "story/shot" where run records name it

    @property
    def bytes(self) -> int:
        return sum(d.size for d in self.delete)

    def to_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = defaultdict(int)
        for d in self.delete:
            counts[d.kind] += 1
        return {
            "keep_runs": self.keep_runs,
            "grace_seconds": self.grace_s,
            "kept_runs": self.kept_runs,
            "kept": self.kept,
            "delete": {"count": dict(counts), "bytes": self.bytes,
                       "objects": [d.to_dict() | _label(d, self.labels) for d in self.delete]},
        }


def _label(d: Doomed, labels: dict[str, str]) -> dict[str, str]:
    digest = _blob_digest(d.rel)
    return {"shot": labels[digest]} if digest and digest in labels else {}


def _kept_runs(runs: list[Run], keep_runs: int, young: Callable[[float], bool]) -> list[Run]:
    """Runs of one story (oldest first) that gc keeps; see the module docstring."""
    kept = []
    finished = 0
    for run in reversed(runs):
        recent = finished < keep_runs
        in_progress = run.status == "running" and young(run.started)
        if recent or in_progress or young(run.mtime):
            kept.append(run)
            if run.status in FINISHED and recent:
                finished += 1
    return list(reversed(kept))


def plan_gc(store: Store, keep_runs: int, grace_s: float = DEFAULT_GRACE_S,
            now: float | None = None) -> GcPlan:
    """What gc would delete (nothing is deleted here)."""
    now = time.time() if now is None else now

    def young(t: float) -> bool:
        return now - t < grace_s

    snap = snapshot(store)
    kept_runs = [r for runs in snap.stories().values()
                 for r in _kept_runs(runs, keep_runs, young)]
    keys, digests = snap.reach(kept_runs)
    # Records written in the grace period are kept, and so is everything they name.
    for key, o in snap.records.items():
        if young(o.mtime):
            keys.add(key)
            rec = snap.record_docs.get(key)
            if rec is not None:
                digests |= {ref.sha256 for ref in rec.outputs.values()}
    digests |= {d for d, o in snap.blobs.items() if young(o.mtime)}
    roles = snap.roles()
    kinds = {k: (r.kind if r else "damaged") for k, r in snap.record_docs.items()}
    kept_rel = {r.rel for r in kept_runs}
    delete = [Doomed("record", o.rel, o.size, kinds.get(k, "damaged"))
              for k, o in sorted(snap.records.items()) if k not in keys]
    delete += [Doomed("blob", o.rel, o.size, roles.get(d, "unreferenced"))
               for d, o in sorted(snap.blobs.items()) if d not in digests]
    delete += [Doomed("run", r.rel, r.size, r.status) for r in snap.runs if r.rel not in kept_rel]
    delete += [Doomed("temporary", o.rel, o.size) for o in local_temporaries(store)
               if not young(o.mtime)]
    labels: dict[str, str] = {}
    for r in snap.runs:
        for t in (r.doc or {}).get("tasks") or []:
            if isinstance(t, dict) and isinstance(t.get("clip"), str):
                labels[t["clip"]] = f"{r.story}/{t.get('shot')}"
    return GcPlan(
        keep_runs=keep_runs, grace_s=grace_s, now=now,
        kept_runs=sorted(kept_rel), seen_runs={r.rel for r in snap.runs}, delete=delete,
        kept={"runs": len(kept_rel), "records": len(keys & set(snap.records)),
              "blobs": len(digests & set(snap.blobs))},
        labels=labels,
    )


def apply_gc(store: Store, plan: GcPlan) -> dict[str, Any]:
    """Delete what ``plan`` lists, except what a run that appeared since then reaches."""
    fresh = [r for r in read_runs(store) if r.rel not in plan.seen_runs]
    spare_keys: set[str] = set()
    spare_blobs: set[str] = set()
    if fresh:
        keys, digests = set(), set()
        for r in fresh:
            k, d = r.refs()
            keys |= k
            digests |= d
        records = store.get_actions(sorted(keys)) if keys else {}
        for rec in records.values():
            if rec is not None:
                digests |= {o.sha256 for o in rec.outputs.values()}
        spare_keys, spare_blobs = keys, digests
    todo = [d for d in plan.delete
            if not (d.kind == "record" and _record_key(d.rel) in spare_keys)
            and not (d.kind == "blob" and _blob_digest(d.rel) in spare_blobs)]
    order = {"record": 0, "blob": 1, "run": 2, "temporary": 3}
    deleted: dict[str, int] = defaultdict(int)
    for kind in sorted({d.kind for d in todo}, key=order.__getitem__):
        batch = [d for d in todo if d.kind == kind]
        _pmap(lambda d: _delete(store, d), batch)
        deleted[kind] = len(batch)
    return {"deleted": dict(deleted), "bytes": sum(d.size for d in todo),
            "spared": len(plan.delete) - len(todo)}


def _delete(store: Store, d: Doomed) -> None:
    if d.kind == "record":
        key = _record_key(d.rel)
        if key:
            store.delete_action(key)
    elif d.kind == "blob":
        digest = _blob_digest(d.rel)
        if digest:
            store.delete_blob(digest)
    elif d.kind == "run":
        store.delete_doc(d.rel)
    elif d.kind == "temporary" and isinstance(store, LocalStore):
        (store.root / d.rel).unlink(missing_ok=True)
