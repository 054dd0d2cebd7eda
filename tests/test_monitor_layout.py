"""The monitor's layered layout of a story graph (pure: no server, no browser)."""

from __future__ import annotations

import random

import pytest

from orchestrator.monitor.layout import BOX_H, NODE_GAP, box_width, edges_of, layout


def branching_story(n: int, seed: int = 7) -> dict:
    """``n`` segments, all reachable from the first: runs of ``next`` with choices of 2 to 3
    options that jump ahead (long edges) and reconverge, as a large interactive story does."""
    r = random.Random(seed)
    segs = []
    for i in range(n):
        seg = {"id": f"s{i:03d}", "shots": [f"s{i:03d}-{k}" for k in range(r.randint(1, 4))],
               "next": None, "choice": None}
        if i < n - 1:
            if r.random() < 0.35:
                # the next segment among the options: every segment is reachable from start
                targets = sorted({i + 1} | {min(n - 1, i + r.randint(2, 9)) for _ in range(2)})
                seg["choice"] = {"prompt": "", "default": 0, "options": [
                    {"label": f"to {t:03d}", "next": f"s{t:03d}"} for t in targets]}
            else:
                seg["next"] = f"s{i + 1:03d}"
        segs.append(seg)
    return {"start": "s000", "segments": segs}


def boxes_by_layer(lay) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for n in lay.nodes:
        out.setdefault(n["layer"], []).append(n)
    return out


@pytest.mark.parametrize("n", [1, 6, 200])
def test_every_segment_gets_one_box_and_boxes_never_overlap(n):
    g = branching_story(n)
    lay = layout(g)
    assert [b["id"] for b in lay.nodes] == [s["id"] for s in g["segments"]]
    for row in boxes_by_layer(lay).values():
        row.sort(key=lambda b: b["x"])
        for a, b in zip(row, row[1:], strict=False):
            assert a["x"] + a["w"] + NODE_GAP <= b["x"] + 1e-6, (a, b)
    for b in lay.nodes:
        assert b["x"] >= 0 and b["x"] + b["w"] <= lay.width
        assert b["y"] >= 0 and b["y"] + b["h"] <= lay.height


def test_boxes_keep_their_size_at_200_segments():
    """A big story makes a bigger drawing, never smaller boxes (text stays readable)."""
    g = branching_story(200)
    lay = layout(g)
    for seg, box in zip(g["segments"], lay.nodes, strict=True):
        assert box["w"] == box_width(len(seg["shots"])) and box["h"] == BOX_H


def test_every_edge_points_down_and_is_labelled_with_its_choice():
    g = branching_story(200)
    lay = layout(g)
    layer = {b["id"]: b["layer"] for b in lay.nodes}
    want = edges_of(g)
    assert [(e["from"], e["to"], e["label"]) for e in lay.edges] == want
    for e in lay.edges:
        assert layer[e["to"]] > layer[e["from"]]
        ys = [p[1] for p in e["points"]]
        assert ys == sorted(ys)
        # a long edge passes through one bend point pair per layer it crosses
        assert len(e["points"]) == 2 * (layer[e["to"]] - layer[e["from"]])


def test_a_reconverging_choice_is_drawn_in_three_layers():
    g = {"start": "a", "segments": [
        {"id": "a", "shots": ["a1"], "next": None, "choice": {"prompt": "", "default": 0,
         "options": [{"label": "left", "next": "b"}, {"label": "right", "next": "c"}]}},
        {"id": "b", "shots": ["b1"], "next": "d", "choice": None},
        {"id": "c", "shots": ["c1"], "next": "d", "choice": None},
        {"id": "d", "shots": ["d1"], "next": None, "choice": None},
    ]}
    lay = layout(g)
    assert {b["id"]: b["layer"] for b in lay.nodes} == {"a": 0, "b": 1, "c": 1, "d": 2}
    x = {b["id"]: b["x"] + b["w"] / 2 for b in lay.nodes}
    assert x["b"] < x["c"]  # the options in their order
    assert x["b"] < x["d"] < x["c"] and x["b"] < x["a"] < x["c"]  # centred between them


def test_the_layout_is_the_same_every_time():
    g = branching_story(120, seed=3)
    assert layout(g).to_json() == layout(g).to_json()


def test_the_test_story_is_one_connected_story():
    g = branching_story(200)
    reached, todo = set(), ["s000"]
    nxt = {a: [b for x, b, _ in edges_of(g) if x == a] for a in (s["id"] for s in g["segments"])}
    while todo:
        a = todo.pop()
        if a not in reached:
            reached.add(a)
            todo.extend(nxt[a])
    assert len(reached) == 200
    assert [n["id"] for n in layout(g).nodes if n["layer"] == 0] == ["s000"]
