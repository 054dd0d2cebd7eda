"""``reelfarm cache``: stats, verify, gc and salt of a store (logic in :mod:`.cache`)."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from ..spec.urls import BadLocation, printable
from ..store import Store, StoreError, StoreMissing, open_store
from ..store import cache as ops
from .common import _store_options
from .options import resolve_locations


def _with_store(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Open the existing store from --store/--s3-endpoint (a cache command never creates one);
    a store error is one line and exit 2."""

    @functools.wraps(fn)
    def wrapper(store_url: str | None, s3_endpoint: str | None, **kw: Any) -> Any:
        try:
            store_url, s3_endpoint = resolve_locations(store_url, s3_endpoint)
            store = open_store(store_url, s3_endpoint=s3_endpoint, create=False)
            try:
                return fn(store, **kw)
            finally:
                store.close()
        except StoreMissing as e:
            click.echo(f"error: {e} (check --store or $REELFARM_STORE; `reelfarm render` "
                       "creates a store)", err=True)
            sys.exit(2)
        except (StoreError, BadLocation) as e:
            click.echo(f"error: {printable(e)}", err=True)
            sys.exit(2)

    return wrapper


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _dump(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2))


@click.group()
def cache() -> None:
    """Inspect and maintain a store: sizes, integrity, garbage collection, salt.

    \b
    Examples:
      reelfarm cache stats --store s3://studio-renders/reelfarm
      reelfarm cache verify --repair
      reelfarm cache gc --keep-runs 3            # dry run: what would go
      reelfarm cache gc --keep-runs 3 --apply
      reelfarm cache salt batch-2                # what a new salt would disown
      reelfarm cache salt batch-2 --yes          # disown every record made so far
    """


@cache.command()
@_store_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document instead.")
@_with_store
def stats(store: Store, as_json: bool) -> None:
    """Objects and bytes in the store: blobs by kind, records, runs, and per story.

    A story's figures are the clips, last frames and masters its run records reach (a blob
    shared by two stories counts in both).
    """
    doc = ops.stats(store)
    if as_json:
        _dump(doc)
        return
    b, r = doc["blobs"], doc["records"]
    click.echo(f"store {doc['store']}" + (f" (salt {doc['salt']!r})" if doc["salt"] else ""))
    click.echo(f"blobs        {b['objects']:>8}  {_size(b['bytes']):>10}")
    for name in ("clips", "last_frames", "posters", "logs", "masters", "unreferenced"):
        click.echo(f"  {name:<11}{b[name]['objects']:>8}  {_size(b[name]['bytes']):>10}")
    click.echo(f"records      {r['objects']:>8}  {_size(r['bytes']):>10}  "
               f"({r['render']} render, {r['master']} master, {r['damaged']} damaged)")
    click.echo(f"runs         {doc['runs']['objects']:>8}  {_size(doc['runs']['bytes']):>10}")
    for name, s in doc["stories"].items():
        click.echo(f"story {name}: {s['runs']} runs (last {s['last_run']['id']} "
                   f"{s['last_run']['status']}); {s['clips']['objects']} clips, "
                   f"{s['masters']['objects']} masters, {_size(s['bytes'])}")


@cache.command()
@_store_options
@click.option("--repair", is_flag=True,
              help="Delete corrupt blobs and the records pointing at them (they render again).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document instead.")
@_with_store
def verify(store: Store, repair: bool, as_json: bool) -> None:
    """Re-hash every blob and check that every record's blobs are present.

    \b
    Exit 0 when the store is sound (or --repair fixed it), 1 when something is corrupt,
    missing or damaged.
    """
    doc = ops.verify(store, repair=repair)
    if as_json:
        _dump(doc)
    else:
        click.echo(f"verified {doc['blobs']} blobs ({_size(doc['bytes'])}) and "
                   f"{doc['records']} records in {doc['store']}")
        for c in doc["corrupt"]:
            click.echo(f"corrupt blob {c['sha256']} ({c['size']} bytes hash to {c['actual']}); "
                       f"records: {', '.join(c['records']) or 'none'}")
        for m in doc["missing"]:
            click.echo(f"record {m['record']} names {m['output']} {m['sha256']}, which is "
                       f"{'the wrong size' if 'size' in m else 'missing'}")
        for k in doc["damaged_records"]:
            click.echo(f"record {k} is damaged (not a valid action record)")
        if doc["repaired"]:
            rep = doc["repaired"]
            click.echo(f"repaired: deleted {len(rep['blobs_deleted'])} blobs and "
                       f"{len(rep['records_deleted'])} records; the next render renders them")
        elif doc["ok"]:
            click.echo("ok: nothing corrupt")
    sys.exit(0 if doc["ok"] or doc["repaired"] else 1)


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip().lower()
    try:
        if t and t[-1] in units:
            return float(t[:-1]) * units[t[-1]]
        return float(t)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a duration like 90s, 30m, 6h or 2d") from None


@cache.command()
@_store_options
@click.option("--keep-runs", type=click.IntRange(0), required=True, metavar="N",
              help="Keep what the last N finished runs of each story reach.")
@click.option("--grace", default="6h", show_default=True, metavar="DURATION",
              help="Keep anything written more recently than this, and runs still in progress "
                   "that started more recently (90s, 30m, 6h, 2d).")
@click.option("--apply", "apply_", is_flag=True, help="Delete (the default is a dry run).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document instead.")
@_with_store
def gc(store: Store, keep_runs: int, grace: str, apply_: bool, as_json: bool) -> None:
    """Delete blobs and records that the last N runs of each story do not reach.

    \b
    A run reaches its clips, last frames and masters and their records. Runs in progress and
    anything newer than --grace are never deleted. Without --apply nothing is deleted: the
    command lists what would go and how many bytes.
    """
    plan = ops.plan_gc(store, keep_runs, _duration(grace))
    doc: dict[str, Any] = plan.to_dict()
    doc["applied"] = None
    if apply_:
        doc["applied"] = ops.apply_gc(store, plan)
    if as_json:
        _dump(doc)
        return
    verb = "deleted" if apply_ else "would delete"
    for d in doc["delete"]["objects"]:
        shot = f" ({d['shot']})" if "shot" in d else ""
        click.echo(f"{verb} {d['kind']} {d['path']} {d['what']}{shot} {d['bytes']} bytes")
    counts = ", ".join(f"{n} {k}s" for k, n in sorted(doc["delete"]["count"].items()))
    click.echo(f"{verb} {counts or 'nothing'} ({_size(plan.bytes)}); kept {doc['kept']['runs']} "
               f"runs, {doc['kept']['records']} records, {doc['kept']['blobs']} blobs")
    if apply_ and doc["applied"]["spared"]:
        click.echo(f"spared {doc['applied']['spared']} objects that a run started since needs")
    if not apply_ and plan.delete:
        click.echo("dry run: nothing was deleted; add --apply to delete")


@cache.command()
@click.argument("new", required=False)
@_store_options
@click.option("--yes", is_flag=True, help="Set the new salt (without it: only say what it would "
              "disown, and exit 1).")
@_with_store
def salt(store: Store, new: str | None, yes: bool) -> None:
    """Show the store's salt, or set it to NEW.

    The salt is part of every render key: setting a new one disowns every record made under
    the old salt, so the next plan shows every task to render (use it to throw away a bad
    batch without deleting anything; `cache gc` reclaims the space later). It changes the
    whole store at once, so without --yes nothing changes: the command says how many records
    and stories the new salt would disown and exits 1.
    """
    old = store.salt
    if new is None:
        click.echo(old)
        return
    if new == old:
        click.echo(f"salt is already {new!r}; nothing changed", err=True)
        return
    if not yes:
        records = sum(1 for _ in store.iter_action_keys())
        stories = sorted({p.split("/")[1] for p in store.list_docs("runs/") if p.count("/") >= 2})
        click.echo(f"salt {old!r} -> {new!r} would disown all {records} records in "
                   f"{store.url} (stories: {', '.join(stories) or 'none'}); every task of "
                   "every story would render again. Nothing changed: add --yes to set it.",
                   err=True)
        sys.exit(1)
    store.set_salt(new)
    click.echo(f"salt {old!r} -> {new!r}: every record made under the old salt is disowned; "
               "the next render renders everything", err=True)


COMMANDS = [cache]
