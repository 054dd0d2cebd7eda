"""orchestrator.loading: every bad manifest gives one clear problem per fault, with its line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from orchestrator.spec.errors import ManifestInvalid, Problem
from orchestrator.spec.loading import MAX_DEPTH, MAX_MANIFEST_BYTES, load_manifest

INVALID = Path(__file__).resolve().parent.parent / "manifests" / "invalid"

VALID = """\
apiVersion: reelfarm/v1
kind: Story
metadata:
  name: heist
  title: The Heist
spec:
  start: cold-open
  segments:
    - id: cold-open
      shots:
        - id: vault-exterior
          prompt: Night. Rain over a marble bank facade.
          duration: 3.0
        - id: mara-closeup
          prompt: Mara studies the vault door
          duration: 2.0
          continuity: previous
      choice:
        prompt: What does Mara do?
        options:
          - {label: Crack the safe, next: safe}
          - {label: Walk away, next: walk-away}
    - id: safe
      shots:
        - {id: dial, prompt: Fingers on the dial, duration: 2.0}
      next: escape
    - id: escape
      shots:
        - {id: run, prompt: Mara runs down the stairs, duration: 2.0}
    - id: walk-away
      shots:
        - {id: rain, prompt: Mara walks into the rain, duration: 2.0}
"""


class YamlSyntax(NamedTuple):
    """A YAML syntax problem: reelfarm's parts of it, never the parser's own words.

    The problem has this line and column and no field, its message is marked ``YAML:``, and when
    the parser names where the construct it was reading began, reelfarm adds that line.
    """

    line: int
    col: int
    began: int | None = None

    def check(self, problem: Problem, file: str) -> None:
        assert (problem.file, problem.line, problem.col, problem.path) == (
            file,
            self.line,
            self.col,
            "",
        ), problem
        assert problem.message.startswith("YAML: "), problem
        if self.began is not None:
            assert problem.message.endswith(f" that began on line {self.began})"), problem


def problems(text: str | bytes, source: str = "story.yaml") -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    with pytest.raises(ManifestInvalid) as info:
        load_manifest(source, data)
    return [str(p) for p in info.value.problems]


# -- a valid manifest -------------------------------------------------------------------------


def test_valid_manifest_loads_with_locations() -> None:
    m = load_manifest("story.yaml", VALID.encode())
    assert m.source == "story.yaml"
    assert m.story.name == "heist"
    assert [s.id for s in m.story.spec.segments] == ["cold-open", "safe", "escape", "walk-away"]
    assert m.story.spec.segments[0].shots[1].continuity == "previous"
    assert m.locate(("spec", "segments", 0, "shots", 1, "duration")) == (16, 11)
    assert m.locate(("spec", "segments", 2)) == (27, 7)
    # A path that was not written points at the deepest part that was.
    assert m.locate(("spec", "segments", 2, "choice", "default")) == (27, 7)
    problem = m.problem(("spec", "segments", 1, "next"), "backend 'x' is not installed")
    assert problem == Problem(
        "story.yaml", 26, 7, "spec.segments[1].next", "backend 'x' is not installed"
    )
    assert str(problem) == "story.yaml:26:7: spec.segments[1].next: backend 'x' is not installed"


def test_valid_manifest_read_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "heist.yaml"
    path.write_text(VALID)
    m = load_manifest(str(path))
    assert m.source == str(path)
    assert m.story.spec.start == "cold-open"


def test_json_is_accepted() -> None:
    text = (
        '{"apiVersion": "reelfarm/v1", "kind": "Story", "metadata": {"name": "tiny"},\n'
        ' "spec": {"start": "a", "segments": [{"id": "a", "shots": '
        '[{"id": "s", "prompt": "p", "duration": 1}]}]}}\n'
    )
    assert load_manifest("tiny.json", text.encode()).story.name == "tiny"


def test_a_date_like_prompt_stays_text() -> None:
    m = load_manifest(
        "story.yaml", VALID.replace("Mara runs down the stairs", "2024-01-01").encode()
    )
    assert m.story.spec.segments[2].shots[0].prompt == "2024-01-01"


# -- the committed bad manifests --------------------------------------------------------------

EXPECTED = {
    "bad-id.yaml": [
        "22:32: spec.segments[0].choice.options[1].next: "
        "must match [a-z0-9][a-z0-9_-]{0,63} (got '../../etc')",
        "30:7: spec.segments[3].id: must match [a-z0-9][a-z0-9_-]{0,63} (got '../../etc')",
    ],
    "bad-masters-path.yaml": [
        "10:19: spec.masters[1][1]: 'cold-open' does not lead to 'escape'",
        "11:8: spec.masters[2][0]: a path starts at the start segment 'cold-open', not 'safe'",
        "12:19: spec.masters[3][1]: a path ends at an ending, but 'safe' leads on to 'escape'",
    ],
    "cycle.yaml": [
        "30:7: spec.segments[2].next: the story loops: safe -> escape -> safe "
        "(stories must be acyclic)",
    ],
    "dangling-next.yaml": [
        "26:7: spec.segments[1].next: no segment has id 'getaway'",
        "27:7: spec.segments[2].id: segment 'escape' cannot be reached from the start segment "
        "'cold-open'",
    ],
    "duplicate-choice-label.yaml": [
        "22:14: spec.segments[0].choice.options[1].label: "
        "choice label 'Crack the safe' is used twice",
    ],
    "duplicate-id.yaml": [
        "32:12: spec.segments[3].shots[0].id: duplicate shot id 'dial' "
        "(first at spec.segments[1].shots[0])",
    ],
    "empty.yaml": [": the manifest is empty"],
    "negative-duration.yaml": [
        "13:11: spec.segments[0].shots[0].duration: must be > 0 (got -3.0)",
    ],
    "no-ending.yaml": [
        "8:3: spec.segments: no segment is an ending: "
        "at least one segment needs neither next nor choice",
        "34:7: spec.segments[3].next: the story loops: escape -> walk-away -> escape "
        "(stories must be acyclic)",
    ],
    "start-continuity-previous.yaml": [
        "14:11: spec.segments[0].shots[0].continuity: the first shot of the start segment "
        "'cold-open' has no shot before it to continue from; use 'cut'",
    ],
    "unknown-field.yaml": [
        "17:11: spec.segments[0].shots[1].colour: unknown field 'colour'",
    ],
    "unreachable-segment.yaml": [
        "30:7: spec.segments[3].id: segment 'walk-away' cannot be reached from the start "
        "segment 'cold-open'",
    ],
    # The quoted title opened on line 5 is never closed.
    "yaml-syntax-error.yaml": YamlSyntax(33, 1, began=5),
}


def test_every_committed_bad_manifest_has_expectations() -> None:
    assert sorted(p.name for p in INVALID.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_committed_bad_manifest(name: str) -> None:
    path = INVALID / name
    with pytest.raises(ManifestInvalid) as info:
        load_manifest(str(path))
    prefix = str(path)
    expected = EXPECTED[name]
    if isinstance(expected, YamlSyntax):
        assert len(info.value.problems) == 1
        expected.check(info.value.problems[0], prefix)
        return
    got = [str(p) for p in info.value.problems]
    assert got == [
        f"{prefix}{line}" if line.startswith(":") else f"{prefix}:{line}" for line in EXPECTED[name]
    ]
    assert all(p.file == prefix for p in info.value.problems)


# -- every problem at once --------------------------------------------------------------------


def test_all_problems_from_every_stage_are_reported_together() -> None:
    text = (
        VALID.replace("duration: 3.0", "duration: -1")
        .replace("          continuity: previous\n", "          colour: red\n")
        .replace("next: escape", "next: escap")
        .replace("{id: rain,", "{id: dial,")
        .replace("  title: The Heist\n", "")
    )
    assert problems(text) == [
        "story.yaml:12:11: spec.segments[0].shots[0].duration: must be > 0 (got -1)",
        "story.yaml:16:11: spec.segments[0].shots[1].colour: unknown field 'colour'",
        "story.yaml:25:7: spec.segments[1].next: no segment has id 'escap'; did you mean 'escape'?",
        "story.yaml:26:7: spec.segments[2].id: segment 'escape' cannot be reached from the "
        "start segment 'cold-open'",
        "story.yaml:31:12: spec.segments[3].shots[0].id: duplicate shot id 'dial' "
        "(first at spec.segments[1].shots[0])",
    ]


def test_manifest_invalid_prints_one_line_per_problem() -> None:
    with pytest.raises(ManifestInvalid) as info:
        load_manifest("a.yaml", VALID.replace("duration: 3.0", "duration: 0").encode())
    assert str(info.value) == (
        "a.yaml:13:11: spec.segments[0].shots[0].duration: must be > 0 (got 0)"
    )


def test_missing_field_points_at_the_mapping_that_should_hold_it() -> None:
    text = VALID.replace("  start: cold-open\n", "").replace(
        "        - {id: dial, prompt: Fingers on the dial, duration: 2.0}",
        "        - {id: dial, duration: 2.0}",
    )
    assert problems(text) == [
        "story.yaml:6:1: spec.start: required field missing",
        "story.yaml:24:11: spec.segments[1].shots[0].prompt: required field missing",
    ]


def test_a_segment_without_id_does_not_make_references_to_it_dangle() -> None:
    text = VALID.replace("    - id: safe\n      shots:", "    - shots:")
    assert problems(text) == ["story.yaml:23:7: spec.segments[1].id: required field missing"]


def test_field_level_messages() -> None:
    text = (
        VALID.replace("name: heist", "name: Heist!")
        .replace("title: The Heist", "title: 1984")
        .replace("  start: cold-open\n", "  start: cold-open\n  masters: everything\n")
        .replace("continuity: previous", "continuity: fade")
        .replace("prompt: What does Mara do?", "prompt: What does Mara do?\n        default: 2")
    )
    assert problems(text) == [
        "story.yaml:4:3: metadata.name: must match [a-z0-9][a-z0-9-]{0,62} (got 'Heist!')",
        "story.yaml:5:3: metadata.title: must be a string (got 1984; put it in quotes)",
        "story.yaml:8:3: spec.masters: must be 'all' or 'endings', or a list (got 'everything')",
        "story.yaml:18:11: spec.segments[0].shots[1].continuity: "
        "must be 'cut' or 'previous' (got 'fade')",
        "story.yaml:21:9: spec.segments[0].choice.default: "
        "default is 2 but there are only 2 options",
    ]


# -- bytes, text and YAML ---------------------------------------------------------------------


def test_ten_megabytes_of_junk_is_refused_before_parsing(tmp_path: Path) -> None:
    junk = bytes(range(256)) * (10 * 1024 * 1024 // 256)
    expected = (
        f"junk.yaml: the manifest is {len(junk)} bytes; "
        f"the limit is {MAX_MANIFEST_BYTES} bytes (2 MiB)"
    )
    assert problems(junk, "junk.yaml") == [expected]
    path = tmp_path / "junk.yaml"
    path.write_bytes(junk)
    with pytest.raises(ManifestInvalid) as info:
        load_manifest(str(path))
    assert [p.message for p in info.value.problems] == [expected.split(": ", 1)[1]]


def test_a_large_file_of_values_is_bounded() -> None:
    junk = ("- " + "\n- ".join(["a"] * 300_000)).encode()
    assert len(junk) <= MAX_MANIFEST_BYTES
    assert problems(junk) == ["story.yaml:250000:3: YAML: more than 250000 values"]


def test_missing_file_and_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ManifestInvalid) as info:
        load_manifest(str(missing))
    assert [str(p) for p in info.value.problems] == [f"{missing}: no such file"]
    with pytest.raises(ManifestInvalid) as info:
        load_manifest(tmp_path)
    assert [str(p) for p in info.value.problems] == [
        f"{tmp_path}: is a directory, not a manifest file"
    ]


def test_non_utf8_bytes_name_their_line() -> None:
    assert problems(b"apiVersion: reelfarm/v1\nkind: St\xe9ry\n") == [
        "story.yaml:2:9: not UTF-8 text (byte 0xe9)"
    ]


def test_control_characters_are_refused_with_their_line() -> None:
    assert problems("apiVersion: reelfarm/v1\nkind: \x07Story\n") == [
        "story.yaml:2:7: character U+0007 is not allowed in YAML"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "story.yaml: the manifest is empty"),
        ("# only a comment\n\n", "story.yaml: the manifest is empty"),
        (
            "- a\n- b\n",
            "story.yaml:1:1: the top level must be a mapping (apiVersion, kind, metadata, spec)",
        ),
        (
            "just text\n",
            "story.yaml:1:1: the top level must be a mapping (apiVersion, kind, metadata, spec)",
        ),
        ("a: 1\n---\nb: 2\n", YamlSyntax(2, 1)),
        ("metadata:\n  name: x\n title: y\n", YamlSyntax(3, 2, began=1)),
    ],
)
def test_document_level_problems(text: str, expected: str | YamlSyntax) -> None:
    if isinstance(expected, YamlSyntax):
        with pytest.raises(ManifestInvalid) as info:
            load_manifest("story.yaml", text.encode())
        assert len(info.value.problems) == 1
        expected.check(info.value.problems[0], "story.yaml")
    else:
        assert problems(text) == [expected]


def test_duplicate_keys_are_errors() -> None:
    text = VALID.replace("  title: The Heist\n", "  title: The Heist\n  name: other\n")
    assert problems(text) == [
        "story.yaml:6:3: metadata.name: duplicate key 'name' (first on line 4)"
    ]


def test_aliases_are_refused() -> None:
    laughs = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        laughs += f"{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
    assert problems(laughs) == [
        "story.yaml:2:8: YAML: aliases (*name) are not allowed in a manifest"
    ]


DEEP = {
    # libyaml scans flow collections far ahead of the composer and refuses them at its own depth
    # limit (1,000 in PyYAML 6.0.4), before reelfarm's composer sees level MAX_DEPTH + 1.
    "flow": ("[" * 100_000, 1, MAX_DEPTH + 1),
    "flow-small": ("[" * (MAX_DEPTH + 5), 1, MAX_DEPTH + 1),
    "block": ("- " * 3_000 + "x\n", 1, 2 * MAX_DEPTH + 1),
    "mapping": ("a: " + "{a: " * 3_000, 1, 4 * (MAX_DEPTH - 1) + 1),
}


@pytest.mark.parametrize("parser", ["libyaml", "python"])
@pytest.mark.parametrize("case", sorted(DEEP))
def test_deep_nesting_is_refused_with_reelfarms_limit(
    case: str, parser: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refusal is reelfarm's, at its own limit, whichever parser PyYAML uses."""
    from orchestrator.spec import loading

    if parser == "python":
        monkeypatch.setattr(loading, "_Loader", loading._PyLoader)
    elif not loading.yaml.__with_libyaml__:
        pytest.skip("this PyYAML is built without libyaml")
    text, line, col = DEEP[case]
    assert problems(text) == [
        f"story.yaml:{line}:{col}: YAML: nested deeper than {MAX_DEPTH} levels"
    ]


def test_validate_refuses_deep_nesting_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("[" * 100_000)
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"{path}:1:{MAX_DEPTH + 1}: YAML: nested deeper than {MAX_DEPTH} levels"
    ]
    assert "Traceback" not in proc.stderr


def test_python_tags_are_refused_and_never_constructed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    monkeypatch.setattr("os.system", lambda *a: calls.append(a))
    text = VALID.replace(
        "  title: The Heist", "  title: !!python/object/apply:os.system ['echo hi']"
    ).replace("prompt: Fingers on the dial", "prompt: !!python/name:os.system ''")
    assert problems(text) == [
        "story.yaml:5:10: metadata.title: YAML tag !!python/object/apply:os.system is not allowed",
        "story.yaml:25:30: spec.segments[1].shots[0].prompt: YAML tag !!python/name:os.system "
        "is not allowed",
    ]
    assert calls == []


def test_other_yaml_features_that_are_refused() -> None:
    text = VALID.replace(
        "  title: The Heist\n", "  title: The Heist\n  <<: {x: 1}\n  ? [a]\n  : b\n"
    ).replace("  start: cold-open\n", "  start: cold-open\n  seed: " + "9" * 80 + "\n")
    assert problems(text) == [
        "story.yaml:6:3: metadata.<<: merge keys (<<) are not allowed",
        "story.yaml:7:5: metadata: a key must be a plain name, not a list or mapping",
        "story.yaml:11:9: spec.seed: number is longer than 64 characters",
    ]


# -- ids never reach the file system ----------------------------------------------------------

_AUDIT: list[tuple[str, tuple[object, ...]]] | None = None


def _audit(event: str, args: tuple[object, ...]) -> None:
    if _AUDIT is not None and (event == "open" or event.startswith(("os.", "shutil."))):
        _AUDIT.append((event, args))


sys.addaudithook(_audit)


def test_a_path_like_id_never_reaches_a_file_system_call(tmp_path: Path) -> None:
    global _AUDIT
    data = (INVALID / "bad-id.yaml").read_bytes()
    assert b"../../etc" in data
    problems(data)  # once first, so that nothing is imported lazily below
    path = tmp_path / "bad-id.yaml"
    path.write_bytes(data)
    _AUDIT = []
    try:
        with pytest.raises(ManifestInvalid):
            load_manifest("bad-id.yaml", data)
        from_bytes = list(_AUDIT)
        _AUDIT.clear()
        with pytest.raises(ManifestInvalid):
            load_manifest(str(path))
        from_file = list(_AUDIT)
    finally:
        _AUDIT = None
    assert from_bytes == []
    assert [(event, args[0]) for event, args in from_file] == [("open", str(path))]
