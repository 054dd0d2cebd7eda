"""The fast planner gives what the plain one gives: keys, paths, YAML nodes.

* Keys made by :class:`~orchestrator.plan.keys.KeyMaker` (shared fields encoded once) are the
  keys of :func:`~orchestrator.plan.keys.render_key_document` hashed whole, for any inputs;
  equal inputs give equal keys in another process (another hash seed), and any changed
  rendering input gives another key.
* ``masters: endings`` paths from one walk are the first paths :func:`iter_paths` yields.
* A story whose path count is a 61-digit number plans without walking its paths.
* libyaml's composer gives the nodes and marks the event-by-event composer gives; a refused
  text is reported by the latter, so errors keep their line and column.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from storybuild import diamond_story, story_dict, write_compact
from test_keys import KEY_FIELDS, _other, stories

from orchestrator.plan.expand import expand, first_paths, iter_paths
from orchestrator.plan.keys import KeyMaker, canonical_json, render_key, render_key_document
from orchestrator.spec import loading
from orchestrator.spec.manifest import Story

REPO = Path(__file__).resolve().parents[1]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _made(fields: dict) -> str:
    rest = {k: v for k, v in fields.items() if k not in ("salt", "profile")}
    return KeyMaker(salt=fields["salt"], profile=fields["profile"]).key(**rest)


@SETTINGS
@given(KEY_FIELDS)
def test_key_maker_hashes_the_key_document_byte_for_byte(fields):
    assert _made(fields) == render_key(**fields)
    assert render_key(**fields) == __import__("hashlib").sha256(
        canonical_json(render_key_document(**fields))).hexdigest()


@SETTINGS
@given(KEY_FIELDS, st.sampled_from(sorted(KEY_FIELDS.wrapped_strategy.mapping)))
def test_key_maker_changes_the_key_when_any_rendering_input_changes(fields, name):
    assert _made(copy.deepcopy(fields)) == _made(fields)
    assert _made({**fields, name: _other(fields[name])}) != _made(fields)


_CHILD = """
import json, sys
from orchestrator.plan.keys import KeyMaker, render_key
out = []
for f in json.load(sys.stdin):
    rest = {k: v for k, v in f.items() if k not in ("salt", "profile")}
    out.append([render_key(**f), KeyMaker(salt=f["salt"], profile=f["profile"]).key(**rest)])
print(json.dumps(out))
"""


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(KEY_FIELDS, min_size=1, max_size=25))
def test_keys_are_the_same_in_another_process(batch):
    # JSON carries the inputs exactly (floats by repr, strings as written, key order kept).
    sent = json.dumps(batch)
    assert json.loads(sent) == batch
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "12345"}
    proc = subprocess.run([sys.executable, "-c", _CHILD], input=sent, capture_output=True,
                          text=True, env=env, timeout=120, check=True)
    here = [[render_key(**f), _made(f)] for f in batch]
    assert json.loads(proc.stdout) == here


def test_keys_of_unicode_inputs_do_not_depend_on_their_normal_form():
    fields = dict(salt="", backend="b", backend_version="1", model=None, revision=None,
                  params={"caf\u00e9": "\u00e9"}, prompt="caf\u00e9", negative_prompt="",
                  seed=1, frames=2, profile={"\u00e9": 1}, upstream=None)
    nfd = dict(fields, params={"cafe\u0301": "e\u0301"}, prompt="cafe\u0301",
               profile={"e\u0301": 1})
    assert _made(nfd) == _made(fields) == render_key(**nfd) == render_key(**fields)


# -- paths ----------------------------------------------------------------------------------


@SETTINGS
@given(stories())
def test_each_endings_path_is_the_first_path_to_it(doc):
    s = Story.model_validate(doc)
    firsts = first_paths(s)
    endings = {seg.id for seg in s.spec.segments if seg.is_ending}
    assert set(firsts) == endings  # every segment of a valid story is reachable
    for ending, path in firsts.items():
        assert path == next(iter_paths(s, to=ending))
    # in the order a default-first walk meets them: the order of all paths' endings
    seen: list[str] = []
    for path in iter_paths(s):
        if path[-1] not in seen:
            seen.append(path[-1])
    assert list(firsts) == seen


def test_a_story_with_a_61_digit_path_count_plans_from_its_tasks():
    hub, ways, hubs = 8, 4, 101
    doc = diamond_story(hubs * (hub * ways + ways), hub=hub, ways=ways)
    plan = expand(Story.model_validate(doc), max_tasks=10_000)
    paths = ways ** (hubs - 1)
    assert len(str(paths)) == 61
    assert plan.naive_tasks == paths * (hubs * hub + hubs - 1)
    assert len(plan.tasks) == hub + (hubs - 1) * (hub * ways + ways)
    (master,) = plan.branches
    assert master.segments == [s for i in range(hubs) for s in (f"h{i}", f"x{i}-0")][:-1]
    # the longest chain: an option (a cut), then the next hub's shots that continue from it
    chain = plan.critical_path()
    assert len(chain) == 1 + hub and chain[0].startswith("x") and "~" in chain[1]


# -- YAML -------------------------------------------------------------------------------------


def _shape(node):
    """A node tree as plain data: kind, tag, value, style and both marks of every node (a
    plain scalar's style is ``None`` from one composer, ``""`` from the other)."""
    marks = (node.start_mark.line, node.start_mark.column, node.start_mark.index,
             node.end_mark.line, node.end_mark.column, node.end_mark.index)
    if isinstance(node.value, list):
        items = [[_shape(k), _shape(v)] if isinstance(node.value[0], tuple) else _shape(k)
                 for k, v in ((i if isinstance(i, tuple) else (i, None)) for i in node.value)]
        return [type(node).__name__, node.tag, marks, items]
    return [type(node).__name__, node.tag, marks, node.value, node.style or None]


@pytest.mark.skipif(not loading.yaml.__with_libyaml__, reason="PyYAML built without libyaml")
@SETTINGS
@given(stories(), st.sampled_from([None, True, False]))
def test_libyaml_composes_the_nodes_and_marks_of_the_event_composer(doc, flow):
    import yaml

    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=flow, allow_unicode=True)
    fast = loading._compose_in_c(text)
    assert fast is not loading._REFUSED
    assert _shape(fast) == _shape(loading._compose_with(loading._CLoader, text))
    assert _shape(fast) == _shape(loading._compose_with(loading._PyLoader, text))


@pytest.mark.skipif(not loading.yaml.__with_libyaml__, reason="PyYAML built without libyaml")
def test_a_valid_manifest_is_composed_by_libyaml(tmp_path, monkeypatch):
    path = write_compact(tmp_path / "story.yaml", diamond_story(400))

    def event_by_event(*_a):
        raise AssertionError("composed event by event")

    monkeypatch.setattr(loading, "_compose_with", event_by_event)
    assert len(loading.load_manifest(path).story.spec.segments) > 10


@pytest.mark.parametrize("text, bound", [
    ("a: &x [1]\nb: *x\n", "alias"),
    ("a: " + "[" * (loading.MAX_DEPTH + 2) + "]" * (loading.MAX_DEPTH + 2) + "\n", "depth"),
])
def test_a_text_libyaml_accepts_but_reelfarm_refuses_is_composed_again(text, bound):
    assert loading._compose_in_c(text) is loading._REFUSED
    with pytest.raises(loading.ManifestInvalid) as e:
        loading.load_manifest("story.yaml", text.encode())
    (problem,) = e.value.problems
    # the alias itself; the first list nested deeper than MAX_DEPTH (the mapping is level 1)
    where = (2, 4) if bound == "alias" else (1, loading.MAX_DEPTH + 3)
    assert (problem.line, problem.col) == where


def test_more_values_than_the_bound_are_refused_at_the_first_one_over(monkeypatch):
    monkeypatch.setattr(loading, "MAX_NODES", 50)
    doc = story_dict([{"id": "a", "shots": [{"id": f"s{i}", "prompt": "p", "duration": 1.0}
                                            for i in range(10)]}])
    import yaml

    text = yaml.safe_dump(doc, sort_keys=False)
    assert loading._compose_in_c(text) is loading._REFUSED
    with pytest.raises(loading.ManifestInvalid) as e:
        loading.load_manifest("story.yaml", text.encode())
    assert [p.message for p in e.value.problems] == ["YAML: more than 50 values"]


# -- published JSON ---------------------------------------------------------------------------

_doc_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=10,
)


@SETTINGS
@given(st.dictionaries(st.text(max_size=8), _doc_values, max_size=5) | _doc_values)
def test_published_json_reads_back_as_the_document(doc):
    from orchestrator.store.output_api import json_text

    text = json_text(doc)
    assert json.loads(text) == doc and text.endswith("\n")
    if isinstance(doc, dict):  # one top-level key, or one item of a top-level list, a line
        lines = text.splitlines()
        assert len(lines) == 2 + sum(len(v) + 2 if isinstance(v, list) and v else 1
                                     for v in doc.values()) - (0 if doc else 1)


def test_a_plan_problem_is_located_after_the_nodes_were_let_go(tmp_path):
    """A loaded manifest keeps its text, not its nodes; a plan-time problem composes them again
    and still gets its line and column."""
    path = write_compact(tmp_path / "story.yaml", diamond_story(400))
    text = path.read_text().replace("{id: h3-2, prompt: p", "{renderer: {backend: nosuch}, "
                                    "id: h3-2, prompt: p")
    path.write_text(text)
    m = loading.load_manifest(path)
    assert m._document.root is None
    from orchestrator.plan.expand import PlanError

    with pytest.raises(PlanError) as e:
        expand(m.story)
    ((where, message),) = e.value.problems
    problem = m.problem(where, message)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "nosuch" in row)
    col = text.splitlines()[line - 1].index("backend") + 1
    assert (problem.file, problem.line, problem.col) == (str(path), line, col)
    assert problem.path.endswith("shots[2].renderer.backend")
