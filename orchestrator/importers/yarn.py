"""Yarn Spinner (``.yarn``, versions 1 to 3): nodes of headers, ``---``, body, ``===``.

A small line tokenizer of our own (Yarn's grammar is line-based): headers (``title:``,
``tags:``, ``when:``...) up to ``---``, then body lines up to ``===``. In a body:

* ``-> option`` lines at one indent form an option group; each option's body is the lines
  indented under it; ``<<if cond>>`` after an option's text is its condition;
* ``<<jump Node>>``, ``<<stop>>``, ``<<detour Node>>`` / ``<<return>>``;
* ``<<if>>`` / ``<<elseif>>`` / ``<<else>>`` / ``<<endif>>``;
* ``=> line`` line groups (one line is picked at run time);
* Yarn 1's ``[[Option|Node]]`` and ``[[Node]]`` links;
* ``// shot: duration=3`` comments steer the next line's shot; other comments are dropped;
* every other command (``<<set>>``, ``<<declare>>``, ``<<wait>>``, custom ones) is listed
  as lost, never run.

Nodes that share a title and carry ``when:`` headers form a node group (storylets): a jump to
the group is a choice among its members, each conditional on its ``when:``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ._graph import Link, Node, Para, SourceGraph, apply_steer, parse_steer, tag_steer

FORMAT = "yarn"
MAX_DEPTH = 64
_CMD = re.compile(r"<<\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(.*?)\s*>>\s*$")
_OPT_COND = re.compile(r"^(.*?)\s*<<\s*if\s+(.*?)\s*>>\s*(#.*)?$")
_HASHTAGS = re.compile(r"(\s+#[^\s#]+)+\s*$")
_LINK = re.compile(r"\[\[([^\]]*)\]\]")


# -- statements -------------------------------------------------------------------------------


@dataclass
class _Line:
    text: str
    line: int
    steer: dict


@dataclass
class _Cmd:
    name: str
    args: str
    line: int


@dataclass
class _Option:
    text: str
    cond: str | None
    line: int
    body: list = field(default_factory=list)


@dataclass
class _Options:
    options: list[_Option]
    line: int
    links: bool = False  # Yarn 1 [[links]], gathered at the end of the node


@dataclass
class _If:
    branches: list[tuple[str | None, int, list]]  # (condition or None for else, line, body)
    line: int


@dataclass
class _Body:
    node: str
    title_line: int
    lines: list[tuple[int, str]]  # (line number, raw text)


def _indent(s: str) -> int:
    return len(s.expandtabs(4)) - len(s.expandtabs(4).lstrip())


class _Parser:
    """Statements of one node body, by indentation and ``<<if>>`` nesting."""

    def __init__(self, graph: SourceGraph, body: _Body) -> None:
        self.graph = graph
        self.body = body
        self.lines = body.lines
        self.i = 0
        self.steer: dict = {}

    def fail(self, line: int, message: str) -> None:
        self.graph.fail(line, f"{self.body.node}: {message}")

    def block(self, indent: int, depth: int, closers: tuple[str, ...] = ()) -> list:
        """Statements at ``indent`` or deeper, until a line less indented or a closer."""
        if depth > MAX_DEPTH:
            self.fail(self.lines[self.i][0], f"nested deeper than {MAX_DEPTH} levels")
            self.i = len(self.lines)
            return []
        out: list = []
        while self.i < len(self.lines):
            n, raw = self.lines[self.i]
            stripped = raw.strip()
            if not stripped:
                self.i += 1
                continue
            if _indent(raw) < indent:
                break
            cmd = _CMD.match(stripped)
            if cmd and cmd.group(1) in closers:
                break
            if stripped.startswith("//"):
                s = parse_steer(stripped[2:], self.graph, n)
                if s is not None:
                    self.steer.update(s)
                self.i += 1
                continue
            if stripped.startswith("->"):
                out.append(self.options(_indent(raw), depth))
                continue
            if stripped.startswith("=>"):
                out.append(self.line_group(_indent(raw), n))
                continue
            if cmd and cmd.group(1) == "if":
                out.append(self.if_block(n, cmd.group(2), depth))
                continue
            if cmd:
                name, args = cmd.group(1), cmd.group(2)
                if name in ("elseif", "else", "endif"):
                    self.fail(n, f"<<{name}>> without <<if>>")
                    self.i += 1
                    continue
                out.append(_Cmd(name, args, n))
                self.i += 1
                continue
            if stripped.startswith("<<") and ">>" not in stripped:
                self.fail(n, "a command << is never closed with >> on its line")
                self.i += 1
                continue
            links = list(_LINK.finditer(stripped))
            if links:
                opts = []
                for m in links:
                    label, _, target = m.group(1).partition("|")
                    if not _:
                        target = label
                    opts.append(_Option(label.strip(), None, n,
                                        [_Cmd("jump", target.strip(), n)]))
                    self.graph.count("links")
                rest = _LINK.sub("", stripped).strip()
                if rest:
                    out.append(_Line(rest, n, self._take_steer()))
                if out and isinstance(out[-1], _Options) and out[-1].links:
                    out[-1].options.extend(opts)
                else:
                    out.append(_Options(opts, n, links=True))
                self.i += 1
                continue
            out.append(_Line(_HASHTAGS.sub("", stripped), n, self._take_steer()))
            self.i += 1
        return out

    def _take_steer(self) -> dict:
        s, self.steer = self.steer, {}
        return s

    def options(self, indent: int, depth: int) -> _Options:
        group = _Options([], self.lines[self.i][0])
        while self.i < len(self.lines):
            n, raw = self.lines[self.i]
            stripped = raw.strip()
            if not stripped:
                self.i += 1
                continue
            if _indent(raw) != indent or not stripped.startswith("->"):
                break
            text = stripped[2:].strip()
            cond = None
            m = _OPT_COND.match(text)
            if m:
                text, cond = m.group(1), m.group(2)
            text = _HASHTAGS.sub("", text).strip()
            self.i += 1
            self.graph.count("options")
            # the option's body: lines indented deeper than the arrow
            body = self.block(indent + 1, depth + 1, ())
            group.options.append(_Option(text, cond, n, body))
        return group

    def line_group(self, indent: int, line: int) -> _Line:
        texts = []
        while self.i < len(self.lines):
            n, raw = self.lines[self.i]
            stripped = raw.strip()
            if _indent(raw) != indent or not stripped.startswith("=>"):
                break
            texts.append(stripped[2:].strip())
            self.i += 1
            # lines indented under a line-group item belong to it
            while self.i < len(self.lines) and (
                not self.lines[self.i][1].strip() or _indent(self.lines[self.i][1]) > indent
            ):
                self.i += 1
        self.graph.lose(line, f"{self.body.node}: a line group of {len(texts)} lines "
                        "(one is picked at run time); the first is kept")
        first = _OPT_COND.match(texts[0])
        text = first.group(1) if first else texts[0]
        return _Line(_HASHTAGS.sub("", text).strip(), line, self._take_steer())

    def if_block(self, line: int, cond: str, depth: int) -> _If:
        self.i += 1
        branches: list[tuple[str | None, int, list]] = []
        current: tuple[str | None, int] = (cond, line)
        while True:
            body = self.block(0, depth + 1, ("elseif", "else", "endif"))
            branches.append((current[0], current[1], body))
            if self.i >= len(self.lines):
                self.fail(line, f"<<if {cond}>> is never closed with <<endif>>")
                return _If(branches, line)
            n, raw = self.lines[self.i]
            m = _CMD.match(raw.strip())
            assert m is not None
            self.i += 1
            if m.group(1) == "endif":
                return _If(branches, line)
            current = (m.group(2) if m.group(1) == "elseif" else None, n)


def _hoist_links(stmts: list) -> list:
    """Yarn 1's ``[[links]]`` are offered when the node ends, each under the ``<<if>>`` it was
    written in: gather them (with their conditions) into one option group at the end."""
    found: list[_Option] = []

    def walk(items: list, conds: list[str]) -> list:
        out = []
        for s in items:
            if isinstance(s, _Options) and s.links:
                for o in s.options:
                    found.append(_Option(o.text, " and ".join(conds) or None, o.line, o.body))
            elif isinstance(s, _If):
                branches = []
                negated: list[str] = []
                for cond, line, body in s.branches:
                    here = conds + negated + ([cond] if cond is not None else [])
                    branches.append((cond, line, walk(body, here)))
                    if cond is not None:
                        negated.append(f"not ({cond})")
                out.append(_If(branches, s.line))
            else:
                out.append(s)
        return out

    rest = walk(stmts, [])
    if found:
        rest.append(_Options(found, found[0].line, links=True))
    return rest


# -- statements to nodes ----------------------------------------------------------------------


def _flows(stmts: list) -> bool:
    """True when ``stmts`` change where the story goes (a jump, options, a stop)."""
    for s in stmts:
        if isinstance(s, _Options):
            return True
        if isinstance(s, _Cmd) and s.name in ("jump", "stop", "return"):
            return True
        if isinstance(s, _If) and any(_flows(b) for _c, _l, b in s.branches):
            return True
        if isinstance(s, _Option) and _flows(s.body):
            return True
    return False


class _Builder:
    def __init__(self, graph: SourceGraph, bodies: dict[str, list], titles: dict[str, int]):
        self.graph = graph
        self.bodies = bodies
        self.titles = titles
        self.counter: dict[str, int] = {}
        self.detoured: set[str] = set()

    def new(self, base: Node, suffix: str, line: int) -> Node:
        k = self.counter.get(base.origin or base.name, 0) + 1
        self.counter[base.origin or base.name] = k
        origin = base.origin or base.name
        node = Node(key=f"{origin}\x00{suffix}{k}", name=f"{origin}.{suffix}{k}", line=line,
                    origin=origin, synthetic=True)
        return self.graph.add(node)

    def fill(self, node: Node, stmts: list, cont: str | None, depth: int = 0) -> None:
        """Put ``stmts`` in ``node``; when they run out, go on to ``cont`` (None: the end)."""
        for idx, s in enumerate(stmts):
            rest = stmts[idx + 1 :]
            if isinstance(s, _Line):
                if s.text:
                    node.paras.append(Para(s.text, s.line, s.steer))
            elif isinstance(s, _Cmd):
                if s.name == "jump":
                    self.leave(node, [Link(s.args, s.args.strip(), s.line)], divert=True)
                    self.unreached(node, rest)
                    return
                if s.name == "stop":
                    self.unreached(node, rest)
                    return
                if s.name == "return":
                    if (node.origin or node.name) not in self.detoured:
                        self.graph.lose(s.line, f"{node.origin or node.name}: <<return>> "
                                        "outside a detour ends the dialogue")
                    self.unreached(node, rest)
                    return
                if s.name == "detour":
                    self.detour(node, s, depth)
                    continue
                what = ("variables are not kept" if s.name in ("set", "declare", "local")
                        else "commands are not run")
                self.graph.lose(s.line, f"{node.origin or node.name}: <<{s.name}>> ({what})")
            elif isinstance(s, _If) and not _flows([s]):
                for cond, line, body in s.branches:
                    label = f"<<if {cond}>>" if cond is not None else "<<else>>"
                    if any(isinstance(b, _Line) for b in body):
                        self.graph.lose(line, f"{node.origin or node.name}: text under {label} "
                                        "is always shown")
                    self.fill_lines_only(node, body, depth)
            elif isinstance(s, (_Options, _If)):
                after = None
                if rest:
                    after = self.new(node, "after", _first_line(rest, s.line))
                nxt = after.key if after is not None else cont
                if isinstance(s, _Options):
                    branches = [(o.text, o.cond, o.line, o.body) for o in s.options]
                else:
                    branches = []
                    earlier: list[str] = []
                    for cond, line, body in s.branches:
                        label = f"if {cond}" if cond is not None else "otherwise"
                        negated = " and ".join(f"not ({c})" for c in earlier)
                        here = " and ".join(x for x in (negated, cond) if x)
                        branches.append((label, here, line, body))
                        if cond is not None:
                            earlier.append(cond)
                    if s.branches[-1][0] is not None:
                        negated = " and ".join(f"not ({c})" for c in earlier)
                        branches.append(("otherwise", negated, s.line, []))
                    self.graph.count("conditional jumps")
                links = []
                for label, cond, line, body in branches:
                    links.append(self.branch(node, label, cond, line, body, nxt, depth))
                self.leave(node, links, divert=False)
                if after is not None:
                    self.fill(after, rest, cont, depth)
                return
        if cont is not None:
            self.leave(node, [Link("", cont, None)], divert=True)

    def fill_lines_only(self, node: Node, stmts: list, depth: int) -> None:
        self.fill(node, stmts, None, depth)

    def branch(self, node: Node, label: str, cond: str | None, line: int, body: list,
               nxt: str | None, depth: int) -> Link:
        only_jump = (len(body) == 1 and isinstance(body[0], _Cmd) and body[0].name == "jump")
        if only_jump:
            return Link(label, body[0].args.strip(), line, cond)
        has_text = any(isinstance(b, _Line) for b in body) or _flows(body)
        if not has_text and nxt is not None:
            self.fill(Node("", ""), body, None, depth)  # list its commands as lost
            return Link(label, nxt, line, cond)
        target = self.new(node, "option", line)
        if not has_text:
            target.paras.append(Para(label, line))
        self.fill(target, body, nxt, depth)
        return Link(label, target.key, line, cond)

    def leave(self, node: Node, links: list[Link], divert: bool) -> None:
        node.links = links
        node.divert = divert

    def detour(self, node: Node, s: _Cmd, depth: int) -> None:
        target = s.args.strip()
        body = self.bodies.get(target)
        where = node.origin or node.name
        if body is None:
            self.graph.lose(s.line, f"{where}: <<detour {target}>> to a node not in the story")
        elif _flows([x for x in body if not (isinstance(x, _Cmd) and x.name == "return")]) or (
            depth > 8
        ):
            self.graph.lose(s.line, f"{where}: <<detour {target}>>: {target} has options or "
                            "jumps, so it cannot be shown inline; not followed")
        else:
            self.graph.count("detours inlined")
            self.fill(node, [x for x in body if not (isinstance(x, _Cmd)
                                                    and x.name == "return")], None, depth + 1)

    def unreached(self, node: Node, rest: list) -> None:
        if rest:
            self.graph.lose(_first_line(rest, node.line or 0),
                            f"{node.origin or node.name}: lines after a jump or stop are "
                            "never reached")


def _first_line(stmts: list, default: int) -> int:
    for s in stmts:
        if hasattr(s, "line") and s.line and s.line > 0:
            return s.line
    return default


# -- the file ---------------------------------------------------------------------------------


def read(file: str, text: str) -> SourceGraph:
    graph = SourceGraph(file=file, format=FORMAT)
    lines = text.split("\n")
    raw_nodes: list[tuple[dict[str, tuple[str, int]], _Body]] = []
    i = 0
    n = len(lines)
    while i < n:
        headers: dict[str, tuple[str, int]] = {}
        start = None
        while i < n and lines[i].strip() != "---":
            line = lines[i].strip()
            if line and not line.startswith("//"):
                if start is None:
                    start = i + 1
                key, colon, value = line.partition(":")
                if not colon or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key.strip()):
                    graph.fail(i + 1, f"not a header (name: value) before ---: {line[:40]!r}")
                else:
                    headers[key.strip()] = (value.strip(), i + 1)
            i += 1
        if i >= n:
            if headers:
                graph.fail(start, "a node's headers are not followed by ---")
            break
        sep = i + 1
        i += 1
        body: list[tuple[int, str]] = []
        while i < n and lines[i].strip() != "===":
            body.append((i + 1, lines[i]))
            i += 1
        if i >= n:
            graph.fail(sep, "a node body (---) is never closed with ===")
        i += 1
        if "title" not in headers:
            graph.fail(start or sep, "a node without a title: header")
            continue
        title = headers["title"][0]
        if not title:
            graph.fail(headers["title"][1], "a node with an empty title")
            continue
        raw_nodes.append((headers, _Body(title, headers["title"][1], body)))
    if not raw_nodes and not graph.problems:
        graph.fail(None, "no nodes (title: Name, ---, body, ===)")
    # node groups: several nodes with one title, each with a when: header
    by_title: dict[str, list[tuple[dict, _Body]]] = {}
    for h, b in raw_nodes:
        by_title.setdefault(b.node, []).append((h, b))
    bodies: dict[str, list] = {}
    parsed: list[tuple[str, str, int, list, str | None]] = []  # key, title, line, stmts, when
    groups: dict[str, list[tuple[str, str | None, int]]] = {}
    for title, members in by_title.items():
        if len(members) > 1 and not all("when" in h for h, _b in members):
            for h, _b in members[1:]:
                graph.fail(h["title"][1], f"node {title!r} is defined twice (first on line "
                           f"{members[0][0]['title'][1]})")
            members = members[:1]
        for k, (h, b) in enumerate(members, 1):
            stmts = _hoist_links(_Parser(graph, b).block(0, 0))
            when = h["when"][0] if "when" in h else None
            key = title if len(members) == 1 else f"{title}\x00when{k}"
            parsed.append((key, title, b.title_line, stmts, when))
            if len(members) == 1:
                bodies[title] = stmts
                if when is not None:
                    graph.lose(h["when"][1], f"{title}: when: {when} (a storylet of one node) "
                               "is always available")
            else:
                groups.setdefault(title, []).append((key, when, b.title_line))
        graph.count("nodes", len(members))
    builder = _Builder(graph, bodies, {})
    builder.detoured = {t for _k, _t, _l, stmts, _w in parsed for t in _detours(stmts)}
    for key, title, line, stmts, _when in parsed:
        name = title if "\x00" not in key else f"{title}.when{key.split('when')[-1]}"
        node = graph.add(Node(key=key, name=name, line=line,
                              origin=title if "\x00" in key else None))
        builder.fill(node, stmts, None)
    # tags: shot:duration=3 ... set every shot of the node
    steers: dict[str, dict] = {}
    for h, b in raw_nodes:
        if "tags" in h:
            st = tag_steer(h["tags"][0].split(), graph, h["tags"][1])
            if st:
                steers[b.node] = st
    apply_steer(graph, steers)
    # a link to a node group is a choice among its members, each under its when: condition
    for node in list(graph.nodes.values()):
        links: list[Link] = []
        for link in node.links:
            if link.target not in by_title and link.target.replace(".", "_") in by_title:
                link.target = link.target.replace(".", "_")  # Yarn 2 renamed "a.b" nodes a_b
            members = groups.get(link.target)
            if members is None:
                links.append(link)
                continue
            graph.count("storylet jumps")
            for key, when, _line in members:
                label = (link.label + ": " if link.label and not node.divert else "") + (
                    f"when {when}" if when != "always" else "always")
                cond = when if when not in (None, "always") else link.condition
                links.append(Link(label, key, link.line, cond))
            node.divert = False
        node.links = links
    # a node only ever shown through <<detour>> is inlined where it is called
    targeted = {lk.target for n in graph.nodes.values() for lk in n.links}
    for title in builder.detoured:
        if title in graph.nodes and title not in targeted and title != "Start":
            del graph.nodes[title]
    if parsed:
        start = "Start" if "Start" in by_title else _first_entry(graph, parsed)
        graph.start = start if start in graph.nodes else (
            groups[start][0][0] if start in groups else None)
    return graph


def _first_entry(graph: SourceGraph, parsed: list) -> str:
    """Without a ``Start`` node: the first node with content that no other node leads to."""
    targeted = {
        lk.target.split("\x00")[0]
        for n in graph.nodes.values()
        for lk in n.links
        if lk.target.split("\x00")[0] != (n.origin or n.name)
    }
    for key, title, _line, _stmts, _when in parsed:
        node = graph.nodes.get(key)
        if node is not None and title not in targeted and (node.paras or node.links):
            return title
    return parsed[0][1]


def _detours(stmts: list) -> set[str]:
    out: set[str] = set()
    for s in stmts:
        if isinstance(s, _Cmd) and s.name == "detour":
            out.add(s.args.strip())
        elif isinstance(s, _Option):
            out |= _detours(s.body)
        elif isinstance(s, _Options):
            for o in s.options:
                out |= _detours(o.body)
        elif isinstance(s, _If):
            for _c, _l, body in s.branches:
                out |= _detours(body)
    return out
