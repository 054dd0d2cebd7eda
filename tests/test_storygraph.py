"""orchestrator.storygraph: whole-story rules and the graph helpers over segments."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from orchestrator.spec.errors import ManifestInvalid, Problem
from orchestrator.spec.loading import load_manifest
from orchestrator.spec.manifest import Story
from orchestrator.spec.storygraph import (
    StoryCycleError,
    check_data,
    check_story,
    find_cycle,
    predecessors,
    successors,
    topological_order,
)


def story_yaml(segments: str, extra: str = "") -> str:
    """A manifest whose spec.segments is ``segments`` (YAML list items at column 0)."""
    head = (
        "apiVersion: reelfarm/v1\nkind: Story\nmetadata: {name: t}\n"
        f"spec:\n  start: intro\n{extra}  segments:\n"
    )
    return head + textwrap.indent(textwrap.dedent(segments), "    ")


# A diamond that reconverges: intro -> (left | right) -> finale, plus an epilogue ending.
DIAMOND = story_yaml("""\
    - id: intro
      shots: [{id: s1, prompt: p, duration: 1}]
      choice:
        default: 1
        options:
          - {label: Left, next: left}
          - {label: Right, next: right}
    - id: left
      shots: [{id: s2, prompt: p, duration: 1}]
      next: finale
    - id: right
      shots: [{id: s3, prompt: p, duration: 1}]
      next: finale
    - id: finale
      shots: [{id: s4, prompt: p, duration: 1, continuity: previous}]
      choice:
        options:
          - {label: Stay, next: epilogue}
    - id: epilogue
      shots: [{id: s5, prompt: p, duration: 1}]
    """)


def diamond() -> Story:
    return load_manifest("diamond.yaml", DIAMOND.encode()).story


def problems(text: str) -> list[str]:
    with pytest.raises(ManifestInvalid) as info:
        load_manifest("s.yaml", text.encode())
    return [str(p) for p in info.value.problems]


# -- helpers ----------------------------------------------------------------------------------


def test_successors_put_the_default_option_first() -> None:
    assert successors(diamond()) == {
        "intro": ["right", "left"],
        "left": ["finale"],
        "right": ["finale"],
        "finale": ["epilogue"],
        "epilogue": [],
    }


def test_predecessors_in_manifest_order() -> None:
    assert predecessors(diamond()) == {
        "intro": [],
        "left": ["intro"],
        "right": ["intro"],
        "finale": ["left", "right"],
        "epilogue": ["finale"],
    }


def test_topological_order_keeps_manifest_order_between_independent_segments() -> None:
    assert topological_order(diamond()) == ["intro", "left", "right", "finale", "epilogue"]


def test_topological_order_puts_every_segment_after_those_leading_to_it() -> None:
    text = story_yaml("""\
        - id: end
          shots: [{id: a, prompt: p, duration: 1}]
        - id: middle
          shots: [{id: b, prompt: p, duration: 1}]
          next: end
        - id: intro
          shots: [{id: c, prompt: p, duration: 1}]
          next: middle
        """)
    assert topological_order(load_manifest("x.yaml", text.encode()).story) == [
        "intro",
        "middle",
        "end",
    ]


def test_topological_order_refuses_a_cycle() -> None:
    # Field-valid but cyclic: built without the loader, which would refuse it.
    data = yaml.safe_load(
        DIAMOND.replace("next: finale\n    - id: right", "next: intro\n    - id: right")
    )
    story = Story.model_validate(data)
    with pytest.raises(StoryCycleError) as info:
        topological_order(story)
    assert info.value.cycle == ["intro", "left", "intro"]
    assert str(info.value) == "the story loops: intro -> left -> intro"


def test_find_cycle() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": []}) is None
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["b"]}) == ["b", "c", "b"]
    assert find_cycle({"a": ["a"]}) == ["a", "a"]
    # in edge direction, from the cycle's first segment in the graph's order
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"c": ["a"], "a": ["b"], "b": ["c"]}) == ["c", "a", "b", "c"]
    assert find_cycle({"x": ["a"], "a": ["b", "x"], "b": []}) == ["x", "a", "x"]


# -- rules on a Story and on plain data --------------------------------------------------------


def test_a_sound_story_has_no_problems() -> None:
    assert check_story(diamond()) == []


def test_check_data_reports_with_paths_by_default() -> None:
    data = yaml.safe_load(DIAMOND.replace("start: intro", "start: intr"))
    assert check_data(data) == [
        Problem(
            "<story>", None, None, "spec.start", "no segment has id 'intr'; did you mean 'intro'?"
        )
    ]


def test_check_data_uses_the_given_report() -> None:
    data = yaml.safe_load(DIAMOND.replace("{id: s5,", "{id: s1,"))
    seen: list[tuple[tuple[str | int, ...], str]] = []

    def report(loc: tuple[str | int, ...], message: str) -> Problem:
        seen.append((loc, message))
        return Problem("f", 1, 1, "", message)

    assert len(check_data(data, report)) == 1
    assert seen == [
        (
            ("spec", "segments", 4, "shots", 0, "id"),
            "duplicate shot id 's1' (first at spec.segments[0].shots[0])",
        )
    ]


def test_check_data_tolerates_shapes_it_cannot_read() -> None:
    assert check_data(None) == []
    assert check_data({"spec": []}) == []
    assert check_data({"spec": {"start": "a", "segments": "none"}}) == []


# -- rules through the loader, with lines ------------------------------------------------------


def test_duplicate_segment_id() -> None:
    text = DIAMOND.replace("- id: right", "- id: left")
    assert problems(text) == [
        "s.yaml:13:28: spec.segments[0].choice.options[1].next: no segment has id 'right'",
        "s.yaml:17:7: spec.segments[2].id: duplicate segment id 'left' (first at spec.segments[1])",
    ]


def test_dangling_start_and_option() -> None:
    text = DIAMOND.replace("start: intro", "start: opening").replace("next: right}", "next: rite}")
    assert problems(text) == [
        "s.yaml:5:3: spec.start: no segment has id 'opening'",
        "s.yaml:13:28: spec.segments[0].choice.options[1].next: no segment has id 'rite'; "
        "did you mean 'right'?",
    ]


def test_every_cycle_is_named_at_the_edge_that_closes_it() -> None:
    text = DIAMOND.replace(
        "      choice:\n        options:\n          - {label: Stay, next: epilogue}",
        "      choice:\n        options:\n          - {label: Stay, next: epilogue}\n"
        "          - {label: Again, next: left}",
    ).replace(
        "{id: s5, prompt: p, duration: 1}]",
        "{id: s5, prompt: p, duration: 1}]\n      next: epilogue",
    )
    assert problems(text) == [
        "s.yaml:6:3: spec.segments: no segment is an ending: at least one segment needs "
        "neither next nor choice",
        "s.yaml:25:28: spec.segments[3].choice.options[1].next: the story loops: "
        "left -> finale -> left (stories must be acyclic)",
        "s.yaml:28:7: spec.segments[4].next: the story loops: epilogue -> epilogue "
        "(stories must be acyclic)",
    ]


def test_unreachable_segments_are_each_named() -> None:
    text = DIAMOND + textwrap.indent(
        textwrap.dedent("""\
            - id: lost
              shots: [{id: s6, prompt: p, duration: 1}]
              next: also-lost
            - id: also-lost
              shots: [{id: s7, prompt: p, duration: 1}]
            """),
        "    ",
    )
    assert problems(text) == [
        "s.yaml:27:7: spec.segments[5].id: segment 'lost' cannot be reached from the start "
        "segment 'intro'",
        "s.yaml:30:7: spec.segments[6].id: segment 'also-lost' cannot be reached from the "
        "start segment 'intro'",
    ]


def test_continuity_previous_is_refused_only_on_the_start_segments_first_shot() -> None:
    text = DIAMOND.replace(
        "[{id: s1, prompt: p, duration: 1}]",
        "[{id: s1, prompt: p, duration: 1, continuity: previous}]",
    )
    assert problems(text) == [
        "s.yaml:8:48: spec.segments[0].shots[0].continuity: the first shot of the start "
        "segment 'intro' has no shot before it to continue from; use 'cut'",
    ]
    # The same on a segment that has predecessors is fine (finale's first shot above).
    assert diamond().segment("finale").shots[0].continuity == "previous"


def test_masters_paths() -> None:
    good = (
        "  masters:\n"
        "    - [intro, left, finale, epilogue]\n"
        "    - [intro, right, finale, epilogue]\n"
    )
    story = load_manifest(
        "m.yaml", DIAMOND.replace("  segments:\n", good + "  segments:\n", 1).encode()
    )
    assert story.story.spec.masters == [
        ["intro", "left", "finale", "epilogue"],
        ["intro", "right", "finale", "epilogue"],
    ]
    bad = (
        "  masters:\n"
        "    - [intro, left, finale, epilogue]\n"
        "    - [intro, left, finale, epilogue]\n"
        "    - [intro, finale, epilogue]\n"
        "    - [intro, nowhere, epilogue]\n"
        "    - [left, finale]\n"
    )
    text = DIAMOND.replace("  segments:\n", bad + "  segments:\n", 1)
    assert problems(text) == [
        "s.yaml:8:7: spec.masters[1]: the same path as spec.masters[0]",
        "s.yaml:9:15: spec.masters[2][1]: 'intro' does not lead to 'finale'",
        "s.yaml:10:15: spec.masters[3][1]: no segment has id 'nowhere'",
        "s.yaml:11:8: spec.masters[4][0]: a path starts at the start segment 'intro', not 'left'",
        "s.yaml:11:14: spec.masters[4][1]: a path ends at an ending, but 'finale' leads on to "
        "'epilogue'",
    ]
