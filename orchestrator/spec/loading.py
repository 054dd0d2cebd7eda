"""Load a story manifest from untrusted bytes, reporting every problem with its line.

The stages, each bounded before the next begins:

1. size: at most :data:`MAX_MANIFEST_BYTES`, checked before anything is parsed;
2. text: UTF-8 (a BOM is allowed);
3. YAML, composed to nodes with ``yaml.SafeLoader`` so that each value keeps its line and
   column; aliases are refused (no "billion laughs"), nesting and node counts are capped, and
   only the plain YAML types are accepted (a tag such as ``!!python/object`` is an error, never
   constructed); duplicate keys are errors;
4. the pydantic models of :mod:`orchestrator.manifest`, field by field;
5. the whole-story rules of :mod:`orchestrator.storygraph`.

Stages 4 and 5 both run when the YAML is sound, so a writer sees all problems in one pass.
Nothing here touches the file system except reading ``source`` when no bytes are given; ids are
only compared, never used in a path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.composer import Composer, ComposerError
from yaml.constructor import SafeConstructor
from yaml.error import MarkedYAMLError, YAMLError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from . import pydantic_errors, storygraph
from .errors import Loc, ManifestInvalid, Problem, format_path
from .gc_paused import gc_paused
from .manifest import Story

MAX_MANIFEST_BYTES = 2 * 1024 * 1024
"""The largest manifest accepted, in bytes (2 MiB)."""
MAX_DEPTH = 32
"""The deepest nesting of mappings and lists accepted (a valid story needs about 8)."""
MAX_NODES = 250_000
"""The most YAML values (scalars, mappings, lists) one manifest may hold."""
MAX_PROBLEMS = 200
"""At most this many problems are listed; a last line says how many more there were."""
MAX_NUMBER_CHARS = 64
"""A longer integer literal is refused rather than converted (conversion is quadratic)."""

_TAG = "tag:yaml.org,2002:"
_PLAIN_SCALARS = {f"{_TAG}{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}


@dataclass(frozen=True)
class _Document:
    """Where each field of one manifest was written.

    A loaded manifest keeps its text, not its nodes (with their marks, several objects per
    value: most of a large story's memory); the nodes are composed again on the first
    :meth:`locate`, which only a plan-time problem asks for.
    """

    source: str
    root: Node | None = field(default=None, repr=False, compare=False)
    text: str | None = field(default=None, repr=False, compare=False)
    _composed: list[Node | None] = field(default_factory=list, repr=False, compare=False)

    def _root(self) -> Node | None:
        if self.root is not None or self.text is None:
            return self.root
        if not self._composed:
            self._composed.append(_compose(self.source, self.text))
        return self._composed[0]

    def locate(self, path: Sequence[str | int]) -> tuple[int | None, int | None]:
        """1-based (line, column) of ``path``, or of its deepest part that was written.

        A mapping key points at the key (``duration: -1`` → the column of ``duration``); a list
        item at the item. A path that was not written (a missing field) points at the mapping
        that should hold it. ``(None, None)`` when there is no document.
        """
        node = self._root()
        if node is None:
            return None, None
        mark = node.start_mark
        for part in path:
            if isinstance(node, MappingNode) and isinstance(part, str):
                pair = next((kv for kv in node.value if _key_text(kv[0]) == part), None)
                if pair is None:
                    break
                mark, node = pair[0].start_mark, pair[1]
            elif isinstance(node, SequenceNode) and isinstance(part, int):
                if not 0 <= part < len(node.value):
                    break
                node = node.value[part]
                mark = node.start_mark
            else:
                break
        return mark.line + 1, mark.column + 1

    def problem(self, path: Sequence[str | int], message: str) -> Problem:
        """A :class:`Problem` at ``path`` with its line and column."""
        line, col = self.locate(path)
        return Problem(self.source, line, col, format_path(path), message)


@dataclass(frozen=True)
class Manifest:
    """A loaded, valid story and where it came from.

    ``locate`` and ``problem`` let later stages (plan-time checks) report against the lines of
    the file the writer wrote.
    """

    story: Story
    source: str
    _document: _Document = field(repr=False, compare=False)

    def locate(self, path: Sequence[str | int]) -> tuple[int | None, int | None]:
        """1-based (line, column) where ``path`` (e.g. ``("spec", "segments", 2, "id")``) is."""
        return self._document.locate(path)

    def problem(self, path: Sequence[str | int], message: str) -> Problem:
        """A :class:`Problem` at ``path`` of this manifest, with its line and column."""
        return self._document.problem(path, message)


def load_manifest(source: str | os.PathLike[str], data: bytes | None = None) -> Manifest:
    """Load and validate one manifest.

    ``source`` names the manifest in messages; when ``data`` is ``None`` it is also the file
    to read. Raises :class:`ManifestInvalid` listing every problem found.
    """
    name = os.fspath(source)
    if data is None:
        data = _read(name)
    with gc_paused():
        return _load(name, _decode(name, data))


def _load(name: str, text: str) -> Manifest:
    doc = _Document(name, _compose(name, text))
    if doc.root is None:
        raise ManifestInvalid([Problem(name, None, None, "", "the manifest is empty")])
    problems: list[Problem] = []
    tree = _Tree(doc, problems)
    value = tree.build(doc.root, ())
    if not isinstance(value, dict):
        problems.append(
            doc.problem((), "the top level must be a mapping (apiVersion, kind, metadata, spec)")
        )
        _raise(problems)
    return _validate(doc, text, value, problems, tree.settled)


def _validate(
    doc: _Document, text: str, value: dict[str, Any], problems: list[Problem],
    settled: list[Loc],
) -> Manifest:
    """Run the models and the story rules; a path reported once is not reported again below."""
    story: Story | None = None
    try:
        story = Story.model_validate(value)
    except ValidationError as exc:
        for loc, message in pydantic_errors.describe(exc, value):
            if not _under_any(loc, settled):
                problems.append(doc.problem(loc, message))
                settled.append(loc)
    found: list[tuple[Loc, Problem]] = []

    def report(loc: Loc, message: str) -> Problem:
        problem = doc.problem(loc, message)
        found.append((loc, problem))
        return problem

    storygraph.check_data(value, report)
    problems.extend(p for loc, p in found if not _under_any(loc, settled))
    if problems or story is None:
        _raise(problems)
    return Manifest(story, doc.source, _Document(doc.source, text=text))


def _under_any(loc: Loc, prefixes: Sequence[Loc]) -> bool:
    return any(loc[: len(p)] == p for p in prefixes)


def _raise(problems: list[Problem]) -> None:
    ordered = sorted(problems, key=lambda p: (p.line or 0, p.col or 0))
    if len(ordered) > MAX_PROBLEMS:
        more = len(ordered) - MAX_PROBLEMS
        ordered = ordered[:MAX_PROBLEMS] + [
            Problem(ordered[0].file, None, None, "", f"... and {more} more problems")
        ]
    raise ManifestInvalid(ordered)


# -- bytes and text ---------------------------------------------------------------------------


def _too_big(name: str, size: int) -> ManifestInvalid:
    return ManifestInvalid(
        [
            Problem(
                name,
                None,
                None,
                "",
                f"the manifest is {size} bytes; the limit is {MAX_MANIFEST_BYTES} bytes "
                f"({MAX_MANIFEST_BYTES // (1024 * 1024)} MiB)",
            )
        ]
    )


def _read(name: str) -> bytes:
    def fail(message: str) -> ManifestInvalid:
        return ManifestInvalid([Problem(name, None, None, "", message)])

    try:
        with open(name, "rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
            if len(data) > MAX_MANIFEST_BYTES:
                size = max(os.fstat(f.fileno()).st_size, len(data))
                raise _too_big(name, size)
    except FileNotFoundError:
        raise fail("no such file") from None
    except IsADirectoryError:
        raise fail("is a directory, not a manifest file") from None
    except PermissionError:
        raise fail("permission denied") from None
    except OSError as exc:
        raise fail(f"cannot read: {exc.strerror or exc}") from None
    return data


def _decode(name: str, data: bytes) -> str:
    if len(data) > MAX_MANIFEST_BYTES:
        raise _too_big(name, len(data))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ManifestInvalid(
            [Problem(name, line, col, "", f"not UTF-8 text (byte 0x{data[exc.start]:02x})")]
        ) from None


# -- YAML -------------------------------------------------------------------------------------


class _BoundExceeded(ComposerError):
    """One of reelfarm's own bounds on the composed document was exceeded."""


class _Bounded(Composer):
    """Composes nodes only (nothing is constructed): no aliases, bounded depth and count."""

    def _start_bounds(self) -> None:
        Composer.__init__(self)
        Resolver.__init__(self)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise ComposerError(None, None, "aliases (*name) are not allowed in a manifest", mark)
        self._depth += 1
        self._nodes += 1
        mark = self.peek_event().start_mark
        if self._depth > MAX_DEPTH:
            raise _BoundExceeded(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
        if self._nodes > MAX_NODES:
            raise _BoundExceeded(None, None, f"more than {MAX_NODES} values", mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _PyLoader(_Bounded, Reader, Scanner, Parser, Resolver):
    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        self._start_bounds()


if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _CLoader(_Bounded, CParser, Resolver):
        """libyaml's parser (events, with marks) under the same Python composer."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            self._start_bounds()

    class _CComposer(CParser, Resolver):
        """libyaml's parser and composer: nodes with marks, composed in C, bounds unchecked."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Resolver.__init__(self)

    _Loader: type[_Bounded] = _CLoader
else:  # pragma: no cover - PyYAML is normally built with libyaml
    _Loader = _PyLoader

_INDICATORS = "-?:,[{"


def _most_values(text: str) -> int:
    """An upper bound on the values (nodes) ``text`` composes to: every value but the root is
    introduced by an indicator (``-``, ``?``, ``:``, ``,``, ``[``, ``{``), and none introduces
    more than two (a mapping and its first key, or a key and its value)."""
    return 2 * sum(text.count(c) for c in _INDICATORS) + 1


def _compose(name: str, text: str) -> Node | None:
    bad = Reader.NON_PRINTABLE.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        col = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
        reason = f"character U+{ord(bad.group()):04X} is not allowed in YAML"
        raise ManifestInvalid([Problem(name, line, col, "", reason)])
    if _Loader is not _PyLoader and _most_values(text) <= 2 * MAX_NODES:
        root = _compose_in_c(text)
        if root is not _REFUSED:
            return root
    # Composed event by event, so that the first refusal is reported where it is.
    try:
        return _compose_with(_Loader, text)
    except MarkedYAMLError as exc:
        raise _yaml_problem(name, _own_bound_before(text, exc) or exc) from None
    except YAMLError as exc:  # pragma: no cover - every YAML error above is marked
        raise ManifestInvalid([Problem(name, None, None, "", f"YAML: {exc}")]) from None


_REFUSED = ScalarNode("", "")


def _compose_in_c(text: str) -> Node | None:
    """The document composed by libyaml, or :data:`_REFUSED` when it is not YAML or breaks a
    bound: an alias, nesting deeper than :data:`MAX_DEPTH`, more than :data:`MAX_NODES`
    values.

    The caller then composes a refused text again, event by event, to report its first problem
    at its place; only bad manifests pay for that. Only texts whose :func:`_most_values` is at
    most twice :data:`MAX_NODES` come here, so libyaml never builds more nodes than that.
    """
    loader = _CComposer(text)
    try:
        root = loader.get_single_node()
    except YAMLError:
        return _REFUSED
    finally:
        loader.dispose()
    if root is None:
        return None
    seen: set[int] = set()
    stack: list[tuple[Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if id(node) in seen or depth > MAX_DEPTH:  # a node met twice is an alias
            return _REFUSED
        seen.add(id(node))
        if isinstance(node, MappingNode):
            stack.extend((n, depth + 1) for pair in node.value for n in pair)
        elif isinstance(node, SequenceNode):
            stack.extend((n, depth + 1) for n in node.value)
    if len(seen) > MAX_NODES:
        return _REFUSED
    return root


def _compose_with(loader_type: type[_Bounded], text: str) -> Node | None:
    loader = loader_type(text)  # type: ignore[call-arg]
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def _own_bound_before(text: str, exc: MarkedYAMLError) -> _BoundExceeded | None:
    """reelfarm's own refusal of the text before a parser's refusal, if there is one.

    libyaml scans ahead of the composer, so its own limits (a nesting depth far above
    :data:`MAX_DEPTH`) can refuse a document before the composer has seen the level that
    reelfarm refuses. The text up to libyaml's refusal is composed again with the pure-Python
    parser, which does not scan ahead of those bounds: a document nested deeper than
    :data:`MAX_DEPTH` is then reported with reelfarm's message and position, whatever the
    PyYAML release. Only the prefix is read again, so the cost stays bounded by where libyaml
    stopped.
    """
    if isinstance(exc, _BoundExceeded) or _Loader is _PyLoader:
        return None
    mark = exc.problem_mark or exc.context_mark
    if mark is None:
        return None
    try:
        _compose_with(_PyLoader, text[: mark.index + 1])
    except _BoundExceeded as own:
        return own
    except YAMLError:
        return None
    return None


def _yaml_problem(name: str, exc: MarkedYAMLError) -> ManifestInvalid:
    """One marked YAML error as a manifest problem."""
    mark = exc.problem_mark or exc.context_mark
    message = exc.problem or exc.context or "invalid YAML"
    if exc.context and exc.problem:
        context = exc.context
        began = exc.context_mark
        if (
            context.startswith("while")
            and began is not None
            and mark is not None
            and began.line != mark.line
        ):
            context += f" that began on line {began.line + 1}"
        message = f"{exc.problem} ({context})"
    line = mark.line + 1 if mark else None
    col = mark.column + 1 if mark else None
    return ManifestInvalid([Problem(name, line, col, "", f"YAML: {message}")])


def _key_text(node: Node) -> str | None:
    return node.value if isinstance(node, ScalarNode) else None


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag


class _Tree:
    """Builds plain Python data from composed nodes, recording problems as it goes.

    What cannot be accepted (a duplicate key, a refused tag) is reported and left out; its path
    goes into the problems so that later stages do not report it a second time.
    """

    def __init__(self, doc: _Document, problems: list[Problem]) -> None:
        self.doc = doc
        self.problems = problems
        self.settled: list[Loc] = []  # paths already reported
        self.scalars = SafeConstructor()

    def report(self, loc: Loc, node: Node, message: str) -> None:
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        self.settled.append(loc)
        self.problems.append(Problem(self.doc.source, line, col, format_path(loc), message))

    def build(self, node: Node, loc: Loc) -> Any:
        if isinstance(node, MappingNode):
            if node.tag != f"{_TAG}map":
                return self.refuse(node, loc)
            return self.mapping(node, loc)
        if isinstance(node, SequenceNode):
            if node.tag != f"{_TAG}seq":
                return self.refuse(node, loc)
            return [self.build(item, loc + (i,)) for i, item in enumerate(node.value)]
        return self.scalar(node, loc)

    def refuse(self, node: Node, loc: Loc) -> None:
        self.report(loc, node, f"YAML tag {_short_tag(node.tag)} is not allowed")
        return None

    def mapping(self, node: MappingNode, loc: Loc) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = _key_text(key_node)
            if key is None:
                self.report(loc, key_node, "a key must be a plain name, not a list or mapping")
                continue
            if key_node.tag == f"{_TAG}merge":
                self.report(loc + (key,), key_node, "merge keys (<<) are not allowed")
                continue
            if key in out:
                self.report(
                    loc + (key,),
                    key_node,
                    f"duplicate key {key!r} (first on line {first_line[key]})",
                )
                continue
            first_line[key] = key_node.start_mark.line + 1
            out[key] = self.build(value_node, loc + (key,))
        return out

    def scalar(self, node: Node, loc: Loc) -> Any:
        tag = node.tag
        if tag not in _PLAIN_SCALARS:
            return self.refuse(node, loc)
        convert: Callable[[Any], Any]
        if tag == f"{_TAG}str" or tag == f"{_TAG}timestamp":
            return node.value  # no date fields: a date-like value stays the text written
        if tag == f"{_TAG}int" and len(node.value) > MAX_NUMBER_CHARS:
            self.report(loc, node, f"number is longer than {MAX_NUMBER_CHARS} characters")
            return None
        convert = {
            f"{_TAG}int": self.scalars.construct_yaml_int,
            f"{_TAG}float": self.scalars.construct_yaml_float,
            f"{_TAG}bool": self.scalars.construct_yaml_bool,
            f"{_TAG}null": self.scalars.construct_yaml_null,
        }[tag]
        try:
            return convert(node)
        except (ValueError, YAMLError):
            self.report(loc, node, f"not a valid {_short_tag(tag)[2:]}: {node.value[:40]!r}")
            return None
