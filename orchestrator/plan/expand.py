"""Expansion: a validated :class:`Story` becomes a :class:`RenderPlan`.

Rules (DESIGN.md, Expansion):

* A ``cut`` shot is one task, whatever the number of branches through it.
* A ``continuity: previous`` shot is conditioned on the task before it: the previous shot of its
  segment, or for a segment's first shot, the last shot of a preceding segment. A segment entered
  from several upstream tasks makes one task per distinct upstream task (*variants*), and so do
  the continuity-chained shots after it, until a cut collapses them again.
* A branch is a path of segments from ``start`` to an ending; ``masters`` picks which branches
  get a master. Every task of the story is planned, so the whole story stays playable.

The story must already have passed :mod:`orchestrator.storygraph` (references resolve, acyclic).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator
from typing import Any

from actors.backends import UnknownBackend, get_backend

from ..spec.gc_paused import gc_paused
from ..spec.manifest import Profile, RendererSpec, Segment, Story
from ..spec.storygraph import predecessors, topological_order
from .keys import KeyMaker, derive_seed, render_key_document
from .models import Branch, RenderPlan, RenderTask

DEFAULT_MAX_BRANCHES = 256
DEFAULT_MAX_TASKS = 10_000

#: Built-in renderer defaults, under the story's ``spec.renderer`` and each shot's overrides.
BUILTIN_RENDERER = RendererSpec(backend="previz", steps=30, guidance=5.0, negative_prompt="")

#: Fixed cost of a task beyond its frames (process hand-off, encode start-up, upload).
TASK_OVERHEAD_SECONDS = 0.2

Path_ = tuple[str | int, ...]


class PlanError(Exception):
    """The story is valid YAML and schema, but cannot be planned as asked.

    ``problems`` are ``(field path, message)`` pairs; the CLI turns them into ``FILE:LINE``.
    """

    def __init__(self, problems: list[tuple[Path_, str]]) -> None:
        super().__init__("; ".join(m for _, m in problems))
        self.problems = problems


def frame_count(duration: float, fps: int) -> int:
    """``round(duration * fps)``, halves rounded up, never less than one frame."""
    return max(1, math.floor(duration * fps + 0.5))


#: ``expand(..., encoder=SHAPE_ONLY)``: a plan whose shape (branches, tasks, problems) is
#: wanted but whose keys are never used, so no ffmpeg is needed (``reelfarm validate``).
SHAPE_ONLY: dict[str, str] = {"ffmpeg": "-", "x264": "-", "source": "shape only: keys unused"}


def profile_key(profile: Profile, encoder: dict[str, str] | None = None) -> dict[str, Any]:
    """The profile as keys see it: size, rate and the encode spec with its encoder build
    (``encoder``, default this process's: :func:`actors.encode.encoder_id`)."""
    from actors.encode import encode_spec

    spec = encode_spec(profile, build=encoder is None)
    if encoder is not None:
        spec["encoder_build"] = {"ffmpeg": encoder["ffmpeg"], "x264": encoder["x264"]}
    return {"width": profile.width, "height": profile.height, "fps": profile.fps, "encode": spec}


# -- the segment graph ---------------------------------------------------------------------


def iter_paths(story: Story, to: str | None = None) -> Iterator[list[str]]:
    """Paths from ``start`` to an ending (or to segment ``to``), default options first.

    Each path is made only when it is yielded (the walk keeps a link to its parent step), so
    a walk costs the length of the paths it yields, not their square."""
    by_id = story.segments_by_id
    reaches: set[str] | None = None
    if to is not None:  # prune to segments that can reach ``to``
        preds = predecessors(story)
        reaches, todo = {to}, [to]
        while todo:
            for p in preds[todo.pop()]:
                if p not in reaches:
                    reaches.add(p)
                    todo.append(p)
    stack: list[tuple[str, Any]] = [(story.spec.start, None)]  # (segment, parent step)
    while stack:
        step = stack.pop()
        sid = step[0]
        seg = by_id[sid]
        if sid == to or (to is None and seg.is_ending):
            yield _unwind(step)
            continue
        nxts = [n for n in seg.successors if reaches is None or n in reaches]
        for nxt in reversed(nxts):
            stack.append((nxt, step))


def _unwind(step: tuple[str, Any]) -> list[str]:
    path: list[str] = []
    link: tuple[str, Any] | None = step
    while link is not None:
        sid, link = link
        path.append(sid)
    path.reverse()
    return path


def first_paths(story: Story) -> dict[str, list[str]]:
    """Each ending reachable from ``start`` → its first path in :func:`iter_paths` order (the
    default options first), in the order a default-first walk meets the endings.

    One depth-first walk that visits each segment once: the walk first reaches a segment along
    its earliest path in that order (a later path through an already visited segment would
    be a later path to everything after it too), so a segment's parent link on that walk
    spells its first path. O(segments + edges), however many paths there are."""
    by_id = story.segments_by_id
    parent: dict[str, str | None] = {}
    out: dict[str, list[str]] = {}
    stack: list[tuple[str, str | None]] = [(story.spec.start, None)]
    while stack:
        sid, via = stack.pop()
        if sid in parent:
            continue
        parent[sid] = via
        seg = by_id[sid]
        if seg.is_ending:
            path = [sid]
            while (up := parent[path[-1]]) is not None:
                path.append(up)
            out[sid] = path[::-1]
        stack.extend((n, sid) for n in reversed(seg.successors))
    return out


def count_paths(story: Story) -> tuple[int, dict[str, int]]:
    """Number of start→ending paths, and the number of those paths through each segment."""
    order = topological_order(story)
    by_id = story.segments_by_id
    to: dict[str, int] = {s: 0 for s in order}
    to[story.spec.start] = 1
    for sid in order:
        for nxt in by_id[sid].successors:
            to[nxt] += to[sid]
    frm: dict[str, int] = {}
    for sid in reversed(order):
        seg = by_id[sid]
        frm[sid] = 1 if seg.is_ending else sum(frm[n] for n in seg.successors)
    return frm[story.spec.start], {s: to[s] * frm[s] for s in order}


def choice_label(seg: Segment, nxt: str) -> str | None:
    if seg.choice is None:
        return None
    opts = seg.choice.options
    if opts[seg.choice.default].next == nxt:
        return opts[seg.choice.default].label
    return next(o.label for o in opts if o.next == nxt)


# -- branch names -------------------------------------------------------------------------

#: Longest ``<ending>~<via>`` name; a longer path is named ``<ending>.<hash>`` instead.
MAX_VIA_NAME = 100
BRANCH_HASH_HEX = 12
BRANCH_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}(~[a-z0-9][a-z0-9_.-]*|\.[0-9a-f]{12})?$")


def branch_name(path: list[str]) -> str:
    """A branch's name, made from its own path only, so editing another path never renames it.

    * ``<ending>`` when the path goes straight from ``start`` to the ending (or ``start`` is the
      ending);
    * ``<ending>~<seg>.<seg>...``: the ending, then the segments between ``start`` and the
      ending in playing order (``truth~market.reunion``);
    * ``<ending>.<12 hex>`` when that would be longer than :data:`MAX_VIA_NAME` characters: a
      sha256 of the whole path (``branches.json`` gives the segments and choices).

    Segment ids are ``[a-z0-9][a-z0-9_-]*``, so ``~`` and ``.`` cannot come from an id: a name
    maps back to one path, and it is a safe file name (``masters/<name>.mp4``).
    """
    ending, via = path[-1], path[1:-1]
    name = f"{ending}~{'.'.join(via)}" if via else ending
    if len(name) > MAX_VIA_NAME:
        h = hashlib.sha256("\n".join(path).encode()).hexdigest()[:BRANCH_HASH_HEX]
        name = f"{ending}.{h}"
    if not BRANCH_NAME_RE.match(name) or len(name) > 200:  # ids are checked; this guards paths
        raise ValueError(f"branch name {name!r} is not a safe file name")
    return name


# -- expansion -----------------------------------------------------------------------------


def expand(
    story: Story,
    *,
    salt: str = "",
    max_branches: int = DEFAULT_MAX_BRANCHES,
    max_tasks: int = DEFAULT_MAX_TASKS,
    encoder: dict[str, str] | None = None,
) -> RenderPlan:
    """Derive the render plan. Raises :class:`PlanError` when limits or backends refuse it.

    ``encoder`` is the encoder build the keys name (default: this process's, which needs its
    ffmpeg; :data:`SHAPE_ONLY` for a plan whose keys are not used)."""
    with gc_paused():
        return _expand(story, salt, max_branches, max_tasks, encoder)


def _expand(
    story: Story,
    salt: str,
    max_branches: int,
    max_tasks: int,
    encoder: dict[str, str] | None,
) -> RenderPlan:
    spec = story.spec
    profile = spec.profile
    encoder = encoder or _encoder()
    prof_key = profile_key(profile, encoder)
    keys = KeyMaker(salt=salt, profile=prof_key)
    story_renderer = spec.renderer.merged_over(BUILTIN_RENDERER)
    problems: list[tuple[Path_, str]] = []
    seg_index = {s.id: i for i, s in enumerate(spec.segments)}
    order = topological_order(story)
    preds = predecessors(story)

    # Resolve and check every shot once, before any task is made.
    resolved: dict[str, tuple[RendererSpec, int, str | None]] = {}
    for sid in order:
        si = seg_index[sid]
        for j, shot in enumerate(spec.segments[si].shots):
            where: Path_ = ("spec", "segments", si, "shots", j)
            renderer = (  # a shot that overrides nothing shares the story's resolved renderer
                shot.renderer.merged_over(story_renderer)
                if shot.renderer.model_fields_set else story_renderer
            )
            frames = frame_count(shot.duration, profile.fps)
            try:
                backend = get_backend(renderer.backend or "previz")
            except UnknownBackend as e:
                field = "renderer" if shot.renderer.backend else None
                at = (*where, "renderer", "backend") if field else ("spec", "renderer", "backend")
                problems.append((at, str(e.args[0])))
                continue
            pin = getattr(backend, "pin_revision", None)  # a moving model revision -> a commit
            note = None
            if pin is not None:
                renderer, note = pin(renderer)
            issues = backend.check(renderer, frames, profile)
            issues += backend.check_continuity(renderer, shot.continuity)
            for issue in issues:
                field = tuple(issue.field.split("."))
                at = ("spec", *field) if field[0] == "profile" else (*where, *field)
                problems.append((at, issue.message))
            resolved[shot.id] = (renderer, frames, note)
    if problems:
        raise PlanError(_dedupe(problems))

    # Make tasks segment by segment; variants follow distinct upstream tasks.
    tasks: dict[str, RenderTask] = {}
    task_of: dict[tuple[str, str | None], str] = {}  # (shot id, upstream task id) -> task id
    exits: dict[str, list[str]] = {}
    entry_variants: dict[str, int] = {}
    for sid in order:
        si = seg_index[sid]
        seg = spec.segments[si]
        contexts: list[str] = []
        for p in preds[sid]:
            for t in exits.get(p, []):
                if t not in contexts:
                    contexts.append(t)
        entry_variants[sid] = len(contexts)
        prev: list[str | None] = list(contexts) or [None]
        for shot in seg.shots:
            renderer, frames, note = resolved[shot.id]
            ups: list[str | None] = [None] if shot.continuity == "cut" else prev
            if len(tasks) + len(ups) > max_tasks:
                worst = max(entry_variants, key=lambda s: entry_variants[s])
                raise PlanError(
                    [
                        (
                            ("spec", "segments", seg_index[worst]),
                            f"the plan exceeds {max_tasks} render tasks: continuity variants "
                            f"multiply at segment {worst!r}, entered from "
                            f"{entry_variants[worst]} distinct upstream shots; make its first "
                            "shot a cut (continuity: cut) or merge branches before it",
                        )
                    ]
                )
            made: list[str | None] = []
            for k, up in enumerate(ups, start=1):
                tid = shot.id if len(ups) == 1 else f"{shot.id}~{k}"
                task = _make_task(
                    tid, shot, seg.id, renderer, frames, profile, prof_key, spec.seed, keys,
                    tasks[up] if up else None, note,
                )
                tasks[tid] = task
                task_of[(shot.id, up)] = tid
                made.append(tid)
            prev = made
        exits[sid] = [t for t in prev if t is not None]

    branches = _branches(story, task_of, max_branches)
    n_paths, through = count_paths(story)
    naive = sum(len(spec.segments[seg_index[s]].shots) * n for s, n in through.items())
    return RenderPlan(
        story=story.metadata.name,
        title=story.metadata.title,
        profile=profile,
        salt=salt,
        branches=branches,
        tasks=list(tasks.values()),
        naive_tasks=naive,
        encoder=encoder,
    )


def _encoder() -> dict[str, str]:
    """The encoder the keys name: ffmpeg and x264 builds, and how the binary was chosen."""
    from actors.encode import encoder_id

    return {k: str(v) for k, v in encoder_id().items()}


def _dedupe(problems: list[tuple[Path_, str]]) -> list[tuple[Path_, str]]:
    seen: set[tuple[Path_, str]] = set()
    return [p for p in problems if not (p in seen or seen.add(p))]


def _make_task(
    tid: str,
    shot,
    segment: str,
    renderer: RendererSpec,
    frames: int,
    profile: Profile,
    prof_key: dict[str, Any],
    base_seed: int,
    keys: KeyMaker,
    upstream: RenderTask | None,
    note: str | None = None,
) -> RenderTask:
    backend = get_backend(renderer.backend or "previz")
    seed = shot.seed if shot.seed is not None else derive_seed(base_seed, shot.prompt)
    fields: dict[str, Any] = dict(
        id=tid,
        shot=shot.id,
        segment=segment,
        prompt=shot.prompt,
        negative_prompt=renderer.negative_prompt or "",
        seed=seed,
        frames=frames,
        profile=profile,
        renderer=renderer,
        continuity=shot.continuity,
        upstream=upstream.id if upstream else None,
        upstream_key=upstream.key if upstream else None,
        est_seconds=frames * backend.seconds_per_frame(renderer, profile) + TASK_OVERHEAD_SECONDS,
        encoder_build=prof_key["encode"].get("encoder_build"),
        note=note,
    )
    # The backend reads the task's fields for its key parameters: an unvalidated draft, then
    # the task validated once with its key.
    draft = RenderTask.model_construct(key="", **fields)
    key = keys.key(
        backend=backend.name,
        backend_version=backend.version,
        model=renderer.model,
        revision=renderer.revision,
        params=backend.key_params(draft),
        prompt=draft.prompt,
        negative_prompt=draft.negative_prompt,
        seed=seed,
        frames=frames,
        upstream=draft.upstream_key,
    )
    return RenderTask(key=key, **fields)


def key_inputs(task: RenderTask, salt: str, prof_key: dict[str, Any]) -> dict[str, Any]:
    """The document a task's render key is the hash of (:func:`.keys.render_key_document`):
    ``digest(key_inputs(task, plan.salt, profile_key(plan.profile, plan.encoder)))`` is
    ``task.key``. Kept with the task's action record (``inputs``), so that a later plan can
    say what changed (:mod:`.why`)."""
    backend = get_backend(task.renderer.backend or "previz")
    return render_key_document(
        salt=salt,
        backend=backend.name,
        backend_version=backend.version,
        model=task.renderer.model,
        revision=task.renderer.revision,
        params=backend.key_params(task),
        prompt=task.prompt,
        negative_prompt=task.negative_prompt,
        seed=task.seed,
        frames=task.frames,
        profile=prof_key,
        upstream=task.upstream_key,
    )


def _branches(
    story: Story, task_of: dict[tuple[str, str | None], str], max_branches: int
) -> list[Branch]:
    spec = story.spec
    by_id = story.segments_by_id
    if spec.masters == "all":
        n, _ = count_paths(story)
        if n > max_branches:
            raise PlanError(
                [
                    (
                        ("spec", "masters"),
                        f"masters: all asks for {n} masters, one per path, above the limit of "
                        f"{max_branches}; use 'masters: endings' (one master per ending) or "
                        "list the paths you want",
                    )
                ]
            )
        paths = list(iter_paths(story))
    elif spec.masters == "endings":
        paths = list(first_paths(story).values())
    else:
        paths = [list(p) for p in spec.masters]

    out: list[Branch] = []
    names: dict[str, list[str]] = {}
    for path in paths:
        name = branch_name(path)
        if name in names:  # two paths, one hash: never seen, but never published over each other
            raise PlanError(
                [(("spec", "masters"), f"paths {names[name]} and {path} share the name {name!r}")]
            )
        names[name] = path
        choices: list[str] = []
        shots: list[str] = []
        task_ids: list[str] = []
        prev: str | None = None
        for i, sid in enumerate(path):
            seg = by_id[sid]
            for shot in seg.shots:
                tid = task_of[(shot.id, None if shot.continuity == "cut" else prev)]
                shots.append(shot.id)
                task_ids.append(tid)
                prev = tid
            if i + 1 < len(path):
                label = choice_label(seg, path[i + 1])
                if label is not None:
                    choices.append(label)
        out.append(Branch(name=name, segments=path, choices=choices, shots=shots, tasks=task_ids))
    return out
