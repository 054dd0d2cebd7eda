"""Ink, compiled to its JSON runtime format (``inkVersion`` 19 to 21).

The format is ink's own (``Documentation/ink_JSON_runtime_format.md`` in inkle/ink): nested
*containers* (JSON arrays whose last element holds named sub-containers), text values
(``"^text"``), control commands (``"ev"``, ``"str"``, ``"done"``...), diverts (``{"->": path}``,
``{"f()": ...}``, ``{"->t->": ...}``), choice points (``{"*": path, "flg": n}``) and tags
(``{"#": text}`` up to version 20; ``"#"`` ... ``"/#"`` from version 21).

The reader *walks* the story the way the runtime would, without evaluating anything: from the
start, and from each place a choice or divert leads to, it collects text lines (one shot per
line) until the flow stops at ``done``/``end`` (a choice when choice points were met, else an
ending) or diverts to a knot, stitch, gather or labelled point (a ``next``). Knots, stitches,
gathers and choice bodies become segments. Logic is never evaluated:

* a conditional whose branch only holds text keeps that branch's text (as if each condition
  held; a sequence shows its first element) and the importer lists it;
* a conditional whose branch changes the flow (a divert, a choice, an end) becomes a choice
  between "if ..." and "otherwise", each conditional (``--all-options``);
* a conditional choice (flag 0x1) is a conditional option; an invisible default choice
  (flag 0x8) is the ``next`` when it is the only way on, and is listed otherwise;
* tunnels and threads whose content is text only are inlined; others are listed; functions
  called for their text are inlined, those called for a value are skipped;
* variables, printed values and external functions are listed as lost.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from orchestrator.spec.errors import Problem

from ._graph import MAX_NODES, Link, Node, Para, SourceGraph, parse_steer

FORMAT = "ink"
VERSIONS = (19, 20, 21)
MAX_DEPTH = 200
MAX_STEPS = 200_000
"""Steps one walk (one segment, one probe) may take: ink with an internal loop cannot hang us."""
_INTERNAL = re.compile(r"^(b|s|s\d+|\$r\d*|\d+)$")
_GLUE = {"<>", "G>", "G<"}


class _Malformed(Exception):
    def __init__(self, where: str, message: str) -> None:
        self.where = where
        super().__init__(message)


class _C:
    """A container: content, named sub-containers, its place in the tree."""

    __slots__ = ("content", "named", "name", "parent", "index", "path", "flags")

    def __init__(self, name: str | None, parent: _C | None, index: int | None, path: str):
        self.content: list[Any] = []
        self.named: dict[str, _C] = {}
        self.name = name
        self.parent = parent
        self.index = index  # position in the parent's content, None when only named
        self.path = path
        self.flags = 0


def _build(raw: Any, name: str | None, parent: _C | None, index: int | None, path: str,
           depth: int) -> _C:
    if depth > MAX_DEPTH:
        raise _Malformed(path, f"containers nested deeper than {MAX_DEPTH} levels")
    if not isinstance(raw, list) or not raw:
        raise _Malformed(path, "a container must be a non-empty JSON array")
    c = _C(name, parent, index, path)
    tail = raw[-1]
    items = raw[:-1]
    if tail is not None and not isinstance(tail, dict):
        raise _Malformed(path, "a container's last element must be null or an object")
    for i, item in enumerate(items):
        if isinstance(item, list):
            sub_name = item[-1].get("#n") if item and isinstance(item[-1], dict) else None
            if sub_name is not None and not isinstance(sub_name, str):
                raise _Malformed(path, "#n must be a string")
            part = sub_name or str(i)  # a labelled container is known by its label
            sub = _build(item, sub_name, c, i, f"{path}.{part}" if path else part, depth + 1)
            c.content.append(sub)
            if sub_name:
                c.named[sub_name] = sub
        else:
            c.content.append(item)
    if isinstance(tail, dict):
        for key, value in tail.items():
            if key == "#f":
                c.flags = value if isinstance(value, int) else 0
            elif key == "#n":
                c.name = value if isinstance(value, str) else c.name
            else:
                sub_path = f"{path}.{key}" if path else key
                c.named[key] = _build(value, key, c, None, sub_path, depth + 1)
    return c


@dataclass(frozen=True)
class _Ptr:
    c: _C
    i: int

    @property
    def path(self) -> str:
        return self.c.path if self.i == 0 else f"{self.c.path}:{self.i}"


def _resolve(root: _C, here: _C, path: str) -> _Ptr | None:
    """Resolve an ink path (absolute, or relative to ``here``, the container of the object)."""
    if not isinstance(path, str) or not path:
        return None
    if path.startswith("."):
        comps = path[1:].split(".")
        cur: _C | None = here
        if comps and comps[0] == "^":
            comps = comps[1:]  # the first ^ goes from the object to its container
    else:
        comps = path.split(".")
        cur = root
    for k, comp in enumerate(comps):
        if cur is None:
            return None
        if comp == "^":
            cur = cur.parent
        elif comp.isdigit():
            i = int(comp)
            if i >= len(cur.content):
                return _Ptr(cur, i) if k == len(comps) - 1 and i == len(cur.content) else None
            item = cur.content[i]
            if isinstance(item, _C):
                cur = item
            elif k == len(comps) - 1:
                return _Ptr(cur, i)
            else:
                return None
        else:
            cur = cur.named.get(comp)
    return _Ptr(cur, 0) if cur is not None else None


def _is_location(p: _Ptr) -> bool:
    """A place a segment can start: a knot, stitch, gather, choice body or label."""
    return p.i == 0 and p.c.name is not None and not _INTERNAL.match(p.c.name) and (
        p.c.parent is not None
    )


def _readable(p: _Ptr) -> str:
    """``start.0.g-0.c-1`` → ``start.g-0.c-1``; a point inside a container gets ``@n``."""
    parts = [x for x in p.c.path.split(".") if x and not x.isdigit()]
    name = ".".join(parts) or "story"
    return name if p.i == 0 else f"{name}.at-{p.i}"


def _origin(p: _Ptr) -> str:
    """The knot (and stitch) a place belongs to, as the writer named them."""
    parts = [x for x in p.c.path.split(".") if x and not x.isdigit()]
    keep = []
    for x in parts:
        if re.match(r"^(c|g)-\d+$", x) or _INTERNAL.match(x):
            break
        keep.append(x)
    return ".".join(keep[:2]) or "story"


@dataclass
class _Exit:
    kind: str  # "end", "next", "split"; for probes and inlined parts also "ret", "flow"
    target: _Ptr | None = None
    branches: list[tuple[str, _Ptr, str | None]] = field(default_factory=list)


@dataclass
class _Walk:
    """What one walk produced: lines, choices, and how it left."""

    paras: list[Para] = field(default_factory=list)
    choices: list[tuple[str, _Ptr, str | None, bool]] = field(default_factory=list)
    exit: _Exit = field(default_factory=lambda: _Exit("end"))
    conditionals: int = 0
    printed: int = 0


class _Reader:
    def __init__(self, graph: SourceGraph, root: _C) -> None:
        self.graph = graph
        self.root = root
        self.lost_once: set[str] = set()
        self.called: set[str] = set()
        self.variables: set[str] = set()
        self.tags: dict[str, int] = {}
        self.choice_points: set[tuple[str, int]] = set()

    def lose(self, where: str, message: str) -> None:
        if message not in self.lost_once:
            self.lost_once.add(message)
            self.graph.losses.append(Problem(self.graph.file, None, None, where, message))

    # -- walking --------------------------------------------------------------------------

    def walk(self, start: _Ptr, mode: str = "segment") -> _Walk:
        """Walk from ``start``. Modes: ``segment`` (a segment of the story), ``inline`` (a
        tunnel, thread or function, to be inlined when it holds only text), ``probe`` (a
        conditional branch: text only until it rejoins, or does it change the flow?)."""
        out = _Walk()
        buf: list[str] = []
        steer: dict = {}
        pending: dict = {}
        glue = [False]
        ev = 0
        captures: list[list[str]] = []
        strings: list[str] = []
        targets: list[str] = []
        temps: dict[str, str] = {}
        refs: list[str] = []
        last_refs: list[str] = []
        tag: list[str] | None = None
        stack: list[tuple[str, _Ptr]] = []  # (kind, return pointer)
        branch_root = start.c if mode == "probe" else None
        ptr = start
        steps = 0

        def flush() -> None:
            text = " ".join("".join(buf).split())
            if text:
                st = dict(pending)
                st.update(steer)
                out.paras.append(Para(text, None, st))
                pending.clear()
                steer.clear()
            buf.clear()

        def emit(text: str) -> None:
            if glue[0] and not buf and out.paras and not text.isspace():
                # glue joins this text to the line before
                prev = out.paras.pop()
                buf.append(prev.text + " ")
                steer.update(prev.steer)
            glue[0] = False
            buf.append(text)

        def condition() -> str:
            return ", ".join(dict.fromkeys(last_refs)) or "not named in the source"

        def inside(c: _C | None, root: _C) -> bool:
            while c is not None:
                if c is root:
                    return True
                c = c.parent
            return False

        while True:
            steps += 1
            if steps > MAX_STEPS:
                raise _Malformed(start.path, f"the flow from here runs more than {MAX_STEPS} "
                                 "steps without stopping")
            if ptr.i >= len(ptr.c.content):
                # ran off the end of a container
                c = ptr.c
                if c.index is not None and c.parent is not None:
                    ptr = _Ptr(c.parent, c.index + 1)
                    continue
                if stack:
                    _kind, ptr = stack.pop()
                    continue
                flush()
                out.exit = _Exit("ret" if mode == "inline" else "end")
                return out
            x = ptr.c.content[ptr.i]
            here = ptr.c
            ptr = _Ptr(ptr.c, ptr.i + 1)
            if isinstance(x, _C):
                ptr = _Ptr(x, 0)
                continue
            if isinstance(x, str):
                if x.startswith("^"):
                    text = x[1:]
                    if tag is not None:
                        tag.append(text)
                    elif captures:
                        captures[-1].append(text)
                    elif ev:
                        strings.append(text)
                    else:
                        emit(text)
                elif x == "\n":
                    if captures:
                        captures[-1].append(" ")
                    elif not ev and tag is None:
                        if glue[0]:
                            continue
                        flush()
                elif x in _GLUE:
                    glue[0] = True
                elif x == "ev":
                    ev += 1
                    refs = []
                elif x == "/ev":
                    ev = max(0, ev - 1)
                    last_refs = refs
                elif x == "str":
                    captures.append([])
                elif x == "/str":
                    if captures:
                        strings.append(" ".join("".join(captures.pop()).split()))
                elif x == "#":
                    tag = []
                elif x == "/#":
                    if tag is not None:
                        self.tag("".join(tag).strip(), buf, steer, pending, here)
                    tag = None
                elif x in ("done", "end"):
                    if mode == "probe":
                        out.exit = _Exit("flow")
                        return out
                    if mode == "inline" and x == "done" and stack == []:
                        flush()
                        out.exit = _Exit("ret")
                        return out
                    if mode == "inline":
                        out.exit = _Exit("flow")
                        return out
                    flush()
                    out.exit = _Exit("end")
                    return out
                elif x == "->->":
                    if stack:
                        _kind, ptr = stack.pop()
                        continue
                    if mode == "inline":
                        flush()
                        out.exit = _Exit("ret")
                        return out
                    self.lose(_readable(ptr), "a tunnel return (->->) reached outside a "
                              "tunnel ends the flow")
                    flush()
                    out.exit = _Exit("end")
                    return out
                elif x == "~ret":
                    if stack:
                        _kind, ptr = stack.pop()
                        continue
                    flush()
                    out.exit = _Exit("ret" if mode == "inline" else "end")
                    return out
                elif x == "thread":
                    nxt = ptr.c.content[ptr.i] if ptr.i < len(ptr.c.content) else None
                    ptr = _Ptr(ptr.c, ptr.i + 1)
                    if mode == "probe":
                        out.exit = _Exit("flow")
                        return out
                    self.graph.count("threads")
                    tgt = (_resolve(self.root, ptr.c, nxt.get("->")) if isinstance(nxt, dict)
                           else None)
                    if tgt is None:
                        self.lose(_readable(ptr), "a thread whose target cannot be read")
                        continue
                    self.called.add(tgt.c.path)
                    sub = self.walk(tgt, "thread")
                    flush()
                    out.paras.extend(sub.paras)
                    out.choices.extend(sub.choices)
                    out.conditionals += sub.conditionals
                    out.printed += sub.printed
                    if sub.exit.kind not in ("end", "ret"):
                        self.lose(_readable(tgt), f"the thread {_readable(tgt)} diverts or "
                                  "branches on a condition; only its text and choices are kept")
                elif x == "out" and not ev:
                    out.printed += 1
                # other strings (list values, unknown commands) are values: ignored
                continue
            if isinstance(x, dict):
                if "^->" in x:
                    if ev:
                        targets.append(x["^->"])
                    continue
                if "temp=" in x or "VAR=" in x:
                    var = x.get("temp=") or x.get("VAR=")
                    if targets and isinstance(var, str):
                        temps[var] = targets.pop()
                    elif isinstance(var, str) and not var.startswith("$"):
                        self.variables.add(var)
                    continue
                if "VAR?" in x:
                    refs.append(str(x["VAR?"]))
                    continue
                if "CNT?" in x:
                    counted = _resolve(self.root, here, x["CNT?"])
                    refs.append(f"visits of {_readable(counted) if counted else x['CNT?']}")
                    continue
                if "#" in x:
                    self.tag(str(x["#"]).strip(), buf, steer, pending, here)
                    continue
                if "*" in x:
                    flg = x.get("flg", 0) if isinstance(x.get("flg", 0), int) else 0
                    only = strings.pop() if flg & 4 and strings else ""
                    start_text = strings.pop() if flg & 2 and strings else ""
                    label = " ".join((start_text + only).split())
                    cond = condition() if flg & 1 else None
                    tgt = _resolve(self.root, here, x["*"])
                    if tgt is None:
                        raise _Malformed(here.path, f"choice target {x['*']!r} is not in the "
                                         "story")
                    if mode == "probe":
                        out.exit = _Exit("flow")
                        return out
                    at = (here.path, ptr.i - 1)
                    if at not in self.choice_points:
                        self.choice_points.add(at)
                        self.graph.count("choices")
                        if flg & 8:
                            self.graph.count("fallback choices")
                    out.choices.append((label, tgt, cond, bool(flg & 8)))
                    last_refs = []
                    continue
                if "->" in x:
                    if x.get("var"):
                        name = x["->"]
                        if name in temps:
                            tgt = _resolve(self.root, here, temps[name])
                        else:
                            self.lose(_readable(ptr), f"a divert to the variable {name} "
                                      "cannot be followed; the flow ends there")
                            flush()
                            out.exit = _Exit("end" if mode == "segment" else "flow")
                            return out
                    else:
                        tgt = _resolve(self.root, here, x["->"])
                    if tgt is None:
                        raise _Malformed(here.path, f"divert target {x['->']!r} is not in the "
                                         "story")
                    if x.get("c"):
                        # a conditional: text-only branches are kept, others become a choice
                        if mode == "probe" or self.text_only(tgt):
                            out.conditionals += 1
                            ptr = tgt
                            continue
                        if mode != "segment":
                            out.exit = _Exit("flow")
                            return out
                        flush()
                        cond = condition()
                        self.graph.count("conditional diverts")
                        out.exit = _Exit("split", None, [
                            (f"if {cond}", tgt, cond),
                            ("otherwise", ptr, f"not ({cond})")])
                        return out
                    if mode == "probe" and branch_root is not None:
                        if _is_location(tgt):
                            out.exit = _Exit("flow")
                            return out
                        if not inside(tgt.c, branch_root):
                            out.exit = _Exit("ret")  # rejoins: the branch was text only
                            return out
                        ptr = tgt
                        continue
                    if _is_location(tgt) and not stack:
                        if mode == "thread":
                            self.lose(_readable(tgt), "a thread diverts on; its text and "
                                      "choices up to the divert are kept")
                            flush()
                            out.exit = _Exit("end")
                            return out
                        if mode == "inline":
                            out.exit = _Exit("flow")
                            return out
                        flush()
                        if out.choices:
                            self.lose(_readable(tgt), "a divert after choices is not followed; "
                                      "the choices are offered")
                            out.exit = _Exit("end")
                        else:
                            out.exit = _Exit("next", tgt)
                        return out
                    if _is_location(tgt) and stack:
                        # a divert inside a function or tunnel leaves it
                        if mode in ("probe", "inline"):
                            out.exit = _Exit("flow")
                            return out
                        stack.clear()
                        flush()
                        out.exit = _Exit("next", tgt)
                        return out
                    ptr = tgt
                    continue
                if "f()" in x:
                    tgt = _resolve(self.root, here, x["f()"])
                    if tgt is None:
                        raise _Malformed(here.path, f"function {x['f()']!r} is not in the story")
                    self.called.add(tgt.c.path)
                    if ev and not captures:
                        continue  # called for its value
                    stack.append(("f", ptr))
                    ptr = tgt
                    continue
                if "->t->" in x:
                    if mode != "probe":
                        self.graph.count("tunnels")
                    tgt = (None if x.get("var") else _resolve(self.root, here, x["->t->"]))
                    if tgt is None:
                        self.lose(_readable(ptr), "a tunnel to a variable target is not "
                                  "followed")
                        continue
                    self.called.add(tgt.c.path)
                    if mode == "probe":
                        out.exit = _Exit("flow")
                        return out
                    sub = self.walk(tgt, "inline")
                    if sub.exit.kind == "ret" and not sub.choices:
                        flush()
                        out.paras.extend(sub.paras)
                        out.conditionals += sub.conditionals
                        self.graph.count("tunnels inlined")
                    else:
                        self.lose(_readable(tgt), f"the tunnel {_readable(tgt)} has choices "
                                  "or diverts, so it cannot be shown inline; not followed")
                    continue
                if "x()" in x:
                    self.lose(_readable(ptr), f"external function {x['x()']}() is not run")
                    continue
                continue
            # numbers, booleans, null: values for the evaluation stack
        # unreachable

    def text_only(self, tgt: _Ptr) -> bool:
        try:
            probe = self.walk(tgt, "probe")
        except _Malformed:
            return False
        return probe.exit.kind in ("ret", "end") and not probe.choices

    def tag(self, text: str, buf: list[str], steer: dict, pending: dict, here: _C) -> None:
        s = parse_steer(text, self.graph, None)
        if s is None:
            self.tags[text] = self.tags.get(text, 0) + 1
            return
        if "".join(buf).strip():
            steer.update(s)  # a tag on a line steers that line
        else:
            pending.update(s)  # a tag on its own line steers the next line


def _check_version(data: Any) -> int:
    if not isinstance(data, dict):
        raise _Malformed("", "not an ink story: the top level must be a JSON object")
    v = data.get("inkVersion")
    if not isinstance(v, int) or isinstance(v, bool):
        raise _Malformed("", "not an ink story: no inkVersion")
    if v not in VERSIONS:
        raise _Malformed("", f"inkVersion {v} is not supported (19 to 21: compile with a "
                         "current inklecate or inkjs)")
    if "root" not in data:
        raise _Malformed("", "not an ink story: no root container")
    return v


def read(file: str, text: str) -> SourceGraph:
    graph = SourceGraph(file=file, format=FORMAT)
    try:
        data = json.loads(text)
    except RecursionError:
        graph.fail(None, "JSON nested too deeply")
        return graph
    except json.JSONDecodeError as exc:
        graph.fail(exc.lineno, f"not valid JSON: {exc.msg} (column {exc.colno})")
        return graph
    try:
        version = _check_version(data)
        root = _build(data["root"], None, None, None, "", 0)
        graph.constructs["inkVersion"] = version
        _read_story(graph, root)
    except _Malformed as exc:
        graph.problems.append(Problem(file, None, None, exc.where, str(exc)))
    return graph


def _read_story(graph: SourceGraph, root: _C) -> None:
    reader = _Reader(graph, root)
    if "global decl" in root.named:
        reader.lose("global decl", "global variable declarations (VAR) are not kept")
    knots = {k: c for k, c in root.named.items() if k != "global decl"}
    graph.count("knots", len(knots))
    for c in knots.values():
        graph.count("stitches", sum(1 for n in c.named if not _INTERNAL.match(n)
                                    and not re.match(r"^(c|g)-\d+$", n)))
    start = _Ptr(root, 0)
    keys: dict[str, _Ptr] = {start.path or "story": start}
    walks: dict[str, _Walk] = {}
    order = [start.path or "story"]
    names: dict[str, str] = {order[0]: "story"}
    origins: dict[str, str] = {order[0]: "story"}

    def key_of(p: _Ptr, name: str | None = None) -> str:
        k = p.path or "story"
        if k not in keys:
            if len(keys) >= MAX_NODES:
                raise _Malformed(p.path, f"more than {MAX_NODES} segments")
            keys[k] = p
            order.append(k)
            names[k] = name or _readable(p)
            origins[k] = _origin(p)
        return k

    i = 0
    while i < len(order):
        k = order[i]
        i += 1
        w = reader.walk(keys[k], "segment")
        walks[k] = w
        for _label, tgt, _cond, _inv in w.choices:
            key_of(tgt)
        if w.exit.target is not None:
            key_of(w.exit.target)
        for label, tgt, _cond in w.exit.branches:
            # named after the segment that branches: stable whatever the compiler numbers
            key_of(tgt, f"{names[k]}.{'otherwise' if label == 'otherwise' else 'if'}")
    for k in order:
        w = walks[k]
        node = Node(key=k, name=names[k], origin=origins[k] if origins[k] != names[k] else None,
                    synthetic=k == order[0] or origins[k] != names[k])
        node.paras = w.paras
        visible = [c for c in w.choices if not c[3]]
        fallback = [c for c in w.choices if c[3]]
        if visible:
            node.links = [Link(lbl, key_of(t), None, cond) for lbl, t, cond, _ in visible]
            if fallback:
                reader.lose(names[k], "a fallback choice (an invisible default) is dropped: "
                            "the other options are always available")
        elif fallback:
            lbl, t, cond, _ = fallback[0]
            node.links = [Link(lbl, key_of(t), None, cond)]
            node.divert = cond is None
        elif w.exit.kind == "next" and w.exit.target is not None:
            node.links = [Link("", key_of(w.exit.target), None)]
            node.divert = True
        elif w.exit.kind == "split":
            node.links = [Link(lbl, key_of(t), None, cond) for lbl, t, cond in w.exit.branches]
        if w.conditionals:
            reader.lose(names[k], f"{w.conditionals} conditional or varying text(s): the "
                        "first branch of each is kept")
        if w.printed:
            reader.lose(names[k], f"{w.printed} printed value(s) (variables, function "
                        "results) are left out of the prompts")
        graph.add(node)
    graph.start = order[0]
    reached = {keys[k].c.path.split(".")[0] for k in order} | {
        p.split(".")[0] for p in reader.called}
    for name in knots:
        if name not in reached:
            reader.lose(name, f"knot {name} is never reached from the start; not imported")
    if reader.variables:
        v = sorted(reader.variables)
        reader.lose("", f"variables are not kept: {', '.join(v[:12])}"
                    + (" ..." if len(v) > 12 else ""))
    for t, n in sorted(reader.tags.items())[:50]:
        reader.lose("", f"tag #{t}" + (f" ({n} times)" if n > 1 else "") + " is not kept")
