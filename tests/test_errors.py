"""orchestrator.errors and orchestrator.pydantic_errors: how problems read."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from orchestrator.spec.errors import ManifestInvalid, Problem, format_path
from orchestrator.spec.manifest import Profile, RendererSpec, Shot, Story
from orchestrator.spec.pydantic_errors import describe


def test_problem_text_omits_what_is_unknown() -> None:
    path = "spec.segments[3].choice.options[1].next"
    assert str(Problem("s.yaml", 12, 5, path, "no segment has id 'x'")) == (
        "s.yaml:12:5: spec.segments[3].choice.options[1].next: no segment has id 'x'"
    )
    assert str(Problem("s.yaml", 12, None, "spec", "m")) == "s.yaml:12: spec: m"
    assert str(Problem("s.yaml", None, None, "", "no such file")) == "s.yaml: no such file"


def test_format_path() -> None:
    assert format_path(("spec", "segments", 3, "choice", "options", 1, "next")) == (
        "spec.segments[3].choice.options[1].next"
    )
    assert format_path(("spec", "masters", 0, 2)) == "spec.masters[0][2]"
    assert format_path(()) == ""


def test_manifest_invalid_needs_problems() -> None:
    with pytest.raises(ValueError):
        ManifestInvalid([])
    err = ManifestInvalid([Problem("a", 1, 2, "x", "m"), Problem("a", None, None, "", "n")])
    assert str(err) == "a:1:2: x: m\na: n"
    assert len(err.problems) == 2


def _describe(model: type, data: object) -> list[tuple[tuple[str | int, ...], str]]:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return describe(info.value, data)


def test_messages_for_field_rules() -> None:
    step = next(
        m.multiple_of for m in Profile.model_fields["width"].metadata if hasattr(m, "multiple_of")
    )
    width = 64 * step + 1
    assert _describe(Profile, {"width": width, "height": 32, "fps": "fast", "depth": 8}) == [
        (("width",), f"must be a multiple of {step} (got {width})"),
        (("height",), "must be >= 64 (got 32)"),
        (("fps",), "must be an integer (got a string)"),
        (("depth",), "unknown field 'depth'"),
    ]
    assert _describe(Shot, {"id": "a", "prompt": "", "duration": 601}) == [
        (("prompt",), "must not be empty"),
        (("duration",), "must be <= 600 (got 601)"),
    ]
    assert _describe(RendererSpec, {"resources": {"a b": 1}, "steps": [1]}) == [
        (("steps",), "must be an integer (got a list)"),
        (("resources", "a b"), "must match [A-Za-z0-9_.:/-]{1,128} (got 'a b')"),
    ]


def test_union_members_are_not_named_in_paths() -> None:
    base = {
        "apiVersion": "reelfarm/v1",
        "kind": "Story",
        "metadata": {"name": "t"},
        "spec": {
            "start": "a",
            "segments": [{"id": "a", "shots": [{"id": "s", "prompt": "p", "duration": 1}]}],
        },
    }
    base["spec"]["masters"] = [["a", "B"]]
    assert _describe(Story, base) == [
        (("spec", "masters", 0, 1), "must match [a-z0-9][a-z0-9_-]{0,63} (got 'B')"),
    ]
    base["spec"]["masters"] = 3
    assert _describe(Story, base) == [
        (("spec", "masters"), "must be 'all' or 'endings', or a list (got a number)"),
    ]
    base["spec"]["masters"] = "all"
    base["apiVersion"] = "reelfarm/v2"
    base["spec"]["segments"] = []
    assert _describe(Story, base) == [
        (("apiVersion",), "must be 'reelfarm/v1' (got 'reelfarm/v2')"),
        (("spec", "segments"), "must have at least 1 item"),
    ]
