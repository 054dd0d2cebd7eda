"""Expansion: branches, continuity variants, counts, limits (DESIGN.md, Expansion)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from storybuild import shot, story

from orchestrator.plan.expand import BRANCH_NAME_RE, PlanError, branch_name, expand, frame_count
from orchestrator.spec.loading import load_manifest

MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"


def test_frame_count_rounds_half_up_and_never_zero():
    assert frame_count(3.0, 24) == 72
    assert frame_count(1 / 48, 24) == 1  # 0.5 frames rounds up
    assert frame_count(0.001, 24) == 1
    assert frame_count(1.02, 25) == 26  # 25.5 -> 26


def test_cut_shot_shared_by_branches_is_one_task():
    s = story([
        {"id": "a", "shots": [shot("a1")],
         "choice": {"options": [{"label": "x", "next": "b"}, {"label": "y", "next": "c"}]}},
        {"id": "b", "shots": [shot("b1")], "next": "d"},
        {"id": "c", "shots": [shot("c1")], "next": "d"},
        {"id": "d", "shots": [shot("d1"), shot("d2")]},
    ])
    plan = expand(s)
    assert [t.id for t in plan.tasks] == ["a1", "b1", "c1", "d1", "d2"]
    assert [b.name for b in plan.branches] == ["d~b", "d~c"]
    assert plan.branches[0].choices == ["x"] and plan.branches[1].choices == ["y"]
    assert plan.naive_tasks == 8  # two paths of four shots


def test_continuity_across_a_choice_makes_one_variant_per_upstream_task():
    plan = expand(load_manifest(str(MANIFESTS / "crossroads.yaml")).story)
    ids = {t.id: t for t in plan.tasks}
    # reunion is entered from market-alley, tram-interior and clock-closeup
    assert {ids[f"cafe-door~{k}"].upstream for k in (1, 2, 3)} == {
        "market-alley", "tram-interior", "clock-closeup"}
    # the continuity shot after it follows its own variant
    for k in (1, 2, 3):
        assert ids[f"brother-turns~{k}"].upstream == f"cafe-door~{k}"
        assert ids[f"brother-turns~{k}"].upstream_key == ids[f"cafe-door~{k}"].key
    # a cut collapses the variants again
    assert "two-coffees" in ids and ids["two-coffees"].upstream is None
    assert len(plan.tasks) == 16
    # every branch through the tram uses the tram variant
    tram = [b for b in plan.branches if "tram" in b.segments]
    assert tram and all("cafe-door~2" in b.tasks and "brother-turns~2" in b.tasks for b in tram)
    assert len({t.key for t in plan.tasks}) == len(plan.tasks)


def test_branch_task_lists_follow_the_path():
    plan = expand(load_manifest(str(MANIFESTS / "heist.yaml")).story)
    escape = next(b for b in plan.branches if b.name == "escape~safe")
    assert escape.segments == ["cold-open", "safe", "escape"]
    assert escape.choices == ["Crack the safe"]
    assert escape.tasks == ["vault-exterior", "mara-closeup", "dial-macro", "door-swings",
                            "rooftop-run"]
    walk = next(b for b in plan.branches if b.name == "walk-away")
    assert plan.by_id["tram-window"].upstream == "mara-closeup"
    assert walk.tasks[-1] == "tram-window"


def _diamond_chain(n: int, continuity: str = "cut") -> list[dict]:
    """n binary choices in a row, each reconverging: 2**n paths."""
    segs = []
    for i in range(n):
        first = shot(f"s{i}a", continuity=continuity if i else "cut")
        segs.append({"id": f"s{i}", "shots": [first],
                     "choice": {"options": [{"label": "l", "next": f"l{i}"},
                                            {"label": "r", "next": f"r{i}"}]}})
        nxt = f"s{i + 1}"
        segs.append({"id": f"l{i}", "shots": [shot(f"l{i}a", continuity=continuity)], "next": nxt})
        segs.append({"id": f"r{i}", "shots": [shot(f"r{i}a", continuity=continuity)], "next": nxt})
    segs.append({"id": f"s{n}", "shots": [shot("end", continuity=continuity)]})
    return segs


def test_masters_all_above_the_limit_suggests_endings():
    s = story(_diamond_chain(9))  # 512 paths
    with pytest.raises(PlanError) as e:
        expand(s)
    (path, msg), = e.value.problems
    assert path == ("spec", "masters")
    assert "512" in msg and "masters: endings" in msg


def test_masters_endings_gives_one_default_path_per_ending():
    s = story(_diamond_chain(9), masters="endings")
    plan = expand(s)
    assert [b.name for b in plan.branches] == [
        "s9~" + ".".join(plan.branches[0].segments[1:-1])]
    assert plan.branches[0].segments[:3] == ["s0", "l0", "s1"]  # default options first


def test_task_limit_names_the_segment_where_variants_multiply():
    s = story(_diamond_chain(12, continuity="previous"), masters="endings")
    with pytest.raises(PlanError) as e:
        expand(s, max_tasks=500)
    (path, msg), = e.value.problems
    assert "exceeds 500 render tasks" in msg
    assert path[:2] == ("spec", "segments")
    assert "segment 's" in msg  # a reconvergence point


def test_explicit_master_list():
    s = story(
        [
            {"id": "a", "shots": [shot("a1")],
             "choice": {"options": [{"label": "x", "next": "b"}, {"label": "y", "next": "c"}]}},
            {"id": "b", "shots": [shot("b1")]},
            {"id": "c", "shots": [shot("c1")]},
        ],
        masters=[["a", "c"]],
    )
    plan = expand(s)
    assert [b.name for b in plan.branches] == ["c"]
    assert len(plan.tasks) == 3  # the whole story stays playable


def test_unknown_backend_is_a_plan_problem_with_a_path():
    s = story([{"id": "a", "shots": [shot("a1", renderer={"backend": "nope"})]}])
    with pytest.raises(PlanError) as e:
        expand(s)
    (path, msg), = e.value.problems
    assert path == ("spec", "segments", 0, "shots", 0, "renderer", "backend")
    assert "unknown backend 'nope'" in msg and "previz" in msg


def test_critical_path_follows_continuity_chains():
    plan = expand(load_manifest(str(MANIFESTS / "crossroads.yaml")).story)
    path = plan.critical_path()
    assert all(plan.by_id[b].upstream == a for a, b in zip(path, path[1:], strict=False))
    assert plan.critical_path_seconds == pytest.approx(
        sum(plan.by_id[t].est_seconds for t in path))


def test_backend_rules_on_the_profile_point_at_the_profile_once():
    s = story(
        [{"id": "a", "shots": [shot("a1", duration=1.0), shot("a2", duration=1.0)]}],
        renderer={"backend": "diffusers", "model": "studio/ltx-house", "pipeline": "ltx"},
        profile={"width": 72, "height": 64, "fps": 8},
    )
    with pytest.raises(PlanError) as e:
        expand(s)
    paths = [p for p, _ in e.value.problems]
    assert paths.count(("spec", "profile", "width")) == 1
    assert not any(p[:2] == ("spec", "segments") and "profile" in p for p in paths)


def test_an_image_only_family_refuses_a_cut_shot_at_plan_time():
    s = story(
        [{"id": "a", "shots": [shot("a1", duration=1.0)]}],
        renderer={"backend": "diffusers", "model": "studio/svd-house", "pipeline": "svd"},
        profile={"width": 64, "height": 64, "fps": 8},
    )
    with pytest.raises(PlanError) as e:
        expand(s)
    assert any(p == ("spec", "segments", 0, "shots", 0, "continuity") for p, _ in e.value.problems)


# -- branch names ----------------------------------------------------------------------------


def test_branch_names_come_from_the_path():
    plan = expand(load_manifest(str(MANIFESTS / "crossroads.yaml")).story)
    names = {b.name: b.segments for b in plan.branches}
    assert names["truth~market.reunion"] == ["station", "market", "reunion", "truth"]
    assert names["alone~platform-wait"] == ["station", "platform-wait", "alone"]
    assert all(BRANCH_NAME_RE.match(n) for n in names)


def test_a_long_path_is_named_by_its_ending_and_a_hash():
    segs = [{"id": f"segment-number-{i:02d}", "shots": [shot(f"s{i}")], "next":
             f"segment-number-{i + 1:02d}"} for i in range(12)]
    segs.append({"id": "segment-number-12", "shots": [shot("s12")]})
    plan = expand(story(segs))
    (b,) = plan.branches
    assert b.name.startswith("segment-number-12.") and len(b.name) == len("segment-number-12.") + 12
    assert branch_name(b.segments) == b.name
    assert BRANCH_NAME_RE.match(b.name)


def _graph_story(edges: dict[int, list[int]], extra: tuple[int, int] | None = None):
    """A story over segments s0..sN: ``edges`` maps a segment to the ones it chooses between."""
    n = max([*edges, *(t for ts in edges.values() for t in ts)]) + 1
    segs = []
    for i in range(n):
        nexts = list(edges.get(i, []))
        if extra and extra[0] == i and extra[1] not in nexts:
            nexts.append(extra[1])
        seg: dict = {"id": f"s{i}", "shots": [shot(f"s{i}a")]}
        if nexts:
            seg["choice"] = {"options": [{"label": f"to s{t}", "next": f"s{t}"} for t in nexts]}
        segs.append(seg)
    return story(segs, start="s0")


@st.composite
def _dags(draw):
    """A random DAG whose segments are all reachable from s0, plus one new edge to add."""
    n = draw(st.integers(3, 8))
    edges: dict[int, list[int]] = {}
    for i in range(1, n):
        parents = draw(st.sets(st.integers(0, i - 1), min_size=1, max_size=min(3, i)))
        for p in sorted(parents):
            edges.setdefault(p, []).append(i)
    # a new option: from a segment with a choice to a later segment it does not lead to yet
    candidates = [(a, b) for a in edges for b in range(a + 1, n) if b not in edges[a]]
    assume(candidates)
    return edges, draw(st.sampled_from(candidates))


@settings(max_examples=150, deadline=None)
@given(_dags())
def test_adding_an_option_never_renames_an_existing_branch(case):
    edges, extra = case
    before = {tuple(b.segments): b.name for b in expand(_graph_story(edges)).branches}
    after = {tuple(b.segments): b.name for b in expand(_graph_story(edges, extra)).branches}
    assert set(before) <= set(after)  # a new option only adds paths
    for path, name in before.items():
        assert after[path] == name
    assert len(set(after.values())) == len(after)  # and names stay unique


def test_every_task_has_a_bounded_render_time_by_default():
    from orchestrator.plan.models import TIMEOUT_FACTOR, TIMEOUT_FLOOR_S

    plan = expand(load_manifest(str(MANIFESTS / "heist.yaml")).story)
    for t in plan.tasks:
        assert t.time_limit == max(TIMEOUT_FLOOR_S, TIMEOUT_FACTOR * t.est_seconds)
    long = plan.tasks[0].model_copy(update={"est_seconds": 3600.0})
    assert long.time_limit == TIMEOUT_FACTOR * 3600.0  # a slow backend gets room in proportion
