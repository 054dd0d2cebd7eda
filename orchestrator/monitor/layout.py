"""A layered drawing of a story's segment graph, computed here and drawn as SVG by the browser.

Sugiyama's method in its plain form: each segment's layer is its longest distance from a root
(so every edge points down), an edge that spans several layers passes through a dummy point in
each layer between, the order within a layer comes from a few barycentre sweeps (fewer
crossings), and x positions pull each box toward its neighbours while boxes keep a fixed gap.
Boxes never shrink: a large story makes a larger drawing that the page scrolls, so text stays
readable at any size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BOX_H = 96
LAYER_GAP = 72
NODE_GAP = 28
SHOT_W = 72  # room for one shot (its thumbnail and id) in a segment's box
BOX_PAD = 10
MIN_BOX_W = 120
SWEEPS = 6


@dataclass
class Node:
    id: str
    layer: int
    width: float
    x: float = 0.0  # centre
    dummy: bool = False


@dataclass
class Layout:
    width: float
    height: float
    nodes: list[dict[str, Any]] = field(default_factory=list)
    edges: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height, "nodes": self.nodes,
                "edges": self.edges, "box_height": BOX_H}


def box_width(shots: int) -> float:
    return max(MIN_BOX_W, shots * SHOT_W + 2 * BOX_PAD)


def edges_of(graph: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(from, to, label)`` for every way out of every segment; ``next`` edges have no label."""
    known = {s["id"] for s in graph["segments"]}
    out = []
    for seg in graph["segments"]:
        if seg.get("choice"):
            for opt in seg["choice"]["options"]:
                if opt["next"] in known:
                    out.append((seg["id"], opt["next"], opt["label"]))
        elif seg.get("next") in known:
            out.append((seg["id"], seg["next"], ""))
    return out


def _layers(ids: list[str], edges: list[tuple[str, str, str]]) -> dict[str, int]:
    """Longest-path layering (Kahn's order); a node left in a cycle goes below what it follows."""
    preds: dict[str, list[str]] = {i: [] for i in ids}
    succs: dict[str, list[str]] = {i: [] for i in ids}
    for a, b, _ in edges:
        if a != b:
            preds[b].append(a)
            succs[a].append(b)
    indeg = {i: len(set(preds[i])) for i in ids}
    layer = dict.fromkeys(ids, 0)
    ready = [i for i in ids if indeg[i] == 0]
    done: set[str] = set()
    while ready or len(done) < len(ids):
        if not ready:  # a cycle (a story never has one; an old record might): break it
            ready = [next(i for i in ids if i not in done)]
        n = ready.pop(0)
        if n in done:
            continue
        done.add(n)
        for s in dict.fromkeys(succs[n]):
            if s in done:
                continue
            layer[s] = max(layer[s], layer[n] + 1)
            indeg[s] -= 1
            if indeg[s] == 0:
                ready.append(s)
    return layer


def layout(graph: dict[str, Any]) -> Layout:
    """Positions for ``graph`` (``{"start", "segments": [{id, shots, next, choice}]}``)."""
    segs = graph["segments"]
    ids = [s["id"] for s in segs]
    if not ids:
        return Layout(0, 0)
    edges = edges_of(graph)
    layer_of = _layers(ids, edges)
    nodes: dict[str, Node] = {
        s["id"]: Node(s["id"], layer_of[s["id"]], box_width(len(s.get("shots") or [])))
        for s in segs
    }
    # Long edges pass through a dummy node in each layer they cross.
    chains: list[tuple[str, str, str, list[str]]] = []
    adj_down: dict[str, list[str]] = {i: [] for i in nodes}
    for k, (a, b, label) in enumerate(edges):
        la, lb = nodes[a].layer, nodes[b].layer
        chain = [a]
        if lb > la + 1:
            for lay in range(la + 1, lb):
                d = f"\0{k}:{lay}"
                nodes[d] = Node(d, lay, 8, dummy=True)
                adj_down[d] = []
                chain.append(d)
        chain.append(b)
        for u, v in zip(chain, chain[1:], strict=False):
            if nodes[v].layer > nodes[u].layer:
                adj_down[u].append(v)
        chains.append((a, b, label, chain))
    adj_up: dict[str, list[str]] = {i: [] for i in nodes}
    for u, vs in adj_down.items():
        for v in vs:
            adj_up[v].append(u)

    depth = max(n.layer for n in nodes.values()) + 1
    rows: list[list[str]] = [[] for _ in range(depth)]
    for n in nodes.values():  # manifest order first: a story read top to bottom stays so
        rows[n.layer].append(n.id)
    _order(rows, adj_up, adj_down)
    _place(rows, nodes, adj_up, adj_down)

    left = min(nodes[r[0]].x - nodes[r[0]].width / 2 for r in rows if r)
    for n in nodes.values():
        n.x -= left - NODE_GAP
    width = max(nodes[r[-1]].x + nodes[r[-1]].width / 2 for r in rows if r) + NODE_GAP
    height = depth * (BOX_H + LAYER_GAP) - LAYER_GAP + 2 * NODE_GAP

    def top(n: Node) -> float:
        return NODE_GAP + n.layer * (BOX_H + LAYER_GAP)

    out = Layout(round(width, 1), round(height, 1))
    for s in segs:
        n = nodes[s["id"]]
        out.nodes.append({"id": n.id, "layer": n.layer, "x": round(n.x - n.width / 2, 1),
                          "y": top(n), "w": n.width, "h": BOX_H,
                          "start": n.id == graph.get("start")})
    for a, b, label, chain in chains:
        pts: list[list[float]] = []
        na, nb = nodes[a], nodes[b]
        if nb.layer <= na.layer:  # only an old, cyclic record: drawn as a plain line
            pts = [[na.x, top(na) + BOX_H], [nb.x, top(nb)]]
        else:
            pts.append([na.x, top(na) + BOX_H])
            for d in chain[1:-1]:
                nd = nodes[d]
                pts.append([nd.x, top(nd)])
                pts.append([nd.x, top(nd) + BOX_H])
            pts.append([nb.x, top(nb)])
        out.edges.append({"from": a, "to": b, "label": label,
                          "points": [[round(x, 1), round(y, 1)] for x, y in pts]})
    return out


def _order(rows: list[list[str]], up: dict[str, list[str]], down: dict[str, list[str]]) -> None:
    """Barycentre sweeps, down then up, keeping the order with the fewest crossings seen."""
    def crossings() -> int:
        total = 0
        for k in range(len(rows) - 1):
            pos = {v: i for i, v in enumerate(rows[k + 1])}
            pairs = [(i, pos[v]) for i, u in enumerate(rows[k]) for v in down[u] if v in pos]
            pairs.sort()
            for x in range(len(pairs)):
                for y in range(x + 1, len(pairs)):
                    if pairs[x][0] < pairs[y][0] and pairs[x][1] > pairs[y][1]:
                        total += 1
        return total

    def sweep(k: int, ref: int, nbrs: dict[str, list[str]]) -> None:
        pos = {v: i for i, v in enumerate(rows[ref])}
        cur = {v: i for i, v in enumerate(rows[k])}

        def bary(v: str) -> float:
            ps = [pos[u] for u in nbrs[v] if u in pos]
            return sum(ps) / len(ps) if ps else cur[v]

        rows[k].sort(key=lambda v: (bary(v), cur[v]))

    best = [list(r) for r in rows]
    best_c = crossings()
    for i in range(SWEEPS):
        if i % 2 == 0:
            for k in range(1, len(rows)):
                sweep(k, k - 1, up)
        else:
            for k in range(len(rows) - 2, -1, -1):
                sweep(k, k + 1, down)
        c = crossings()
        if c < best_c:
            best, best_c = [list(r) for r in rows], c
        if best_c == 0:
            break
    rows[:] = best


def _place(rows: list[list[str]], nodes: dict[str, Node], up: dict[str, list[str]],
           down: dict[str, list[str]]) -> None:
    """x centres: packed first, then each box pulled toward its neighbours' mean, in order and
    never closer than :data:`NODE_GAP` to the box beside it."""
    for r in rows:
        x = 0.0
        for v in r:
            nodes[v].x = x + nodes[v].width / 2
            x += nodes[v].width + NODE_GAP
        shift = x / 2
        for v in r:
            nodes[v].x -= shift

    def pull(r: list[str], nbrs: dict[str, list[str]]) -> None:
        want = {}
        for v in r:
            xs = [nodes[u].x for u in nbrs[v]]
            want[v] = sum(xs) / len(xs) if xs else nodes[v].x
        # at its wish, but clear of the box before it (left to right) ...
        left: dict[str, float] = {}
        edge = None
        for v in r:
            x = want[v] if edge is None else max(want[v], edge + NODE_GAP + nodes[v].width / 2)
            left[v], edge = x, x + nodes[v].width / 2
        # ... and clear of the box after it (right to left); the mean of two placements that
        # keep the order and the gaps keeps them too
        edge = None
        for v in reversed(r):
            x = want[v] if edge is None else min(want[v], edge - NODE_GAP - nodes[v].width / 2)
            nodes[v].x, edge = (x + left[v]) / 2, x - nodes[v].width / 2

    for _ in range(4):
        for k in range(1, len(rows)):
            pull(rows[k], up)
        for k in range(len(rows) - 2, -1, -1):
            pull(rows[k], down)
    for k in range(1, len(rows)):
        pull(rows[k], up)
