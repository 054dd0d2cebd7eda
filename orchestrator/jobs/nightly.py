"""``reelfarm nightly``: render every story under a prefix, incrementally.

Every manifest under ``PREFIX`` (an ``s3://`` prefix or a local directory, searched
recursively for ``.yaml``, ``.yml`` and ``.json`` files), in name order:

1. a file that is not a ``reelfarm/v1`` Story (no ``apiVersion: reelfarm/v1`` with
   ``kind: Story``: a draft, a JSON Schema, any other YAML) is ``skipped`` and listed; a file
   that claims to be one is loaded and validated, and an invalid one is reported (``invalid``,
   which fails the night) while the run goes on;
2. every valid story is planned, and all of them joined into one job
   (:mod:`orchestrator.run.combined`): every render key and master of the night is looked up
   at once (batched requests, one listing for all stories);
3. when every clip and every master of a story is cached and ``<out>/<story>/`` already holds
   exactly the masters and ``branches.json`` its plan publishes, the story is ``unchanged``:
   nothing is rendered, nothing is written, not even a run record;
4. the other stories render together, on one pool of warm renderer actors: only the tasks
   whose keys are new render, a key shared by several stories once; only the branches
   containing them are assembled; and each story is finished into ``<out>/<story>/`` as
   :func:`~orchestrator.run.render.render_story` finishes one (masters whose bytes changed,
   ``branches.json``, ``report.json``, its run record).

``NightlyOptions(combined=False)`` renders the stories one after the other instead.

One story's failure (invalid manifest, failed shots, a store or cluster error) never stops the
others. The summary (``nightly-<run id>.json`` under ``<out>``) lists every story with its
status and counts. The exit code is 0 when every story is ``rendered``, ``unchanged`` or
``skipped``, 1 when any is ``failed`` or ``invalid``.

``include``/``exclude`` globs pick files by their path under the prefix (``fnmatch``: ``*``
matches across ``/``). :func:`dry_run` gives the night's plan without rendering anything or
creating a store: for each file, skipped or invalid, or its tasks, how many are cached and how
many would render.

Use from Python::

    from .nightly import NightlyOptions, run_nightly
    result = run_nightly("s3://studio/stories", NightlyOptions(store="s3://studio/cache",
                                                              out="s3://studio/renders"))
    for s in result.stories:
        print(s.source, s.status, s.rendered)
"""

from __future__ import annotations

import fnmatch
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..plan.expand import expand
from ..run.driver import Scheduler, SchedulerOptions
from ..run.render import RenderOptions, new_run_id, plan_story, render_story
from ..store import BlobRef, Store, open_store, sha256_file
from ..store.outputs import LocalOutput, Output, open_output

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

# story statuses
UNCHANGED, RENDERED, FAILED, INVALID = "unchanged", "rendered", "failed", "invalid"
NOT_RENDERED = "not rendered: the night was interrupted"
SKIPPED = "skipped"  # not a reelfarm/v1 Story manifest
OK_STATUSES = (UNCHANGED, RENDERED, SKIPPED)
STATUSES = (UNCHANGED, RENDERED, FAILED, INVALID, SKIPPED)


class NightlyError(Exception):
    """The nightly run as a whole cannot start (no such prefix, no manifests under it)."""


@dataclass(frozen=True)
class NightlyOptions:
    store: str | None = None
    out: str = "./renders"
    s3_endpoint: str | None = None
    address: str | None = None
    scheduler: SchedulerOptions = field(default_factory=SchedulerOptions)
    progress: str = "auto"  # as RenderOptions.progress: auto | live | plain | quiet
    suffixes: tuple[str, ...] = MANIFEST_SUFFIXES
    include: tuple[str, ...] = ()  # globs over paths under the prefix; empty: every file
    exclude: tuple[str, ...] = ()
    # every story as one job (one lookup, one pool, shared shots once); False: one by one
    combined: bool = True


@dataclass
class StoryOutcome:
    source: str
    status: str  # unchanged | rendered | failed | invalid | skipped
    story: str | None = None
    out: str | None = None
    run_id: str | None = None  # the render's run id (None when nothing rendered)
    tasks: int = 0
    rendered: int = 0
    cached: int = 0
    failed: int = 0
    blocked: int = 0
    masters: int = 0
    masters_assembled: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)  # why a story is invalid, failed, skipped

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES

    @property
    def interrupted(self) -> bool:
        """Its render was stopped by SIGINT or SIGTERM: the night stops with it."""
        return "render interrupted" in self.problems


@dataclass
class NightlyResult:
    run_id: str
    prefix: str
    out: str
    stories: list[StoryOutcome]
    summary: str  # where nightly-<run id>.json was written
    seconds: float

    @property
    def exit_code(self) -> int:
        return 0 if all(s.ok for s in self.stories) else 1

    def document(self) -> dict[str, Any]:
        counts = {k: sum(1 for s in self.stories if s.status == k) for k in STATUSES}
        return {
            "run_id": self.run_id,
            "prefix": self.prefix,
            "out": self.out,
            "status": "succeeded" if self.exit_code == 0 else "failed",
            "seconds": round(self.seconds, 3),
            "totals": {
                "stories": sum(1 for s in self.stories if s.status != SKIPPED),
                **counts,
                "tasks_rendered": sum(s.rendered for s in self.stories),
                "masters_assembled": sum(s.masters_assembled for s in self.stories),
            },
            "stories": [asdict(s) for s in self.stories],
        }


# -- finding manifests -------------------------------------------------------------------------


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def list_manifests(prefix: str, *, out: str | None = None, s3_endpoint: str | None = None,
                   suffixes: tuple[str, ...] = MANIFEST_SUFFIXES, include: tuple[str, ...] = (),
                   exclude: tuple[str, ...] = ()) -> list[str]:
    """The manifests under ``prefix``, sorted; anything under ``out`` is left out (so an output
    location inside the stories' prefix never feeds its own JSON back in as stories).

    ``include`` and ``exclude`` are globs over the path under ``prefix`` (``drafts/*``,
    ``*.schema.json``): a file is taken when it matches an ``include`` (or none is given) and
    no ``exclude``."""
    found = _list(prefix, out=out, s3_endpoint=s3_endpoint, suffixes=suffixes)
    if prefix.startswith("s3://"):
        base = prefix.rstrip("/") + "/"
        return [u for u in found if _picked(u[len(base):], include, exclude)]
    root = _local_root(prefix)
    return [u for u in found if _picked(Path(u).relative_to(root).as_posix(), include, exclude)]


def _picked(rel: str, include: tuple[str, ...], exclude: tuple[str, ...]) -> bool:
    if include and not any(fnmatch.fnmatchcase(rel, g) for g in include):
        return False
    return not any(fnmatch.fnmatchcase(rel, g) for g in exclude)


def _local_root(prefix: str) -> Path:
    return Path(prefix[len("file://"):] if prefix.startswith("file://") else prefix).expanduser()


def _list(prefix: str, *, out: str | None, s3_endpoint: str | None,
          suffixes: tuple[str, ...]) -> list[str]:
    if prefix.startswith("s3://"):
        from ..store.s3_objects import list_objects

        found = list_objects(prefix, suffixes, endpoint_url=s3_endpoint)
        base = prefix.rstrip("/") + "/"
        found = [u for u in found
                 if not any(p.startswith(".") for p in u[len(base):].split("/"))]
        if out and out.startswith("s3://"):
            skip = out.rstrip("/") + "/"
            found = [u for u in found if not u.startswith(skip)]
        return found
    root = _local_root(prefix)
    if not root.is_dir():
        raise NightlyError(f"{prefix}: not a directory")
    skip_dir = None
    if out and ("://" not in out or out.startswith("file://")):
        skip_dir = Path(out.removeprefix("file://")).expanduser().resolve()
    wanted = tuple(s.lower() for s in suffixes)
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or not path.name.lower().endswith(wanted):
            continue
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue  # hidden files and folders (editor swap files, .git)
        if skip_dir is not None and path.resolve().is_relative_to(skip_dir):
            continue
        found.append(str(path))
    return found


# -- one story ---------------------------------------------------------------------------------


def _problems_of(err: Exception) -> list[str]:
    return [str(p) for p in getattr(err, "problems", [])] or [str(err)]


def _load(source: str, s3_endpoint: str | None, outcome: StoryOutcome):
    """The manifest at ``source``, or ``None`` with ``outcome`` saying why not (skipped,
    invalid, or failed when it cannot be read)."""
    from ..spec.errors import ManifestInvalid
    from ..spec.loading import load_manifest

    try:
        data = _read(source, s3_endpoint)
    except ManifestInvalid as e:  # too big, not a regular file ...
        if not _claims_in_text(_head(source)):  # a big file that does not say it is a Story
            outcome.status = SKIPPED
            outcome.problems = [f"{source}: not a reelfarm/v1 Story manifest (and too big for one)"]
        else:
            outcome.status, outcome.problems = INVALID, _problems_of(e)
        return None
    except OSError as e:
        outcome.status, outcome.problems = FAILED, [f"{source}: cannot read: {e.strerror or e}"]
        return None
    why = not_a_story(source, data)
    if why is not None:
        outcome.status, outcome.problems = SKIPPED, [f"{source}: {why}"]
        return None
    try:
        return load_manifest(source, data)
    except ManifestInvalid as e:
        outcome.status, outcome.problems = INVALID, _problems_of(e)
        return None


_CLAIMS_API = re.compile(r"""^\s*["']?apiVersion["']?\s*:\s*["']?reelfarm/v1\b""", re.M)
_CLAIMS_KIND = re.compile(r"""^\s*["']?kind["']?\s*:\s*["']?Story\b""", re.M)


def _claims_in_text(text: str) -> bool:
    return bool(_CLAIMS_API.search(text) and _CLAIMS_KIND.search(text))


def _head(source: str, size: int = 64 * 1024) -> str:
    """The start of a local regular file, as text ('' when it cannot be read)."""
    path = Path(source)
    try:
        if source.startswith("s3://") or not path.is_file():
            return ""
        with path.open("rb") as f:
            return f.read(size).decode("utf-8", "replace")
    except OSError:
        return ""


def not_a_story(source: str, data: bytes) -> str | None:
    """Why ``data`` is not a ``reelfarm/v1`` Story manifest, or ``None`` when it claims to be one.

    A file claims to be a Story when its top level has ``apiVersion: reelfarm/v1`` and
    ``kind: Story``. Read with the loader's bounded YAML composer (JSON is read the same way),
    looking only at those two keys; a file too broken to read claims to be a Story when its
    text says both, so a manifest with a syntax error is reported, never skipped.
    """
    from ..spec.errors import ManifestInvalid
    from ..spec.loading import _compose

    try:
        root = _compose(source, data.decode("utf-8"))
    except (ManifestInvalid, UnicodeDecodeError):
        if _claims_in_text(data.decode("utf-8", "replace")):
            return None
        return "not a reelfarm/v1 Story manifest (not YAML or JSON that reads as one)"
    if root is None:
        return "empty file"
    from yaml import MappingNode

    top: dict[str, Any] = {}
    if isinstance(root, MappingNode):
        for k, v in root.value:
            if isinstance(k.value, str) and isinstance(v.value, str) and k.value in (
                "apiVersion", "kind"
            ):
                top[k.value] = v.value
    if top.get("apiVersion") == "reelfarm/v1" and top.get("kind") == "Story":
        return None
    found = ", ".join(f"{k}: {top[k]}" for k in ("apiVersion", "kind") if k in top)
    return "not a reelfarm/v1 Story manifest" + (f" ({found})" if found else "")


def _read(source: str, s3_endpoint: str | None) -> bytes:
    from ..spec.loading import _read as read_local
    from ..store.sources import read_source

    data = read_source(source, s3_endpoint=s3_endpoint)
    return read_local(source) if data is None else data


def _is_published(out: Output, rel: str, ref: BlobRef) -> bool:
    if isinstance(out, LocalOutput):
        path = out.root / rel
        try:
            return path.stat().st_size == ref.size and sha256_file(path)[0] == ref.sha256
        except OSError:
            return False
    return bool(out.published(rel, ref))  # type: ignore[attr-defined]


def _published_branches(out: Output) -> Any:
    if isinstance(out, LocalOutput):
        import json

        try:
            return json.loads((out.root / "branches.json").read_text())
        except (OSError, ValueError):
            return None
    return out.get_json("branches.json")  # type: ignore[attr-defined]


class _Planned(Output):
    """Collects what a render would publish, without publishing it."""

    def __init__(self) -> None:
        self.url = ""
        self.blobs: list[tuple[str, BlobRef]] = []

    def put_json(self, rel: str, doc: Any) -> None:  # pragma: no cover - never called
        raise AssertionError("a planned output publishes nothing")

    def put_blob(self, rel: str, store: Store, ref: BlobRef) -> None:
        self.blobs.append((rel, ref))

    def get_json(self, rel: str) -> Any | None:
        return None

    def holds(self, rel: str, sha256: str) -> bool:
        return False

    def put_bytes(self, rel: str, data: bytes, content_type: str) -> None:  # pragma: no cover
        raise AssertionError("a planned output publishes nothing")

    def list_files(self, prefix: str) -> list[str]:
        return []

    def list_masters(self) -> list[str]:
        return []  # nothing is published here, so nothing is removed

    def remove(self, rel: str) -> None:  # pragma: no cover - never called
        raise AssertionError("a planned output removes nothing")


def is_unchanged(story, store: Store, out: Output) -> bool:
    """True when rendering ``story`` would render nothing, assemble nothing and publish
    nothing that ``out`` does not already hold."""
    plan = plan_story(story, store)
    sched = Scheduler(plan, store, store_url=store.url)
    sched.masters.published = lambda name, sha256: out.holds(f"masters/{name}.mp4", sha256)
    sched.lookup()
    sched.lookup_masters()
    return _unchanged(sched, store, out)


def _unchanged(sched, store: Store, out: Output) -> bool:
    """:func:`is_unchanged` of a looked-up run (a :class:`Scheduler`, or one story's
    :class:`~orchestrator.run.combined.StoryView` of a combined one)."""
    from ..run.render import _publish_masters

    if sched.needs_cluster():
        return False
    planned = _Planned()
    docs, _ = _publish_masters(sched, store, planned)
    if _published_branches(out) != docs:
        return False
    # a master of no current branch would be removed by a render: that is a change too
    if not set(out.list_masters()) <= {rel for rel, _ in planned.blobs}:
        return False
    return all(_is_published(out, rel, ref) for rel, ref in planned.blobs)


def _load_story(source: str, opts: NightlyOptions, names: dict[str, str],
                outcome: StoryOutcome):
    """The manifest at ``source`` when it is a valid story whose name no earlier file took;
    otherwise ``None``, with ``outcome`` saying why."""
    m = _load(source, opts.s3_endpoint, outcome)
    if m is None:
        return None
    name = m.story.metadata.name
    outcome.story = name
    if name in names:
        outcome.status = INVALID
        outcome.problems = [f"{source}: metadata.name: story {name!r} is also defined in "
                            f"{names[name]}; story names must be unique under the prefix"]
        return None
    names[name] = source
    outcome.out = _join(opts.out, name)
    return m


def _render_one(source: str, opts: NightlyOptions, names: dict[str, str]) -> StoryOutcome:
    """One story on its own: load, check whether it changed, render it."""
    t0 = time.monotonic()
    outcome = StoryOutcome(source=source, status=FAILED)
    try:
        m = _load_story(source, opts, names, outcome)
        if m is not None:
            _render_alone(m, opts, outcome)
        return outcome
    except Exception as e:  # noqa: BLE001 - one story's failure never stops the others
        outcome.status = FAILED
        outcome.problems = outcome.problems or [_one_line(e)]
        return outcome
    finally:
        outcome.seconds = round(time.monotonic() - t0, 3)


def _render_alone(m, opts: NightlyOptions, outcome: StoryOutcome) -> None:
    from ..plan.expand import PlanError

    assert outcome.out is not None
    store = open_store(opts.store, s3_endpoint=opts.s3_endpoint)
    out = open_output(outcome.out, s3_endpoint=opts.s3_endpoint)
    try:
        try:
            unchanged = is_unchanged(m.story, store, out)
        except PlanError as e:
            outcome.status = INVALID
            outcome.problems = [str(m.problem(path, msg)) for path, msg in e.problems]
            return
        if unchanged:
            plan = plan_story(m.story, store)
            outcome.status = UNCHANGED
            outcome.tasks = outcome.cached = len(plan.tasks)
            outcome.masters = len(plan.branches)
            return
    finally:
        store.close()
        _close(out)
    result = render_story(m.story, RenderOptions(
        store=opts.store, s3_endpoint=opts.s3_endpoint, out=outcome.out, address=opts.address,
        scheduler=opts.scheduler, progress=opts.progress,
    ))
    _rendered(outcome, result)


def _rendered(outcome: StoryOutcome, result) -> None:
    """``outcome`` from a story's render result."""
    r = result.report
    t = r["totals"]
    outcome.run_id = r["run_id"]
    outcome.tasks, outcome.rendered, outcome.cached = t["unique"], t["rendered"], t["cached"]
    outcome.failed, outcome.blocked = t["failed"], t["blocked"]
    outcome.masters, outcome.masters_assembled = t["masters"], t["masters_assembled"]
    outcome.status = RENDERED if result.exit_code == 0 else FAILED
    outcome.problems = [f"{f['id']}: {f['error']}" for f in r["failures"]]
    outcome.problems += [e for e in r.get("errors", []) if e not in outcome.problems]
    if r["status"] == "interrupted":
        outcome.problems.append("render interrupted")
    elif result.exit_code != 0 and not outcome.problems:
        outcome.problems = [f"render {r['status']}"]


def _close(out: Any) -> None:
    close = getattr(out, "close", None)
    if close is not None:
        close()


# -- every story as one job --------------------------------------------------------------------


def _render_combined(sources: list[str], opts: NightlyOptions, names: dict[str, str],
                     on_story) -> list[StoryOutcome]:
    """Every story under the prefix as one job (:mod:`orchestrator.run.combined`): all valid
    stories are planned and looked up together; unchanged ones are left alone; the others
    render on one pool, shots they share rendered once, and each is finished on its own.

    Should the joined run fail as a whole (not a shot, not a story: say the cluster), each
    story it was rendering is rendered on its own, as a night without joining would."""
    from ..plan.expand import PlanError
    from ..run.combined import CombinedRender
    from ..run.progress import Progress
    from ..spec.storygraph import segment_graph

    outcomes: list[StoryOutcome] = []
    stories: dict[str, tuple[StoryOutcome, Any]] = {}  # name -> (outcome, manifest)
    plans = []
    t0 = time.monotonic()
    store = open_store(opts.store, s3_endpoint=opts.s3_endpoint)
    outs: dict[str, Output] = {}

    def told(outcome: StoryOutcome) -> None:
        outcome.seconds = round(time.monotonic() - t0, 3)
        if on_story is not None:
            on_story(outcome)

    try:
        for source in sources:
            outcome = StoryOutcome(source=source, status=FAILED)
            outcomes.append(outcome)
            try:
                m = _load_story(source, opts, names, outcome)
                if m is not None:
                    plans.append(plan_story(m.story, store))
                    stories[m.story.metadata.name] = (outcome, m)
                    continue
            except PlanError as e:
                outcome.status = INVALID
                outcome.problems = [str(m.problem(path, msg)) for path, msg in e.problems]
            except Exception as e:  # noqa: BLE001 - one story's failure never stops the others
                outcome.status, outcome.problems = FAILED, outcome.problems or [_one_line(e)]
            told(outcome)
        if not plans:
            return outcomes

        def alone(names: list[str], why: str) -> list[StoryOutcome]:
            for name in names:
                outcome, m = stories[name]
                if any(o.interrupted for o in outcomes):  # Ctrl-C stops the whole night
                    outcome.status, outcome.problems = FAILED, [NOT_RENDERED]
                    told(outcome)
                    continue
                try:
                    _render_alone(m, opts, outcome)
                except Exception as e:  # noqa: BLE001 - one story's failure stops no other
                    own = _one_line(e)
                    outcome.status = FAILED
                    outcome.problems = [why] if own in why else [why, own]
                told(outcome)
            return outcomes

        try:
            for name, (outcome, _) in stories.items():
                outs[name] = open_output(outcome.out, s3_endpoint=opts.s3_endpoint)
            job = CombinedRender(
                plans, store, outs, s3_endpoint=opts.s3_endpoint, options=opts.scheduler,
                progress=Progress(opts.progress), priority=opts.scheduler.priority,
                seeds={n: m.story.spec.seed for n, (_, m) in stories.items()},
                graphs={n: segment_graph(m.story) for n, (_, m) in stories.items()})
            job.lookup()
        except Exception as e:  # noqa: BLE001 - then each story on its own says what fails
            return alone(list(stories), _one_line(e))
        changed = []
        for plan in plans:
            outcome = stories[plan.story][0]
            try:
                unchanged = _unchanged(job.view(plan.story), store, outs[plan.story])
            except Exception as e:  # noqa: BLE001 - its output cannot be read: it fails alone
                outcome.status, outcome.problems = FAILED, [_one_line(e)]
                told(outcome)
                continue
            if unchanged:
                outcome.status = UNCHANGED
                outcome.tasks = outcome.cached = len(plan.tasks)
                outcome.masters = len(plan.branches)
                told(outcome)
            else:
                changed.append(plan.story)
        if not changed:
            return outcomes
        try:
            results = job.render(changed, {s: new_run_id() for s in changed},
                                 address=opts.address)
        except Exception as e:  # noqa: BLE001 - the stories are then rendered one by one
            why = f"the night's joined run failed: {_one_line(e)}"
            job.progress.note(f"{why}; rendering each of its stories on its own")
            return alone(changed, why)
        for name in changed:
            outcome = stories[name][0]
            _rendered(outcome, results[name])
            told(outcome)
        return outcomes
    finally:
        store.close()
        for out in outs.values():
            _close(out)


def _one_line(e: Exception) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# -- the run -----------------------------------------------------------------------------------


def _sources(prefix: str, opts: NightlyOptions) -> list[str]:
    sources = list_manifests(prefix, out=opts.out, s3_endpoint=opts.s3_endpoint,
                             suffixes=opts.suffixes, include=opts.include, exclude=opts.exclude)
    if not sources:
        picked = "".join(f" --include {g}" for g in opts.include) + "".join(
            f" --exclude {g}" for g in opts.exclude)
        raise NightlyError(
            f"{prefix}: no story manifests ({', '.join(opts.suffixes)}) found{picked}")
    return sources


@dataclass
class PlannedStory:
    """One file of a dry run: what the night would do with it."""

    source: str
    status: str  # to_render | cached (every task) | skipped | invalid | failed
    story: str | None = None
    tasks: int = 0
    cached: int = 0
    to_render: int = 0
    masters: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class NightlyPlan:
    prefix: str
    store_exists: bool
    stories: list[PlannedStory]

    @property
    def exit_code(self) -> int:
        return 1 if any(s.status in (INVALID, FAILED) for s in self.stories) else 0

    def document(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "store_exists": self.store_exists,
            "totals": {
                "stories": sum(1 for s in self.stories if s.status != SKIPPED),
                "skipped": sum(1 for s in self.stories if s.status == SKIPPED),
                "invalid": sum(1 for s in self.stories if s.status == INVALID),
                "tasks": sum(s.tasks for s in self.stories),
                "cached": sum(s.cached for s in self.stories),
                "to_render": sum(s.to_render for s in self.stories),
            },
            "stories": [asdict(s) for s in self.stories],
        }


def _existing_store(url: str | None, s3_endpoint: str | None) -> Store | None:
    """The store at ``url`` when it exists; ``None`` for a local one that does not (a dry run
    creates nothing). An S3 store is only ever created by writing to it."""
    from ..store import DEFAULT_STORE

    url = url or DEFAULT_STORE
    if not url.startswith("s3://"):
        local = Path(url.removeprefix("file://")).expanduser()
        if "://" not in url.removeprefix("file://") and not local.is_dir():
            return None
    return open_store(url, s3_endpoint=s3_endpoint)


def dry_run(prefix: str, opts: NightlyOptions) -> NightlyPlan:
    """The night's plan: which files are stories, and for each its tasks, cached and to render.

    Nothing renders, nothing is written, and no store is created: against a store that does not
    exist yet, every task is to render."""
    from ..plan.expand import PlanError

    sources = _sources(prefix, opts)
    store = _existing_store(opts.store, opts.s3_endpoint)
    names: dict[str, str] = {}
    planned: list[PlannedStory] = []
    plans: list[tuple[PlannedStory, Any]] = []
    try:
        for source in sources:
            outcome = StoryOutcome(source=source, status=FAILED)
            m = _load(source, opts.s3_endpoint, outcome)
            p = PlannedStory(source=source, status=outcome.status, problems=outcome.problems)
            planned.append(p)
            if m is None:
                continue
            p.story = m.story.metadata.name
            if p.story in names:
                p.status = INVALID
                p.problems = [f"{source}: metadata.name: story {p.story!r} is also defined in "
                              f"{names[p.story]}; story names must be unique under the prefix"]
                continue
            names[p.story] = source
            try:
                plan = expand(m.story, salt=store.salt if store else "")
            except PlanError as e:
                p.status = INVALID
                p.problems = [str(m.problem(path, msg)) for path, msg in e.problems]
                continue
            plans.append((p, plan))
        # every key of the night in one lookup, as the night itself looks them up
        found: dict[str, Any] = {}
        if store is not None and plans:
            from ..store.lookup import lookup

            found = lookup(store, [plan.story for _, plan in plans],
                           sorted({t.key for _, plan in plans for t in plan.tasks}))
        for p, plan in plans:
            cached = sum(1 for t in plan.tasks if not isinstance(found.get(t.key, ""), str))
            p.tasks, p.cached, p.to_render = len(plan.tasks), cached, len(plan.tasks) - cached
            p.masters = len(plan.branches)
            p.status = "to_render" if p.to_render else "cached"
    finally:
        if store is not None:
            store.close()
    return NightlyPlan(prefix=prefix, store_exists=store is not None, stories=planned)


def run_nightly(prefix: str, opts: NightlyOptions, *, on_story=None) -> NightlyResult:
    """Render every story under ``prefix``; write ``<out>/nightly-<run id>.json``.

    ``on_story(outcome)`` is called after each story (for progress lines). Raises
    :class:`NightlyError` when the prefix holds no manifests, :class:`StoreError` when the
    prefix or the output location cannot be reached."""
    t0 = time.monotonic()
    run_id = new_run_id()
    started = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    sources = _sources(prefix, opts)
    open_store(opts.store, s3_endpoint=opts.s3_endpoint).close()  # a bad store URL fails here
    names: dict[str, str] = {}
    if opts.combined:
        outcomes = _render_combined(sources, opts, names, on_story)
    else:
        outcomes = []
        for source in sources:
            if any(o.interrupted for o in outcomes):  # Ctrl-C stops the whole night
                outcomes.append(StoryOutcome(source=source, status=FAILED,
                                             problems=[NOT_RENDERED]))
                continue
            outcome = _render_one(source, opts, names)
            outcomes.append(outcome)
            if on_story is not None:
                on_story(outcome)
    summary_rel = f"nightly-{run_id}.json"
    result = NightlyResult(run_id=run_id, prefix=prefix, out=opts.out, stories=outcomes,
                           summary=_join(opts.out, summary_rel),
                           seconds=time.monotonic() - t0)
    doc = result.document()
    doc["started"] = started
    doc["store"] = opts.store
    out = open_output(opts.out, s3_endpoint=opts.s3_endpoint)
    try:
        out.put_json(summary_rel, doc)
    finally:
        close = getattr(out, "close", None)
        if close is not None:
            close()
    return result


__all__ = [
    "NightlyError",
    "NightlyPlan",
    "PlannedStory",
    "dry_run",
    "not_a_story",
    "NightlyOptions",
    "NightlyResult",
    "StoryOutcome",
    "is_unchanged",
    "list_manifests",
    "run_nightly",
]
