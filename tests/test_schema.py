"""orchestrator.schema: the committed JSON Schema is current and agrees with the models."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from orchestrator.spec.schema import SCHEMA_DIALECT, SCHEMA_ID, schema_text, story_json_schema

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "manifests" / "story.schema.json"


def test_committed_schema_is_current() -> None:
    # Regenerate with: python -m orchestrator.schema > manifests/story.schema.json
    assert COMMITTED.read_text(encoding="utf-8") == schema_text()


def test_schema_header_and_format() -> None:
    schema = story_json_schema()
    assert schema["$schema"] == SCHEMA_DIALECT
    assert schema["$id"] == SCHEMA_ID
    assert schema["title"] == "reelfarm story manifest (reelfarm/v1)"
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == ["apiVersion", "kind", "metadata", "spec"]
    text = schema_text()
    assert text.endswith("}\n")
    assert json.loads(text) == schema
    jsonschema.Draft202012Validator.check_schema(schema)


def test_schema_accepts_the_examples_and_refuses_unknown_fields() -> None:
    validator = jsonschema.Draft202012Validator(story_json_schema())
    for path in sorted(ROOT.glob("manifests/*.yaml")):
        assert list(validator.iter_errors(yaml.safe_load(path.read_text()))) == [], path.name
    bad = yaml.safe_load((ROOT / "manifests" / "invalid" / "unknown-field.yaml").read_text())
    errors = list(validator.iter_errors(bad))
    assert [(e.validator, list(e.absolute_path)) for e in errors] == [
        ("additionalProperties", ["spec", "segments", 0, "shots", 1])
    ]
    assert "colour" in errors[0].instance
    bad_id = yaml.safe_load((ROOT / "manifests" / "invalid" / "bad-id.yaml").read_text())
    paths = sorted(list(e.absolute_path) for e in validator.iter_errors(bad_id))
    # The option's next is one level inside a nullable union, so the error is the choice's.
    assert paths == [["spec", "segments", 0, "choice"], ["spec", "segments", 3, "id"]]
