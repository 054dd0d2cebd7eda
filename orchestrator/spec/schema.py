"""The JSON Schema of a story manifest, for editors and for tools outside reelfarm.

``reelfarm schema`` prints :func:`schema_text`; the same text is committed as
``manifests/story.schema.json`` (regenerate it with ``python -m orchestrator.schema``). The
schema covers field-level rules only: the whole-story rules (references, reachability, cycles)
are checked by ``reelfarm validate``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from .manifest import API_VERSION, Story

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "urn:reelfarm:schema:story:v1"


def story_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of :class:`~orchestrator.manifest.Story`."""
    schema = Story.model_json_schema(mode="validation")
    schema["$schema"] = SCHEMA_DIALECT
    schema["$id"] = SCHEMA_ID
    schema["title"] = f"reelfarm story manifest ({API_VERSION})"
    schema["description"] = (
        "A branching story: segments of shots joined by viewer choices. Field-level rules "
        "only; references, reachability and cycles are checked by `reelfarm validate`."
    )
    return schema


def schema_text() -> str:
    """:func:`story_json_schema` as committed: indented, keys sorted, a final newline."""
    return json.dumps(story_json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(schema_text())
