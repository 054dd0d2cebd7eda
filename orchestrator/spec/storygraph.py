"""Rules that need the whole story, and graph helpers over its segments.

pydantic checks each field on its own; the rules here need every segment at once: ids are
unique, references resolve, everything is reachable from ``start``, some segment is an ending,
the segment graph has no cycle, the start segment's first shot does not continue from anything,
and ``masters`` paths are real paths from ``start`` to an ending.

The rules read the document as plain data (what YAML gave, or ``Story.model_dump()``), so that
the loader can run them even when some field failed pydantic's checks and report every problem
in one pass. A segment the rules cannot read (no id, a ``next`` that is not a string) makes the
story *incomplete*: the rules that would then give false alarms (dangling references,
reachability, "no ending") are skipped until it is fixed.
"""

from __future__ import annotations

import difflib
import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from typing import Any

from .errors import Loc, Problem, format_path
from .manifest import Story

Report = Callable[[Loc, str], Problem]
"""Turns a field path and a message into a :class:`Problem` (with a line, when known)."""

MAX_CYCLES_REPORTED = 20


class StoryCycleError(ValueError):
    """The segment graph has a cycle; ``cycle`` is it, first segment repeated at the end."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__("the story loops: " + " -> ".join(cycle))


# -- helpers over a valid Story ---------------------------------------------------------------


def successors(story: Story) -> dict[str, list[str]]:
    """Each segment id → the ids it leads to, the default option first; endings map to []."""
    return {seg.id: seg.successors for seg in story.spec.segments}


def predecessors(story: Story) -> dict[str, list[str]]:
    """Each segment id → the ids that lead to it, in manifest order; ``start`` maps to []."""
    out: dict[str, list[str]] = {seg.id: [] for seg in story.spec.segments}
    for seg in story.spec.segments:
        for nxt in seg.successors:
            if nxt in out and seg.id not in out[nxt]:
                out[nxt].append(seg.id)
    return out


def segment_graph(story: Story) -> dict[str, Any]:
    """The story's shape as plain data (kept in run records, drawn by ``reelfarm ui``): ``start``
    and the segments in manifest order, each with its shot ids and where it leads (``next``, or
    its choice's prompt, default and labelled options)."""
    segments = []
    for seg in story.spec.segments:
        choice = None
        if seg.choice is not None:
            choice = {"prompt": seg.choice.prompt, "default": seg.choice.default,
                      "options": [{"label": o.label, "next": o.next}
                                  for o in seg.choice.options]}
        segments.append({"id": seg.id, "shots": [s.id for s in seg.shots], "next": seg.next,
                         "choice": choice})
    return {"start": story.spec.start, "segments": segments}


def topological_order(story: Story) -> list[str]:
    """Every segment id, each after all segments that lead to it; ties keep manifest order.

    Raises :class:`StoryCycleError` if the segments form a cycle (a validated story does not).
    """
    succ = successors(story)
    order_of = {seg_id: i for i, seg_id in enumerate(succ)}
    sorter = _sorter({s: [t for t in ts if t in succ] for s, ts in succ.items()})
    try:
        sorter.prepare()
    except CycleError as e:
        raise StoryCycleError(_cycle_of(e, succ, order_of)) from None
    ready: list[tuple[int, str]] = []
    out: list[str] = []
    while sorter.is_active():
        for seg_id in sorter.get_ready():
            heapq.heappush(ready, (order_of[seg_id], seg_id))
        _, seg_id = heapq.heappop(ready)
        out.append(seg_id)
        sorter.done(seg_id)
    return out


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or ``None`` when it is acyclic.

    The cycle starts at its segment that comes first in ``graph``'s order.
    """
    succ = {k: [t for t in v if t in graph] for k, v in graph.items()}
    try:
        _sorter(succ).prepare()
    except CycleError as e:
        return _cycle_of(e, succ, {k: i for i, k in enumerate(succ)})
    return None


def _sorter(succ: Mapping[str, Iterable[str]]) -> TopologicalSorter[str]:
    sorter: TopologicalSorter[str] = TopologicalSorter()
    for seg_id, targets in succ.items():
        sorter.add(seg_id)
        for t in targets:
            sorter.add(t, seg_id)
    return sorter


def _cycle_of(
    error: CycleError, succ: Mapping[str, Iterable[str]], order_of: Mapping[str, int]
) -> list[str]:
    """graphlib's cycle, in edge direction, rotated to start at its first segment in order."""
    nodes = list(error.args[1][:-1])
    if len(nodes) > 1 and nodes[1] not in succ[nodes[0]]:
        nodes.reverse()
    i = min(range(len(nodes)), key=lambda k: order_of[nodes[k]])
    nodes = nodes[i:] + nodes[:i]
    return [*nodes, nodes[0]]


def _cycles(
    edges: Mapping[str, list[tuple[str, Loc]]], order_of: Mapping[str, int]
) -> Iterator[tuple[Loc, list[str]]]:
    """Each cycle with the edge that closes it (its last step back to its first segment).

    graphlib finds one cycle at a time; removing the closing edge lets it find the next.
    """
    live = {s: list(ts) for s, ts in edges.items()}
    while True:
        succ = {s: [t for t, _loc in ts] for s, ts in live.items()}
        try:
            _sorter(succ).prepare()
            return
        except CycleError as e:
            cycle = _cycle_of(e, succ, order_of)
        last, first = cycle[-2], cycle[-1]
        k = next(k for k, (t, _loc) in enumerate(live[last]) if t == first)
        _target, loc = live[last].pop(k)
        yield loc, cycle


# -- the rules --------------------------------------------------------------------------------


@dataclass
class _Segment:
    index: int
    id: str
    edges: list[tuple[str, Loc]] = field(default_factory=list)
    is_ending: bool = False
    first_continuity: Any = None
    shots: list[tuple[Loc, str]] = field(default_factory=list)

    @property
    def loc(self) -> Loc:
        return ("spec", "segments", self.index)


@dataclass
class _Graph:
    segments: list[_Segment]
    start: Any
    masters: Any
    all_ids: bool  # every segment has a readable id: a reference to no segment is dangling
    all_exits: bool  # and every next / option could be read: the edges are all known

    @classmethod
    def read(cls, data: Any) -> _Graph:
        spec = data.get("spec") if isinstance(data, Mapping) else None
        if not isinstance(spec, Mapping):
            return cls([], None, None, all_ids=False, all_exits=False)
        raw_segments = spec.get("segments")
        if not isinstance(raw_segments, list):
            return cls([], spec.get("start"), spec.get("masters"), all_ids=False, all_exits=False)
        all_ids = all_exits = True
        segments = []
        for i, raw in enumerate(raw_segments):
            seg = _read_segment(i, raw)
            if seg is None:
                all_ids = False
                continue
            segments.append(seg)
            all_exits = all_exits and _well_formed_exits(raw)
        return cls(segments, spec.get("start"), spec.get("masters"), all_ids, all_ids and all_exits)


def _read_segment(index: int, raw: Any) -> _Segment | None:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str):
        return None
    seg = _Segment(index, raw["id"])
    here = seg.loc
    nxt, choice = raw.get("next"), raw.get("choice")
    seg.is_ending = nxt is None and choice is None
    if isinstance(nxt, str):
        seg.edges.append((nxt, here + ("next",)))
    options = choice.get("options") if isinstance(choice, Mapping) else None
    if isinstance(options, list):
        for k, opt in enumerate(options):
            if isinstance(opt, Mapping) and isinstance(opt.get("next"), str):
                seg.edges.append((opt["next"], here + ("choice", "options", k, "next")))
    shots = raw.get("shots")
    if isinstance(shots, list):
        for k, shot in enumerate(shots):
            if not isinstance(shot, Mapping):
                continue
            if k == 0:
                seg.first_continuity = shot.get("continuity")
            if isinstance(shot.get("id"), str):
                seg.shots.append((here + ("shots", k, "id"), shot["id"]))
    return seg


def _well_formed_exits(raw: Mapping[str, Any]) -> bool:
    nxt, choice = raw.get("next"), raw.get("choice")
    if nxt is not None and not isinstance(nxt, str):
        return False
    if choice is None:
        return True
    options = choice.get("options") if isinstance(choice, Mapping) else None
    if not isinstance(options, list) or not options:
        return False
    return all(isinstance(o, Mapping) and isinstance(o.get("next"), str) for o in options)


def _default_report(loc: Loc, message: str) -> Problem:
    return Problem("<story>", None, None, format_path(loc), message)


def check_story(story: Story, report: Report | None = None) -> list[Problem]:
    """Every whole-story problem of a (field-valid) ``story``; [] when it is sound."""
    return check_data(story.model_dump(mode="python"), report)


def check_data(data: Any, report: Report | None = None) -> list[Problem]:
    """Every whole-story problem of a manifest given as plain data (dicts and lists).

    Tolerates data that failed field validation: what cannot be read is skipped, never guessed.
    """
    report = report or _default_report
    graph = _Graph.read(data)
    found: list[Problem] = []

    def add(loc: Loc, message: str) -> None:
        found.append(report(loc, message))

    by_id: dict[str, _Segment] = {}
    for seg in graph.segments:
        if seg.id in by_id:
            first = format_path(by_id[seg.id].loc)
            add(seg.loc + ("id",), f"duplicate segment id {seg.id!r} (first at {first})")
        else:
            by_id[seg.id] = seg
    _check_shot_ids(graph, add)

    start_ok = isinstance(graph.start, str) and graph.start in by_id
    if graph.all_ids:
        if isinstance(graph.start, str) and not start_ok:
            add(("spec", "start"), _unknown_segment(graph.start, by_id))
        for seg in graph.segments:
            for target, loc in seg.edges:
                if target not in by_id:
                    add(loc, _unknown_segment(target, by_id))

    if start_ok and by_id[graph.start].first_continuity == "previous":
        add(
            by_id[graph.start].loc + ("shots", 0, "continuity"),
            f"the first shot of the start segment {graph.start!r} has no shot before it to "
            "continue from; use 'cut'",
        )
    if graph.all_exits and graph.segments and not any(s.is_ending for s in graph.segments):
        add(
            ("spec", "segments"),
            "no segment is an ending: at least one segment needs neither next nor choice",
        )

    edges = {
        s.id: [(t, loc) for t, loc in s.edges if t in by_id]
        for s in graph.segments
        if by_id[s.id] is s
    }
    order_of = {s.id: i for i, s in reversed(list(enumerate(graph.segments)))}
    cycles = sorted(itertools.islice(_cycles(edges, order_of), MAX_CYCLES_REPORTED))
    for loc, cycle in cycles:
        add(loc, f"the story loops: {' -> '.join(cycle)} (stories must be acyclic)")

    if start_ok and graph.all_exits:
        reached = _reachable(graph.start, edges)
        for seg in graph.segments:
            if seg.id not in reached:
                add(
                    seg.loc + ("id",),
                    f"segment {seg.id!r} cannot be reached from the start segment {graph.start!r}",
                )
    if start_ok and graph.all_exits and isinstance(graph.masters, list):
        _check_masters(graph.masters, graph.start, by_id, add)
    return found


def _check_shot_ids(graph: _Graph, add: Callable[[Loc, str], None]) -> None:
    first_at: dict[str, Loc] = {}
    for seg in graph.segments:
        for loc, shot_id in seg.shots:
            if shot_id in first_at:
                where = format_path(first_at[shot_id][:-1])
                add(loc, f"duplicate shot id {shot_id!r} (first at {where})")
            else:
                first_at[shot_id] = loc


def _unknown_segment(target: str, by_id: Mapping[str, _Segment]) -> str:
    message = f"no segment has id {target!r}"
    close = difflib.get_close_matches(target, list(by_id), n=1)
    return message + (f"; did you mean {close[0]!r}?" if close else "")


def _reachable(start: str, edges: Mapping[str, list[tuple[str, Loc]]]) -> set[str]:
    seen = {start}
    todo = [start]
    while todo:
        for target, _loc in edges.get(todo.pop(), []):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _check_masters(
    masters: list[Any],
    start: str,
    by_id: Mapping[str, _Segment],
    add: Callable[[Loc, str], None],
) -> None:
    seen: dict[tuple[str, ...], int] = {}
    for p, path in enumerate(masters):
        if not isinstance(path, list) or not path or not all(isinstance(s, str) for s in path):
            continue
        here: Loc = ("spec", "masters", p)
        if tuple(path) in seen:
            add(here, f"the same path as {format_path(('spec', 'masters', seen[tuple(path)]))}")
            continue
        seen[tuple(path)] = p
        if path[0] != start:
            add(here + (0,), f"a path starts at the start segment {start!r}, not {path[0]!r}")
        for k, seg_id in enumerate(path):
            if seg_id not in by_id:
                add(here + (k,), _unknown_segment(seg_id, by_id))
            elif k > 0 and path[k - 1] in by_id:
                leads_to = [t for t, _loc in by_id[path[k - 1]].edges]
                if seg_id not in leads_to:
                    add(here + (k,), f"{path[k - 1]!r} does not lead to {seg_id!r}")
        last = by_id.get(path[-1])
        if last is not None and not last.is_ending:
            onward = ", ".join(repr(t) for t, _loc in last.edges)
            add(
                here + (len(path) - 1,),
                f"a path ends at an ending, but {last.id!r} leads on to {onward}",
            )
