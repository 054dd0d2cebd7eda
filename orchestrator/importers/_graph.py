"""The story graph every format is read into, and its mapping to a ``reelfarm/v1`` manifest.

A format module (:mod:`.twee`, :mod:`.twine_html`, :mod:`.yarn`, :mod:`.ink`) reads its source
into a :class:`SourceGraph`: nodes (passages, knots, nodes, choice bodies) holding paragraphs of
text and links. :func:`build_manifest` then does what is the same for every format:

* checks links, conditions and loops, and lists what cannot be mapped;
* unrolls loops to a bounded depth when asked (:func:`_unroll`);
* makes ids: valid, unique, and stable on re-import (:func:`make_ids`);
* breaks each node's text into shots (:func:`shots_for`), steered by ``shot:`` settings;
* applies the story-wide defaults and validates the result with the manifest loader.

Nothing here reads a file or runs anything from the source.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.spec.errors import Problem, format_path
from orchestrator.spec.manifest import STORY_NAME_PATTERN, Masters, Profile, RendererSpec

MAX_SOURCE_BYTES = 2 * 1024 * 1024
"""The largest source accepted, in bytes: the same limit as a manifest's."""
MAX_NODES = 5000
"""The most passages/knots/nodes (after unrolling) one import may produce."""
MAX_OPTIONS = 64
"""A manifest choice holds at most this many options."""
MAX_PROMPT = 4000
MAX_LABEL = 200
MAX_LOOPS_REPORTED = 20
MAX_UNROLL = 20
_BASE_ID_CHARS = 52  # leaves room for "--NN" (unrolled copies) and "-NNN" (shots) in 64


class ImportFailed(Exception):
    """The source cannot be imported; ``problems`` lists every reason (file:line when known)."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass
class Para:
    """One paragraph of a node's text: one shot. ``steer`` holds its ``shot:`` settings."""

    text: str
    line: int | None = None
    steer: dict[str, Any] = field(default_factory=dict)


@dataclass
class Link:
    """A way out of a node: a choice option, or the only divert (``divert=True`` on the node)."""

    label: str
    target: str
    line: int | None = None
    condition: str | None = None


@dataclass
class Node:
    """A passage, knot, stitch, node or choice body: one segment of the manifest."""

    key: str
    name: str
    line: int | None = None
    paras: list[Para] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    divert: bool = False
    """True when the node leaves by one unconditional divert (a manifest ``next``)."""
    origin: str | None = None
    """The name in the source (``source.name``) when ``name`` is a made-up part of it."""
    synthetic: bool = False
    """Made by the importer (a choice body, the text after options): when it holds no text
    and only diverts on, links to it go straight to where it leads."""


@dataclass
class SourceGraph:
    """What a format module read: nodes, the start, and what it could not map."""

    file: str
    format: str
    title: str = ""
    start: str | None = None
    nodes: dict[str, Node] = field(default_factory=dict)
    losses: list[Problem] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    constructs: dict[str, int] = field(default_factory=dict)
    """Counts of the source's constructs (passages, links, ...), for the summary and tests."""

    def lose(self, line: int | None, message: str) -> None:
        self.losses.append(Problem(self.file, line, None, "", message))

    def fail(self, line: int | None, message: str) -> None:
        self.problems.append(Problem(self.file, line, None, "", message))

    def add(self, node: Node) -> Node:
        if len(self.nodes) >= MAX_NODES:
            if not any("more than" in p.message for p in self.problems):
                self.fail(node.line, f"more than {MAX_NODES} passages; the limit is {MAX_NODES}")
        else:
            self.nodes[node.key] = node
        return node

    def count(self, what: str, n: int = 1) -> None:
        self.constructs[what] = self.constructs.get(what, 0) + n


# -- shot steering ----------------------------------------------------------------------------

_STEER_RE = re.compile(r"^\s*shot\s*:(.*)$", re.S)


def parse_steer(text: str, graph: SourceGraph, line: int | None) -> dict[str, Any] | None:
    """``shot: duration=3 continuity=previous`` → settings; ``None`` when ``text`` is not one.

    A malformed setting is a problem of the import (the writer asked for something).
    """
    m = _STEER_RE.match(text)
    if not m:
        return None
    out: dict[str, Any] = {}
    try:
        words = shlex.split(m.group(1), comments=False, posix=True)
    except ValueError as exc:
        graph.fail(line, f"shot settings: {exc}")
        return out
    for word in words:
        key, eq, value = word.partition("=")
        if not eq:
            graph.fail(line, f"shot settings: {word!r} is not key=value")
            continue
        if key == "duration":
            try:
                d = float(value)
            except ValueError:
                d = -1.0
            if not 0 < d <= 600:
                graph.fail(line, f"shot settings: duration={value} is not 0 < seconds <= 600")
                continue
            out[key] = d
        elif key == "continuity":
            if value not in ("cut", "previous"):
                graph.fail(line, f"shot settings: continuity={value} is not cut or previous")
                continue
            out[key] = value
        elif key == "seed":
            if not value.isdigit() or int(value) > 2**63 - 1:
                graph.fail(line, f"shot settings: seed={value} is not a whole number >= 0")
                continue
            out[key] = int(value)
        elif key == "prompt":
            if not value.strip():
                graph.fail(line, "shot settings: prompt is empty")
                continue
            out[key] = value.strip()
        else:
            graph.fail(
                line,
                f"shot settings: unknown setting {key!r} (duration, continuity, seed, prompt)",
            )
    return out


def tag_steer(tags: Iterable[str], graph: SourceGraph, line: int | None) -> dict[str, Any]:
    """Passage tags such as ``shot:duration=3`` or ``shot:continuity=previous``: settings for
    every shot of the passage (a comment on one paragraph still wins)."""
    out: dict[str, Any] = {}
    for tag in tags:
        if not tag.startswith("shot:"):
            continue
        s = parse_steer(tag.replace("shot:", "shot: ", 1), graph, line)
        if s and "prompt" in s:
            graph.fail(line, f"tag {tag}: a prompt is set per paragraph, not per passage")
            s.pop("prompt")
        out.update(s or {})
    return out


def apply_steer(graph: SourceGraph, by_name: dict[str, dict[str, Any]]) -> None:
    """Give every paragraph of each named passage (and the nodes made from it) its tags'
    settings, under the paragraph's own."""
    for node in graph.nodes.values():
        steer = by_name.get(node.origin or node.name)
        if steer:
            for para in node.paras:
                for k, v in steer.items():
                    para.steer.setdefault(k, v)


# -- defaults ---------------------------------------------------------------------------------


class ShotTiming(BaseModel):
    """How a paragraph's length becomes a shot's duration."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    words_per_second: float = Field(2.5, gt=0, le=100)
    min_duration: float = Field(2.0, gt=0, le=600)
    max_duration: float = Field(8.0, gt=0, le=600)


class ImportDefaults(BaseModel):
    """``--defaults FILE``: story-wide settings of the imported manifest."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str | None = Field(None, pattern=STORY_NAME_PATTERN)
    title: str | None = Field(None, max_length=500)
    profile: Profile | None = None
    renderer: RendererSpec | None = None
    seed: int = Field(0, ge=0, le=2**63 - 1)
    masters: Masters = "endings"
    shots: ShotTiming = Field(default_factory=ShotTiming)


def load_defaults(name: str, data: bytes) -> ImportDefaults:
    """Parse ``--defaults``: safe YAML, size-limited; every problem names the field."""
    import yaml

    def fail(message: str, line: int | None = None) -> ImportFailed:
        return ImportFailed([Problem(name, line, None, "", message)])

    if len(data) > 64 * 1024:
        raise fail("the defaults file is larger than 64 KiB")
    try:
        value = yaml.safe_load(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise fail("not UTF-8 text") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise fail(f"YAML: {exc.problem}", mark.line + 1 if mark else None) from None
    except yaml.YAMLError:
        raise fail("not valid YAML") from None
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise fail("the defaults must be a mapping (profile, renderer, seed, masters, shots)")
    try:
        defaults = ImportDefaults.model_validate(value)
    except ValidationError as exc:
        raise ImportFailed(
            Problem(name, None, None, format_path(tuple(e["loc"])), e["msg"])
            for e in exc.errors()
        ) from None
    t = defaults.shots
    if t.min_duration > t.max_duration:
        raise fail("shots.min_duration is larger than shots.max_duration")
    return defaults


# -- ids --------------------------------------------------------------------------------------


def slug(text: str, limit: int = _BASE_ID_CHARS) -> str:
    """A name as an id: lower case ASCII letters, digits, ``-`` and ``_``; never empty."""
    norm = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    s = re.sub(r"[^a-z0-9_]+", "-", norm).strip("-_")
    s = s[:limit].rstrip("-_")
    return s or "passage"


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:6]


def make_ids(names: dict[str, str]) -> dict[str, str]:
    """Each key → an id from its name, unique, and the same whatever else is in the story.

    A name whose slug is shared with another name (or was shortened) gets a suffix from a hash
    of its own key, so adding a passage elsewhere never renames this one.
    """
    slugs = {k: slug(n) for k, n in names.items()}
    seen: dict[str, int] = {}
    for s in slugs.values():
        seen[s] = seen.get(s, 0) + 1
    named: dict[str, int] = {}
    for n in names.values():
        named[n] = named.get(n, 0) + 1
    out: dict[str, str] = {}
    for key, name in names.items():
        s = slugs[key]
        exact = re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name) is not None and s == name
        if seen[s] > 1 and not exact:
            # from the name where it is unique (stable across compilers), else the key
            s = f"{s[: _BASE_ID_CHARS - 7]}-{_short_hash(name if named[name] == 1 else key)}"
        out[key] = s
    # two exact names cannot clash (keys are unique); a hashed one could only clash by chance
    if len(set(out.values())) != len(out):  # pragma: no cover - a sha256 prefix collision
        out = {k: f"{v[: _BASE_ID_CHARS - 7]}-{_short_hash(k + '#')}" for k, v in out.items()}
    return out


# -- the mapping ------------------------------------------------------------------------------


@dataclass
class ImportResult:
    """A manifest (as plain data) and what the import did."""

    manifest: dict[str, Any]
    losses: list[Problem]
    segments: int
    choices: int
    options: int
    endings: int
    shots: int
    unrolled: list[str]
    constructs: dict[str, int]
    text: str = ""
    """The manifest as YAML, once :func:`~orchestrator.importers.dump_manifest` has made it."""


@dataclass(frozen=True)
class Options:
    unroll: int | None = None
    all_options: bool = False
    defaults: ImportDefaults = field(default_factory=ImportDefaults)


def build_manifest(graph: SourceGraph, opts: Options) -> ImportResult:
    """Map ``graph`` to a manifest; raise :class:`ImportFailed` listing every reason it cannot."""
    problems = list(graph.problems)
    if graph.start is None or graph.start not in graph.nodes:
        if not problems:
            problems.append(Problem(graph.file, None, None, "", "the story has no passages"))
        raise ImportFailed(problems)
    losses = list(graph.losses)
    nodes = graph.nodes
    # links to nowhere cannot be options
    for node in nodes.values():
        kept = []
        for link in node.links:
            if link.target in nodes:
                kept.append(link)
            else:
                losses.append(
                    Problem(
                        graph.file,
                        link.line,
                        None,
                        "",
                        f"{node.name}: link to {link.target!r}, which is not in the story, "
                        "dropped",
                    )
                )
        node.links = kept
    _collapse(graph)
    reach = _reachable(graph.start, nodes)
    for key, node in nodes.items():
        if node.synthetic and node.origin in nodes and node.origin not in reach:
            continue  # a part of an unreachable passage, which is listed itself
        if key not in reach:
            losses.append(
                Problem(
                    graph.file,
                    node.line,
                    None,
                    "",
                    f"{node.name}: not reachable from the start; not imported",
                )
            )
    conditions = [
        Problem(
            graph.file,
            link.line,
            None,
            "",
            f"{nodes[key].name}: option {link.label!r} -> {nodes[link.target].name} "
            f"depends on a condition ({link.condition})",
        )
        for key in reach
        for link in nodes[key].links
        if link.condition is not None
    ]
    if conditions and not opts.all_options:
        problems += conditions + [Problem(
            graph.file,
            None,
            None,
            "",
            f"{len(conditions)} conditional option(s): a manifest has no conditions; "
            "--all-options makes every conditional option available",
        )]
    for c in conditions if opts.all_options else []:
        losses.append(
            Problem(c.file, c.line, None, "", c.message + ": always available (--all-options)")
        )
    order = [k for k in nodes if k in reach]
    back = _back_edges(graph.start, nodes, order)
    if back and opts.unroll is None:
        loops = [
            Problem(graph.file, line, None, "", "loop: " + " -> ".join(nodes[k].name for k in cyc))
            for line, cyc in back[:MAX_LOOPS_REPORTED]
        ]
        more = len(back) - len(loops)
        loops.append(
            Problem(
                graph.file,
                None,
                None,
                "",
                f"the story loops ({len(back)} link(s) close a loop"
                + (f", {more} not listed" if more else "")
                + "); a manifest is acyclic: --unroll N follows each loop N more times",
            )
        )
        problems += loops
    if problems:
        raise ImportFailed(problems)
    ids = make_ids({k: nodes[k].name for k in order})
    segs, unrolled = _unroll(graph, order, ids, back, opts.unroll or 0, losses)
    return _emit(graph, segs, ids, opts, losses, unrolled)


def _collapse(graph: SourceGraph) -> None:
    """Skip importer-made nodes that hold no text and only divert on (``* [Go] -> left``)."""
    nodes = graph.nodes

    def empty(key: str) -> bool:
        n = nodes.get(key)
        return (n is not None and n.synthetic and n.divert and len(n.links) == 1
                and n.links[0].condition is None
                and not any(p.text.strip() or "prompt" in p.steer for p in n.paras))

    def final(key: str) -> str:
        seen = set()
        while empty(key) and key not in seen:
            seen.add(key)
            key = nodes[key].links[0].target
        return key

    for node in nodes.values():
        for link in node.links:
            link.target = final(link.target)
    if graph.start is not None:
        graph.start = final(graph.start)
    for key in [k for k in nodes if empty(k) and k != graph.start]:
        del nodes[key]


def _reachable(start: str, nodes: dict[str, Node]) -> set[str]:
    seen = {start}
    stack = [start]
    while stack:
        for link in nodes[stack.pop()].links:
            if link.target not in seen:
                seen.add(link.target)
                stack.append(link.target)
    return seen


def _back_edges(
    start: str, nodes: dict[str, Node], order: list[str]
) -> list[tuple[int | None, list[str]]]:
    """Depth-first from ``start``: each link that closes a loop, as (its line, the loop)."""
    out: list[tuple[int | None, list[str]]] = []
    on_path: dict[str, int] = {}
    done: set[str] = set()
    path: list[str] = []
    stack: list[tuple[str, int]] = [(start, 0)]
    on_path[start] = 0
    path.append(start)
    while stack:
        key, i = stack[-1]
        links = nodes[key].links
        if i < len(links):
            stack[-1] = (key, i + 1)
            t = links[i].target
            if t in on_path:
                out.append((links[i].line, path[on_path[t] :] + [t]))
            elif t not in done:
                on_path[t] = len(path)
                path.append(t)
                stack.append((t, 0))
        else:
            stack.pop()
            path.pop()
            del on_path[key]
            done.add(key)
    return out


@dataclass
class _Seg:
    key: str  # node key
    copy: int  # 0 for the node itself, n for its n-th unrolled copy
    links: list[tuple[str, Link, tuple[str, int]]]  # (label, link, target (key, copy))


def _unroll(
    graph: SourceGraph,
    order: list[str],
    ids: dict[str, str],
    back: list[tuple[int | None, list[str]]],
    depth: int,
    losses: list[Problem],
) -> tuple[dict[tuple[str, int], _Seg], list[str]]:
    """The segment graph, with each loop followed ``depth`` more times and then cut.

    A link that closes a loop (a back edge of a depth-first search from the start) leads from
    copy ``n`` of a node to copy ``n + 1`` of its target; from the last copy it is dropped (and
    listed). Every other link keeps its copy number inside the loop's strongly connected part,
    and leads to copy 0 outside it. The result has no cycle: within one copy number only
    forward links remain, and a back link always raises the copy number.
    """
    nodes = graph.nodes
    back_set = {(cyc[-2], cyc[-1]) for _line, cyc in back}
    comp = _components(order, nodes)
    segs: dict[tuple[str, int], _Seg] = {}
    work = [(graph.start, 0)]  # type: ignore[list-item]
    unrolled: list[str] = []
    dropped: set[tuple[str, str]] = set()
    while work:
        key, copy = work.pop()
        if (key, copy) in segs:
            continue
        if len(segs) >= MAX_NODES:
            raise ImportFailed(
                [
                    Problem(
                        graph.file,
                        None,
                        None,
                        "",
                        f"unrolling gives more than {MAX_NODES} segments; use a smaller --unroll",
                    )
                ]
            )
        seg = _Seg(key, copy, [])
        segs[(key, copy)] = seg
        if copy:
            unrolled.append(f"{ids[key]}--{copy + 1}")
        for link in nodes[key].links:
            t = link.target
            if (key, t) in back_set:
                if copy >= depth:
                    if (key, t) not in dropped:
                        dropped.add((key, t))
                        losses.append(
                            Problem(
                                graph.file,
                                link.line,
                                None,
                                "",
                                f"{nodes[key].name}: link {link.label or nodes[t].name!r} back to "
                                f"{nodes[t].name} closes a loop; dropped after "
                                f"{depth} time(s) round (--unroll {depth})",
                            )
                        )
                    continue
                tgt = (t, copy + 1)
            elif comp[t] == comp[key]:
                tgt = (t, copy)
            else:
                tgt = (t, 0)
            seg.links.append((link.label, link, tgt))
            work.append(tgt)
    return segs, unrolled


def _components(order: list[str], nodes: dict[str, Node]) -> dict[str, int]:
    """Strongly connected components (Tarjan, iterative): node key → component number."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    comp: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    counter = 0
    for root in order:
        if root in index:
            continue
        work = [(root, 0)]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, i = work[-1]
            links = [lk.target for lk in nodes[v].links if lk.target in nodes]
            if i < len(links):
                work[-1] = (v, i + 1)
                w = links[i]
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, 0))
                elif w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    u = work[-1][0]
                    low[u] = min(low[u], low[v])
                if low[v] == index[v]:
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp[w] = index[v]
                        if w == v:
                            break
    return comp


def _seg_id(ids: dict[str, str], key: str, copy: int) -> str:
    return ids[key] if copy == 0 else f"{ids[key]}--{copy + 1}"


def shots_for(
    node: Node, seg_id: str, timing: ShotTiming, graph: SourceGraph, losses: list[Problem]
) -> list[dict[str, Any]]:
    """A node's paragraphs as shots: one per paragraph, duration from its word count.

    ``duration = words / words_per_second``, rounded to a tenth of a second and held within
    ``[min_duration, max_duration]``; a ``shot:`` setting overrides any field. A node without
    text gets one shot whose prompt is its name.
    """
    paras = [p for p in node.paras if p.text.strip() or "prompt" in p.steer]
    if not paras:
        text = node.name
        if node.synthetic and node.links and not node.divert:
            # the text after options, empty: a shot of the choice itself
            text = f"{node.origin or node.name}: " + " / ".join(
                lk.label for lk in node.links if lk.label)
        paras = [Para(text, node.line)]
    if len(paras) > 999:
        losses.append(
            Problem(graph.file, node.line, None, "", f"{node.name}: more than 999 paragraphs; "
                    "the rest are not imported")
        )
        paras = paras[:999]
    shots = []
    for i, p in enumerate(paras, 1):
        text = " ".join(p.text.split())
        prompt = p.steer.get("prompt", text) or node.name
        if len(prompt) > MAX_PROMPT:
            losses.append(
                Problem(graph.file, p.line, None, "", f"{node.name}: a paragraph longer than "
                        f"{MAX_PROMPT} characters is cut to fit a prompt")
            )
            prompt = prompt[:MAX_PROMPT]
        words = len(text.split())
        d = round(words / timing.words_per_second, 1)
        d = min(max(d, timing.min_duration), timing.max_duration)
        shot: dict[str, Any] = {"id": f"{seg_id}-{i}", "prompt": prompt,
                                "duration": p.steer.get("duration", d)}
        if "continuity" in p.steer:
            shot["continuity"] = p.steer["continuity"]
        if "seed" in p.steer:
            shot["seed"] = p.steer["seed"]
        shots.append(shot)
    return shots


def _label(text: str) -> str:
    label = " ".join(text.split())
    return label[:MAX_LABEL] if label else ""


def _emit(
    graph: SourceGraph,
    segs: dict[tuple[str, int], _Seg],
    ids: dict[str, str],
    opts: Options,
    losses: list[Problem],
    unrolled: list[str],
) -> ImportResult:
    nodes = graph.nodes
    d = opts.defaults
    out_segments: list[dict[str, Any]] = []
    n_choices = n_options = n_endings = n_shots = 0
    # manifest order: source order, each node's copies after it
    rank = {k: i for i, k in enumerate(nodes)}
    for (key, copy), seg in sorted(segs.items(), key=lambda kv: (kv[0][1] > 0, rank[kv[0][0]],
                                                               kv[0][1])):
        node = nodes[key]
        sid = _seg_id(ids, key, copy)
        doc: dict[str, Any] = {"id": sid}
        doc["shots"] = shots_for(node, sid, d.shots, graph, losses if copy == 0 else [])
        n_shots += len(doc["shots"])
        source: dict[str, Any] = {"file": graph.file[-500:],
                                  "name": (node.origin or node.name)[:500]}
        if node.line is not None:
            source["line"] = node.line
        if len(seg.links) == 1 and node.divert:
            doc["next"] = _seg_id(ids, *seg.links[0][2])
        elif seg.links:
            options = []
            used: set[str] = set()
            for label, _link, tgt in seg.links:
                base = _label(label) or nodes[tgt[0]].name[:MAX_LABEL]
                lab, n = base, 2
                while lab in used:
                    suffix = f" ({n})"
                    lab = base[: MAX_LABEL - len(suffix)] + suffix
                    n += 1
                used.add(lab)
                options.append({"label": lab, "next": _seg_id(ids, *tgt)})
            if len(options) > MAX_OPTIONS:
                raise ImportFailed(
                    [Problem(graph.file, node.line, None, "",
                             f"{node.name}: {len(options)} options; a choice holds at most "
                             f"{MAX_OPTIONS}")]
                )
            choice: dict[str, Any] = {"options": options}
            doc["choice"] = choice
            n_choices += 1
            n_options += len(options)
        else:
            n_endings += 1
        doc["source"] = source
        out_segments.append(doc)
    spec: dict[str, Any] = {}
    if d.profile is not None:
        spec["profile"] = d.profile.model_dump(exclude_defaults=False)
    if d.renderer is not None:
        spec["renderer"] = d.renderer.model_dump(exclude_none=True)
    spec["seed"] = d.seed
    spec["start"] = ids[graph.start]  # type: ignore[index]
    spec["masters"] = d.masters
    spec["segments"] = out_segments
    title = d.title if d.title is not None else (graph.title or _stem(graph.file))
    name = d.name or _story_name(graph.title or _stem(graph.file))
    manifest = {
        "apiVersion": "reelfarm/v1",
        "kind": "Story",
        "metadata": {"name": name, "title": title[:500]},
        "spec": spec,
    }
    return ImportResult(
        manifest=manifest,
        losses=sorted(losses, key=lambda p: (p.line or 0)),
        segments=len(out_segments),
        choices=n_choices,
        options=n_options,
        endings=n_endings,
        shots=n_shots,
        unrolled=unrolled,
        constructs=dict(graph.constructs),
    )


def _stem(path: str) -> str:
    base = re.split(r"[\\/]", path)[-1]
    return base.split(".")[0] or "story"


def _story_name(text: str) -> str:
    s = slug(text, 63).replace("_", "-").strip("-")
    s = re.sub(r"-{2,}", "-", s)
    return s or "story"
