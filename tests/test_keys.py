"""Cache keys: canonical JSON, and properties over random branching stories (hypothesis)."""

from __future__ import annotations

import copy
import json
import unicodedata

import pytest
from backends_for_tests import SleepBackend, use
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from storybuild import story_dict

from orchestrator.plan.expand import expand
from orchestrator.plan.keys import KEY_SCHEMA, canonical_json, derive_seed, render_key
from orchestrator.spec.manifest import Story

use(SleepBackend("still"))


def test_canonical_json_sorts_keys_and_normalises_strings():
    assert canonical_json({"b": 1, "a": [True, None, 2.5]}) == b'{"a":[true,null,2.5],"b":1}'
    # NFC: a precomposed e-acute and e + combining accent encode the same
    assert canonical_json("caf\u00e9") == canonical_json("cafe\u0301")
    assert canonical_json(5.0) != canonical_json(5)
    assert canonical_json("a\"b\\\n\x01é") == '"a\\"b\\\\\\n\\u0001é"'.encode()
    assert canonical_json({"é": 0.1}) == '{"é":0.1}'.encode()  # UTF-8, float repr


def test_derived_seed_is_stable_and_depends_on_prompt():
    assert derive_seed(7, "rain") == derive_seed(7, "rain")
    assert derive_seed(7, "rain") != derive_seed(8, "rain")
    assert derive_seed(7, "rain") != derive_seed(7, "snow")


@st.composite
def stories(draw):
    """A random valid story: a DAG of segments reachable from s0, with continuity shots."""
    n = draw(st.integers(1, 7))
    succ: dict[int, set[int]] = {i: set() for i in range(n)}
    for j in range(1, n):  # every segment has a predecessor: all reachable
        succ[draw(st.integers(0, j - 1))].add(j)
    for i in range(n):
        for j in range(i + 1, n):
            if draw(st.integers(0, 4)) == 0:
                succ[i].add(j)
    segments = []
    words = st.text(alphabet="abcdefgh ", min_size=1, max_size=12)
    for i in range(n):
        shots = []
        for k in range(draw(st.integers(1, 3))):
            cont = "cut" if (i == 0 and k == 0) else draw(st.sampled_from(["cut", "previous"]))
            shots.append({"id": f"s{i}-{k}", "prompt": draw(words) + f" {i}.{k}",
                          "duration": draw(st.sampled_from([0.25, 0.5, 1.0])),
                          "continuity": cont})
        seg = {"id": f"g{i}", "shots": shots}
        nxt = sorted(succ[i])
        if len(nxt) == 1 and draw(st.booleans()):
            seg["next"] = f"g{nxt[0]}"
        elif nxt:
            seg["choice"] = {"default": draw(st.integers(0, len(nxt) - 1)),
                             "options": [{"label": f"go {j}", "next": f"g{j}"} for j in nxt]}
        segments.append(seg)
    return story_dict(segments, renderer={"backend": "still", "steps": 4})


def _plan(doc):
    return expand(Story.model_validate(doc), max_branches=10_000)


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(stories())
def test_plan_invariants(doc):
    plan = _plan(doc)
    shots = {s["id"]: s for seg in doc["spec"]["segments"] for s in seg["shots"]}
    index = {t.id: i for i, t in enumerate(plan.tasks)}
    for b in plan.branches:
        assert len(b.tasks) == len(b.shots)
        for i, (tid, sid) in enumerate(zip(b.tasks, b.shots, strict=True)):
            task = plan.by_id[tid]
            assert task.shot == sid
            if shots[sid]["continuity"] == "previous":
                assert task.upstream == b.tasks[i - 1]  # conditioned on what plays before it
            else:
                assert task.upstream is None
    for t in plan.tasks:
        if t.upstream is not None:
            assert index[t.upstream] < index[t.id]
            assert t.upstream_key == plan.by_id[t.upstream].key
    assert len(plan.tasks) <= plan.naive_tasks
    assert plan.naive_tasks == sum(len(b.shots) for b in plan.branches)  # masters: all
    assert [t.key for t in _plan(doc).tasks] == [t.key for t in plan.tasks]  # stable


def _downstream(plan, tid):
    out, stack = {tid}, [tid]
    while stack:
        for d in plan.dependents[stack.pop()]:
            out.add(d)
            stack.append(d)
    return out


CHANGES = {
    "prompt": lambda s: s.__setitem__("prompt", s["prompt"] + " again"),
    "seed": lambda s: s.__setitem__("seed", 12345),
    "model": lambda s: s.setdefault("renderer", {}).__setitem__("model", "other-model"),
    "revision": lambda s: s.setdefault("renderer", {}).__setitem__("revision", "v2"),
    "steps": lambda s: s.setdefault("renderer", {}).__setitem__("steps", 99),
    "duration": lambda s: s.__setitem__("duration", s["duration"] + 1.0),
}


@SETTINGS
@given(stories(), st.sampled_from(sorted(CHANGES)), st.data())
def test_changing_a_render_input_rekeys_exactly_that_shot_and_its_dependents(doc, change, data):
    plan = _plan(doc)
    shots = [s for seg in doc["spec"]["segments"] for s in seg["shots"]]
    target = data.draw(st.sampled_from([s["id"] for s in shots]))
    doc2 = copy.deepcopy(doc)
    CHANGES[change](next(s for seg in doc2["spec"]["segments"] for s in seg["shots"]
                         if s["id"] == target))
    plan2 = _plan(doc2)
    affected = set().union(*(_downstream(plan, t.id) for t in plan.tasks if t.shot == target))
    for t in plan.tasks:
        changed = plan2.by_id[t.id].key != t.key
        assert changed == (t.id in affected), (change, t.id)


@SETTINGS
@given(stories())
def test_profile_and_salt_change_every_key(doc):
    plan = _plan(doc)
    doc2 = copy.deepcopy(doc)
    doc2["spec"]["profile"]["fps"] = 9
    keys = {t.key for t in plan.tasks}
    assert keys.isdisjoint(t.key for t in _plan(doc2).tasks)
    salted = expand(Story.model_validate(doc), salt="batch-2", max_branches=10_000)
    assert keys.isdisjoint(t.key for t in salted.tasks)


@SETTINGS
@given(stories())
def test_renaming_ids_and_titles_keeps_every_key(doc):
    plan = _plan(doc)
    ren = {}
    doc2 = copy.deepcopy(doc)
    doc2["metadata"] = {"name": "renamed", "title": "Another title"}
    for seg in doc2["spec"]["segments"]:
        ren[seg["id"]] = "x" + seg["id"]
    sp = doc2["spec"]
    sp["start"] = ren[sp["start"]]
    for seg in sp["segments"]:
        seg["id"] = ren[seg["id"]]
        if "next" in seg:
            seg["next"] = ren[seg["next"]]
        for o in seg.get("choice", {}).get("options", []):
            o["next"] = ren[o["next"]]
        for s in seg["shots"]:
            s["id"] = "x" + s["id"]
    plan2 = _plan(doc2)
    assert [t.key for t in plan2.tasks] == [t.key for t in plan.tasks]


# -- render_key itself ------------------------------------------------------------------------

_text = st.text(max_size=20)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
KEY_FIELDS = st.fixed_dictionaries({
    "salt": _text,
    "backend": _text,
    "backend_version": _text,
    "model": st.none() | _text,
    "revision": st.none() | _text,
    "params": st.dictionaries(_text, _json, max_size=4),
    "prompt": _text,
    "negative_prompt": _text,
    "seed": st.integers(0, 2**63 - 1),
    "frames": st.integers(1, 10_000),
    "profile": st.dictionaries(_text, _json, max_size=4),
    "upstream": st.none() | st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
})


def _other(value):
    """A value of the same field that is surely different."""
    if value is None:
        return "set"
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, int):
        return value + 1
    return {**value, "__changed__": 1}


@SETTINGS
@given(KEY_FIELDS, st.sampled_from(sorted(KEY_FIELDS.wrapped_strategy.mapping)))
def test_keys_are_equal_for_equal_inputs_and_differ_when_any_input_changes(fields, name):
    assert render_key(**copy.deepcopy(fields)) == render_key(**fields)
    changed = {**fields, name: _other(fields[name])}
    assert render_key(**changed) != render_key(**fields)


@SETTINGS
@given(_json)
def test_canonical_json_is_json_and_blind_to_unicode_normal_form(value):
    data = canonical_json(value)
    assert json.loads(data) == json.loads(canonical_json(json.loads(data)))
    decomposed = json.loads(json.dumps(value), object_hook=lambda d: {
        unicodedata.normalize("NFD", k): v for k, v in d.items()})
    if isinstance(decomposed, str):
        decomposed = unicodedata.normalize("NFD", decomposed)
    assert canonical_json(decomposed) == data


def test_canonical_json_refuses_what_has_no_canonical_form():
    for bad in (float("nan"), float("inf"), {1: "int key"}, b"bytes"):
        with pytest.raises((ValueError, TypeError)):
            canonical_json(bad)


def test_key_schema_is_part_of_the_key(monkeypatch):
    from orchestrator.plan import keys

    fields = dict(salt="", backend="b", backend_version="1", model=None, revision=None,
                  params={}, prompt="p", negative_prompt="", seed=1, frames=2, profile={},
                  upstream=None)
    before = render_key(**fields)
    monkeypatch.setattr(keys, "KEY_SCHEMA", KEY_SCHEMA + 1)
    assert render_key(**fields) != before
