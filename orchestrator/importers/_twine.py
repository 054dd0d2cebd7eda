"""A Twine passage's text (Twee 3 and Twine 2 HTML alike): paragraphs, links, macros.

A small tokenizer, not a story-format engine: it knows the link syntax every Twine 2 story
format shares (``[[Target]]``, ``[[Label|Target]]``, ``[[Label->Target]]``,
``[[Target<-Label]]``), the conditional macros of Harlowe (``(if:)[...]``, ``(else-if:)``,
``(else:)``, ``(unless:)``) and SugarCube (``<<if>>`` ... ``<</if>>``), and the macros that move
to another passage (``(goto:)``, ``(link-goto:)``, ``<<goto>>``, ``<<link "label" "passage">>``).
Every other macro is listed as lost; nothing is ever run. Comments (``<!-- -->``, ``/* */``)
hold ``shot:`` settings for the next paragraph.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._graph import Link, Node, Para, SourceGraph, apply_steer, parse_steer, tag_steer

_HARLOWE_COND = {"if", "unless", "else-if", "elseif", "else"}
_GOTO = {"goto", "go-to"}
_LINK_GOTO = {"link-goto", "linkgoto", "click-goto"}
_VARIABLE_MACROS = {"set", "put", "move", "unset", "run", "script", "temp", "capture"}
_MACRO_NAME = re.compile(r"\(([A-Za-z][A-Za-z0-9-]*):")
_SC_MACRO = re.compile(r"<<\s*(/?[A-Za-z=-][A-Za-z0-9_=-]*)")
_HTML_TAG = re.compile(r"</?[A-Za-z][^<>]{0,500}>")
_NEXT = re.compile(r"\[\[|<!--|/\*|<<|\([A-Za-z][A-Za-z0-9-]*:|<%|\]|<[sS][cCtT]")
"""Where plain text stops: the next link, comment, macro, hook end, script or style."""
_STRING = re.compile(r"""("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""")


@dataclass
class _Cond:
    text: str
    line: int
    kind: str  # "hook" (Harlowe, closed by "]") or "sc" (SugarCube, closed by <</if>>)
    links: int = 0
    text_seen: bool = False
    label: str | None = None  # the hook of (link: "label"): not a condition, a click


def split_link(body: str) -> tuple[str, str, str | None]:
    """``[[...]]``'s inside → (label, target, setter), as Twine 2 reads it.

    A SugarCube setter ``[[A|B][$x to 1]]`` is returned apart. Arrows first (the rightmost
    ``->``, else the leftmost ``<-``), then ``|``, else the text is both label and target.
    """
    setter = None
    if "][" in body:
        body, _, setter = body.partition("][")
    if "->" in body:
        label, _, target = body.rpartition("->")
    elif "<-" in body:
        target, _, label = body.partition("<-")
    elif "|" in body:
        label, _, target = body.partition("|")
    else:
        label = target = body
    return label.strip(), target.strip(), setter


def _strings(args: str) -> list[str]:
    out = []
    for m in _STRING.finditer(args):
        s = m.group(0)[1:-1]
        out.append(re.sub(r"\\(.)", r"\1", s))
    return out


def _close_paren(text: str, i: int) -> int:
    """Index after the ``)`` matching the ``(`` at ``i`` (quotes respected), or -1."""
    depth = 0
    q = None
    j = i
    while j < len(text):
        c = text[j]
        if q:
            if c == "\\":
                j += 1
            elif c == q:
                q = None
        elif c in "\"'":
            q = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return -1


def read_passage(graph: SourceGraph, node: Node, text: str, first_line: int | None) -> Node:
    """Fill ``node`` (paragraphs, links) from a Twine passage's ``text``."""
    paras: list[Para] = []
    buf: list[str] = []
    buf_line: list[int | None] = [None]
    steer: dict = {}
    conds: list[_Cond] = []
    gotos: list[Link] = []
    lost: dict[str, int] = {}
    lost_line: dict[str, int | None] = {}
    last_if: list[str] = [""]

    def line_at(i: int) -> int | None:
        return None if first_line is None else first_line + text.count("\n", 0, i)

    def flush() -> None:
        t = " ".join(_HTML_TAG.sub(" ", "".join(buf)).split())
        if t or "prompt" in steer:
            paras.append(Para(t, buf_line[0], dict(steer)))
            steer.clear()
        buf.clear()
        buf_line[0] = None

    def add_text(s: str, i: int) -> None:
        parts = re.split(r"\n[ \t]*\n", s)
        for k, part in enumerate(parts):
            if k:
                flush()
            if part.strip():
                for c in conds:
                    c.text_seen = True
                if buf_line[0] is None:
                    buf_line[0] = line_at(i + s.find(part.strip()[:1]))
            buf.append(part)

    def condition() -> str | None:
        real = [c.text for c in conds if c.label is None]
        return " and ".join(real) if real else None

    def add_link(label: str, target: str, i: int, *, goto: bool = False) -> None:
        graph.count("links")
        clicked = [c.label for c in conds if c.label is not None]
        if goto and clicked:
            label, goto = clicked[-1], False
        link = Link(label, target, line_at(i), condition())
        for c in conds:
            c.links += 1
        if goto and not conds:
            gotos.append(link)
        else:
            node.links.append(link)

    def lose(what: str, i: int) -> None:
        if what not in lost:
            lost_line[what] = line_at(i)
        lost[what] = lost.get(what, 0) + 1

    def close_cond() -> None:
        c = conds.pop()
        if c.text_seen and c.label is None:
            graph.lose(c.line, f"{node.name}: text under the condition {c.text} is always shown")

    i = 0
    n = len(text)
    while i < n:
        if text.startswith("[[", i):
            j = text.find("]]", i + 2)
            if j == -1:
                graph.fail(line_at(i), f"{node.name}: a link [[ is never closed with ]]")
                break
            label, target, setter = split_link(text[i + 2 : j])
            if setter is not None:
                lose("link setter [..][" + setter.strip()[:40] + "] (variables are not kept)", i)
            if not target:
                graph.fail(line_at(i), f"{node.name}: a link with no target passage")
            else:
                add_link(label, target, i)
            i = j + 2
            continue
        if text.startswith("<!--", i) or text.startswith("/*", i):
            end_tok = "-->" if text[i + 1] == "!" else "*/"
            j = text.find(end_tok, i)
            if j == -1:
                graph.fail(line_at(i), f"{node.name}: a comment is never closed")
                break
            body = text[i + (4 if end_tok == "-->" else 2) : j]
            s = parse_steer(body, graph, line_at(i))
            if s is not None:
                if "".join(buf).strip():
                    flush()
                steer.update(s)
            i = j + len(end_tok)
            continue
        if text.startswith("<<", i):
            j = text.find(">>", i + 2)
            if j == -1:
                graph.fail(line_at(i), f"{node.name}: a macro << is never closed with >>")
                break
            inner = text[i + 2 : j].strip()
            m = _SC_MACRO.match(text, i)
            name = (m.group(1) if m else inner.split(" ")[0]).lower()
            args = inner[len(name) :].strip()
            if name in ("script", "widget"):
                close = text.find(f"<</{name}>>", j)
                lose(f"<<{name}>> (scripts are not run)", i)
                i = n if close == -1 else close + len(name) + 5
                continue
            if name == "if":
                conds.append(_Cond(f"<<if {args}>>", line_at(i) or 0, "sc"))
                last_if[0] = args
            elif name in ("elseif", "else"):
                if conds and conds[-1].kind == "sc":
                    prev = conds.pop()
                    what = (f"<<elseif {args}>>" if name == "elseif"
                            else f"<<else>> of <<if {last_if[0]}>>")
                    conds.append(_Cond(what, line_at(i) or 0, "sc"))
                    if prev.text_seen:
                        graph.lose(prev.line,
                                   f"{node.name}: text under the condition {prev.text} is "
                                   "always shown")
                else:
                    graph.fail(line_at(i), f"{node.name}: <<{name}>> outside <<if>>")
            elif name in ("/if", "endif"):
                if conds and conds[-1].kind == "sc":
                    close_cond()
                else:
                    graph.fail(line_at(i), f"{node.name}: <<{name}>> without <<if>>")
            elif name in _GOTO:
                ss = _strings(args)
                lk = re.search(r"\[\[(.*?)\]\]", args)
                tgt = ss[0] if ss else (split_link(lk.group(1))[1] if lk else "")
                if tgt:
                    add_link(tgt, tgt, i, goto=True)
                else:
                    lose("<<goto>> with a computed target", i)
            elif name in ("link", "button"):
                lk = re.search(r"\[\[(.*?)\]\]", args)
                ss = _strings(args)
                if lk:
                    label, target, _ = split_link(lk.group(1))
                    add_link(label, target, i)
                elif len(ss) >= 2:
                    add_link(ss[0], ss[1], i)
                else:
                    lose(f"<<{name}>> without a passage to go to", i)
            elif name.startswith("/"):
                pass  # the end of a container macro; its opening was listed
            else:
                if name in _VARIABLE_MACROS:
                    lose(f"<<{name}>> (variables are not kept)", i)
                else:
                    lose(f"<<{name}>> (macros are not run)", i)
            i = j + 2
            continue
        m = _MACRO_NAME.match(text, i)
        if m:
            j = _close_paren(text, i)
            if j == -1:
                graph.fail(line_at(i), f"{node.name}: a macro ( is never closed with )")
                break
            name = m.group(1).lower()
            args = text[m.end() : j - 1]
            ss = _strings(args)
            k = j
            while k < n and text[k] in " \t":
                k += 1
            hook = k < n and text[k] == "[" and (
                not text.startswith("[[", k) or text.startswith("[[[", k)
            )
            if name in _HARLOWE_COND:
                what = f"({name}:{args})"
                if name == "else":
                    what = f"(else:) of (if:{last_if[0]})"
                elif name == "if":
                    last_if[0] = args
                if hook:
                    conds.append(_Cond(what, line_at(i) or 0, "hook"))
                    i = k + 1
                    continue
                lose(f"({name}:) without a hook", i)
            elif name in _GOTO:
                if ss:
                    add_link(ss[0], ss[0], i, goto=True)
                else:
                    lose("(goto:) with a computed target", i)
            elif name in _LINK_GOTO:
                if len(ss) >= 2:
                    add_link(ss[0], ss[1], i)
                elif ss:
                    add_link(ss[0], ss[0], i)
                else:
                    lose(f"({name}:) with a computed target", i)
            elif name in ("link", "link-reveal", "click") and hook and ss:
                pass  # a click: a goto in its hook is an option labelled by it
            elif name in _VARIABLE_MACROS:
                lose(f"({name}:) (variables are not kept)", i)
            else:
                lose(f"({name}:) (macros are not run)", i)
            i = j
            if hook:
                label = ss[0] if name in ("link", "link-reveal", "click") and ss else None
                conds.append(_Cond(f"the hook of ({name}:)", line_at(i) or 0, "hook",
                                   label=label))
                i = k + 1
            continue
        if text[i] == "]" and conds and conds[-1].kind == "hook":
            close_cond()
            i += 1
            continue
        low = text[i : i + 7].lower()
        if low.startswith("<script") or low.startswith("<style"):
            tag = "script" if low.startswith("<script") else "style"
            close = text.lower().find(f"</{tag}>", i)
            lose(f"<{tag}> (not run, not imported)", i)
            i = n if close == -1 else close + len(tag) + 3
            continue
        if text.startswith("<%", i):
            j = text.find("%>", i)
            lose("<% script %> (scripts are not run)", i)
            i = n if j == -1 else j + 2
            continue
        # plain text up to the next thing of interest
        m2 = _NEXT.search(text, i + 1)
        j = m2.start() if m2 else n
        add_text(text[i:j], i)
        i = j
    flush()
    if conds:
        c = conds[-1]
        graph.fail(c.line, f"{node.name}: {c.text} is never closed")
    for what, count in lost.items():
        times = f" ({count} times)" if count > 1 else ""
        graph.lose(lost_line[what], f"{node.name}: {what}{times}")
    node.paras = paras
    if gotos:
        if node.links:
            graph.lose(node.line, f"{node.name}: goes on to {gotos[0].target} at once; "
                       f"its {len(node.links)} other link(s) are never seen")
        if len(gotos) > 1:
            graph.lose(gotos[1].line, f"{node.name}: only the first goto is followed")
        node.links = [gotos[0]]
        node.divert = True
    return node


_SPECIAL_NAMES = {
    "StoryInit", "StoryCaption", "StoryMenu", "StoryBanner", "StorySubtitle", "StoryAuthor",
    "PassageReady", "PassageDone", "PassageHeader", "PassageFooter", "StoryInterface",
    "StoryShare",
}
_SPECIAL_TAGS = {"script", "stylesheet", "widget", "header", "footer", "startup",
                 "debug-header", "debug-footer", "debug-startup", "Twine.private"}


@dataclass
class RawPassage:
    name: str
    tags: list[str]
    text: str
    line: int | None  # of the header (Twee) or the element (HTML)
    text_line: int | None  # of the first line of its text


def add_passages(graph: SourceGraph, passages: list[RawPassage], start: str | None) -> None:
    """Read Twine passages into ``graph``; special passages (scripts, SugarCube's StoryInit,
    Harlowe's startup/header/footer) are listed as not imported, never run."""
    seen: dict[str, int | None] = {}
    for p in passages:
        if p.name in seen:
            where = f" (first on line {seen[p.name]})" if seen[p.name] else ""
            graph.fail(p.line, f"passage {p.name!r} is defined twice{where}")
            continue
        seen[p.name] = p.line
        special = sorted(set(p.tags) & _SPECIAL_TAGS)
        if p.name in _SPECIAL_NAMES or special:
            why = f"tagged {', '.join(special)}" if special else "a special passage"
            graph.lose(p.line, f"{p.name}: {why}; its code and text are not imported")
            continue
        graph.count("passages")
        node = graph.add(Node(key=p.name, name=p.name, line=p.line))
        read_passage(graph, node, p.text, p.text_line)
        steer = tag_steer(p.tags, graph, p.line)
        if steer:
            apply_steer(graph, {p.name: steer})
    if start is None:
        start = "Start" if "Start" in graph.nodes else None
        if start is None and graph.nodes:
            graph.fail(None, "no start passage: StoryData has no \"start\" and no passage is "
                       "named Start")
    elif start not in graph.nodes:
        graph.fail(None, f"the start passage {start!r} is not in the story")
    graph.start = start
