"""Twine 2 published HTML (or an archive): ``<tw-storydata>`` and ``<tw-passagedata>``.

Parsed with Python's own :class:`html.parser.HTMLParser` (maintained with CPython, no extra
dependency). It is a tokenizer only: it never fetches a URL, loads a stylesheet or runs a
script, and it reports each element's line, so every passage keeps its place in the file.
Entities in passage text are decoded by the parser (``convert_charrefs``). The story format's
own code and the story's ``<script>``/``<style>`` are listed as not imported.
"""

from __future__ import annotations

from html.parser import HTMLParser

from ._graph import SourceGraph
from ._twine import RawPassage, add_passages

FORMAT = "twine-html"


class _Reader(HTMLParser):
    def __init__(self, graph: SourceGraph) -> None:
        super().__init__(convert_charrefs=True)
        self.graph = graph
        self.story: dict[str, str] | None = None
        self.stories = 0
        self.passages: list[tuple[dict[str, str], int]] = []
        self.texts: list[tuple[list[str], int | None]] = []
        self.current: list[str] | None = None
        self.current_line: int | None = None
        self.in_story = False
        self.scripts = 0
        self.styles = 0
        self.story_line: int | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        line = self.getpos()[0]
        if tag == "tw-storydata":
            self.stories += 1
            if self.stories == 1:
                self.story = a
                self.story_line = line
                self.in_story = True
        elif tag == "tw-passagedata" and self.in_story:
            self.passages.append((a, line))
            self.current = []
            self.current_line = None
            self.texts.append((self.current, None))
        elif self.in_story and tag == "script":
            self.scripts += 1
        elif self.in_story and tag == "style":
            self.styles += 1
        elif self.current is not None:
            # published passage text is escaped: a raw tag inside one is kept as text
            self.current.append(self.get_starttag_text() or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tw-passagedata" and self.current is not None:
            self.texts[-1] = (self.current, self.current_line)
            self.current = None
        elif tag == "tw-storydata":
            self.in_story = False
        elif self.current is not None:
            self.current.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if self.current is not None:
            if self.current_line is None:
                self.current_line = self.getpos()[0]
            self.current.append(data)


def read(file: str, text: str) -> SourceGraph:
    graph = SourceGraph(file=file, format=FORMAT)
    r = _Reader(graph)
    r.feed(text)
    r.close()
    if r.story is None:
        graph.fail(None, "no <tw-storydata> element: not a published Twine 2 story")
        return graph
    if r.stories > 1:
        graph.lose(None, f"{r.stories} stories in one file; only the first is imported")
    graph.title = r.story.get("name", "")
    fmt = r.story.get("format", "")
    if fmt:
        graph.lose(r.story_line, f"story format {fmt} {r.story.get('format-version', '')}"
                   .rstrip() + "; its macros are read as listed, never run")
    if r.scripts:
        graph.lose(r.story_line, f"{r.scripts} story script(s) are not run")
    if r.styles:
        graph.lose(r.story_line, f"{r.styles} stylesheet(s) are not imported")
    passages: list[RawPassage] = []
    start_pid = r.story.get("startnode", "")
    start: str | None = None
    for (attrs, line), (chunks, text_line) in zip(r.passages, r.texts, strict=True):
        name = attrs.get("name", "")
        if not name:
            graph.fail(line, "<tw-passagedata> without a name")
            continue
        if attrs.get("pid") == start_pid and start_pid:
            start = name
        body = "".join(chunks)
        # text_line is where the first text chunk began: the passage text starts there
        passages.append(RawPassage(name, attrs.get("tags", "").split(), body, line,
                                   text_line if text_line is not None else line))
    if not passages and not graph.problems:
        graph.fail(r.story_line, "the story has no <tw-passagedata> passages")
    if start is None and start_pid:
        graph.fail(r.story_line, f"startnode {start_pid!r} names no passage")
    add_passages(graph, passages, start)
    return graph
