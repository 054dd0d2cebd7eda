"""Twee 3 (``.twee``/``.tw``): ``:: Name [tags] {metadata}`` passages.

The format is Twine's own text form (the Twee 3 specification in ``twinejs``'s docs). A
header line starts with ``::``; the name may escape ``[ ] { } \\`` with a backslash; the
optional tags are space-separated inside ``[...]``; the optional metadata is a JSON object.
``StoryTitle`` holds the title and ``StoryData`` a JSON object whose ``start`` names the first
passage. Passage text is read by :mod:`._twine`.
"""

from __future__ import annotations

import json

from ._graph import SourceGraph
from ._twine import RawPassage, add_passages

FORMAT = "twee"


def _header(line: str, graph: SourceGraph, lineno: int) -> tuple[str, list[str]] | None:
    """``:: Name [tags] {meta}`` → (name, tags); ``None`` (and a problem) when malformed."""
    rest = line[2:]
    name_chars: list[str] = []
    i = 0
    while i < len(rest):
        c = rest[i]
        if c == "\\" and i + 1 < len(rest):
            name_chars.append(rest[i + 1])
            i += 2
            continue
        if c in "[{":
            break
        if c in "]}":
            graph.fail(lineno, f"passage header: unescaped {c!r} in the name")
            return None
        name_chars.append(c)
        i += 1
    name = "".join(name_chars).strip()
    tail = rest[i:].strip()
    tags: list[str] = []
    if tail.startswith("["):
        end = tail.find("]")
        if end == -1:
            graph.fail(lineno, "passage header: tags [ are never closed with ]")
            return None
        tags = tail[1:end].split()
        tail = tail[end + 1 :].strip()
    if tail.startswith("{"):
        try:
            meta = json.loads(tail)
        except ValueError:
            graph.fail(lineno, "passage header: the metadata is not a JSON object")
            return None
        if not isinstance(meta, dict):
            graph.fail(lineno, "passage header: the metadata is not a JSON object")
            return None
    elif tail:
        graph.fail(lineno, f"passage header: unexpected {tail[:40]!r} after the name")
        return None
    if not name:
        graph.fail(lineno, "passage header: the passage has no name")
        return None
    return name, tags


def read(file: str, text: str) -> SourceGraph:
    graph = SourceGraph(file=file, format=FORMAT)
    lines = text.split("\n")
    passages: list[RawPassage] = []
    current: tuple[str, list[str], int] | None = None
    body: list[str] = []
    start: str | None = None

    def close() -> None:
        nonlocal start
        if current is None:
            return
        name, tags, lineno = current
        while body and not body[-1].strip():
            body.pop()
        content = "\n".join(body)
        if name == "StoryTitle":
            graph.title = content.strip()
        elif name == "StoryData":
            try:
                data = json.loads(content)
            except ValueError as exc:
                graph.fail(lineno + getattr(exc, "lineno", 1), "StoryData is not a JSON object")
                return
            if not isinstance(data, dict):
                graph.fail(lineno + 1, "StoryData is not a JSON object")
                return
            if isinstance(data.get("start"), str):
                start = data["start"]
            if isinstance(data.get("format"), str):
                graph.lose(lineno, f"StoryData: story format {data['format']} "
                           f"{data.get('format-version', '')}".rstrip()
                           + "; its macros are read as listed, never run")
        else:
            passages.append(RawPassage(name, tags, content, lineno, lineno + 1))

    for n, raw in enumerate(lines, 1):
        line = raw.rstrip("\r")
        if line.startswith("::"):
            close()
            body = []
            h = _header(line, graph, n)
            current = (h[0], h[1], n) if h else None
            continue
        if current is None:
            if line.strip() and not passages and not graph.problems:
                graph.fail(n, "text before the first passage header (:: Name)")
            continue
        body.append(line[1:] if line.startswith("\\::") else line)
    close()
    if not passages and not graph.problems:
        graph.fail(None, "no passages (a Twee 3 passage starts with a line ':: Name')")
    add_passages(graph, passages, start)
    return graph
