"""What every format shares: defaults, detection, limits, safety, ids, random graphs, renders."""

from __future__ import annotations

import json
import sys

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from importkit import DATA, cli, run_import, write

from orchestrator.importers import import_text
from orchestrator.importers._graph import make_ids

TWEE = ":: Start\nA door.\n[[Open it->Hall]]\n[[Leave]]\n\n:: Hall\nA hall.\n\n:: Leave\nRain.\n"


def test_defaults_set_profile_renderer_seed_masters_and_shot_timing(tmp_path):
    src = write(tmp_path / "door.twee", TWEE)
    defaults = write(tmp_path / "defaults.yaml", """\
name: the-door
title: The Door
profile: {width: 64, height: 64, fps: 8}
renderer: {backend: previz, steps: 4}
seed: 11
masters: all
shots: {words_per_second: 1, min_duration: 0.25, max_duration: 0.5}
""")
    r = run_import(src, "--defaults", str(defaults))
    assert r.code == 0, r.stderr
    spec = r.manifest["spec"]
    assert r.manifest["metadata"] == {"name": "the-door", "title": "The Door"}
    assert spec["profile"] == {"width": 64, "height": 64, "fps": 8}
    assert spec["renderer"] == {"backend": "previz", "steps": 4}
    assert spec["seed"] == 11 and spec["masters"] == "all"
    durations = {s["duration"] for seg in spec["segments"] for s in seg["shots"]}
    assert durations == {0.5}  # two words at 1 word/s, held to the 0.5 s maximum


@pytest.mark.parametrize(
    "text, what",
    [
        ("profile: {width: 65}\n", "profile.width"),
        ("renderer: {backend: 'Not A Backend'}\n", "renderer.backend"),
        ("colour: red\n", "colour"),
        ("shots: {min_duration: 5, max_duration: 1}\n", "min_duration is larger"),
        ("- a list\n", "must be a mapping"),
        ("name: [unclosed\n", "YAML"),
        ("seed: !!python/object:os.system ls\n", "YAML"),
    ],
)
def test_bad_defaults_exit_2_naming_the_field(tmp_path, text, what):
    src = write(tmp_path / "door.twee", TWEE)
    defaults = write(tmp_path / "defaults.yaml", text)
    r = run_import(src, "--defaults", str(defaults))
    assert r.code == 2
    assert all(ln.startswith(str(defaults)) for ln in r.stderr.splitlines()[:-1]), r.stderr
    assert what in r.stderr


@pytest.mark.parametrize(
    "name, text, fmt",
    [
        ("story.twee", TWEE, "twee"),
        ("story.txt", TWEE, "twee"),
        ("story.yarn", "title: Start\n---\nHi.\n===\n", "yarn"),
        ("story.txt", "title: Start\n---\nHi.\n===\n", "yarn"),
        ("story.json", (DATA / "ink" / "loop.ink.json").read_text(encoding="utf-8-sig"), "ink"),
        ("story.htm", '<tw-storydata name="s" startnode="1"><tw-passagedata pid="1" name="A">'
         "Hi</tw-passagedata></tw-storydata>", "twine-html"),
    ],
)
def test_the_format_is_detected(tmp_path, name, text, fmt):
    from orchestrator.importers import detect_format

    assert detect_format(name, text) == fmt


def test_an_unknown_format_exits_2(tmp_path):
    src = write(tmp_path / "notes.txt", "just some notes\n")
    r = run_import(src)
    assert r.code == 2
    assert f"{src}: cannot tell the format; name it with --from" in r.stderr


def test_the_wrong_from_gives_problems_not_a_traceback(tmp_path):
    src = write(tmp_path / "door.twee", TWEE)
    for fmt in ("ink", "yarn", "twine-html"):
        r = run_import(src, "--from", fmt)
        assert r.code == 2, fmt


def test_a_source_over_the_size_limit_is_refused_before_parsing(tmp_path):
    src = tmp_path / "huge.twee"
    src.write_bytes(b":: Start\n" + b"x" * (2 * 1024 * 1024))
    r = run_import(src)
    assert r.code == 2
    assert "larger than 2097152 bytes" in r.stderr


def test_deeply_nested_sources_are_refused(tmp_path):
    deep = write(tmp_path / "deep.json", '{"inkVersion": 21, "root": ' + "[" * 100_000 + "]"
                 * 100_000 + "}")
    r = run_import(deep, "--from", "ink")
    assert r.code == 2
    yarn = "title: Start\n---\n" + "".join(" " * i + "-> go\n" for i in range(200)) + "===\n"
    r = run_import(write(tmp_path / "deep.yarn", yarn))
    assert r.code == 2 and "nested deeper than" in r.stderr


def test_too_many_options_for_one_choice(tmp_path):
    links = "".join(f"[[Go {i}->End]]\n" for i in range(65))
    r = run_import(write(tmp_path / "wide.twee", f":: Start\nHi\n{links}\n:: End\nBye\n"))
    assert r.code == 2
    assert "65 options; a choice holds at most 64" in r.stderr


def test_only_the_given_file_is_read_and_nothing_is_run(tmp_path):
    """Macros that would include, display or run other files are listed, never followed: the
    import opens exactly the source (an audit hook sees every open)."""
    secret = write(tmp_path / "secret.txt", "do not read")
    src = write(tmp_path / "story.twee", f"""\
:: Start
<<include "{secret}">>
(display: "{secret}")
<<script>>require("fs").readFileSync("{secret}")<</script>>
<%= window.open("{secret}") %>
Hello.
""")
    opened: list[str] = []
    watching = [True]

    def hook(event, args):
        if watching[0] and event == "open" and args and isinstance(args[0], str):
            opened.append(args[0])

    sys.addaudithook(hook)
    try:
        r = run_import(src)
    finally:
        watching[0] = False
    assert r.code == 0, r.stderr
    assert str(secret) not in opened
    assert str(src) in opened
    lost = "\n".join(r.lines("lost: "))
    assert "<<include>>" in lost and "(display:)" in lost and "<% script %>" in lost
    assert r.segments["start"]["shots"][0]["prompt"] == "Hello."


def test_the_manifest_is_safe_yaml_and_writes_are_atomic(tmp_path):
    src = write(tmp_path / "door.twee", TWEE)
    out = write(tmp_path / "story.yaml", "old content\n")
    out.chmod(0o644)
    r = run_import(src, out=out)
    assert r.code == 0
    assert "!!" not in out.read_text()  # plain YAML: no tags, loads with the safe loader
    assert yaml.safe_load(out.read_text()) == r.manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["door.twee", "story.yaml"]
    assert out.stat().st_mode & 0o777 == 0o644  # the replaced file keeps its permissions
    fresh = tmp_path / "fresh.yaml"
    assert run_import(src, out=fresh).code == 0
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~_umask()
    fresh.unlink()
    # a failed import leaves the previous output untouched
    bad = write(tmp_path / "bad.twee", ":: Start\n[[Go->\n")
    assert run_import(bad, out=out).code == 2
    assert yaml.safe_load(out.read_text()) == r.manifest


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_ids_are_valid_unique_and_do_not_move_when_passages_are_added():
    names = {"Hub": "Hub", "hub": "hub", "The Market!": "The Market!", "Ünïcode ok": "Ünïcode ok",
             "x" * 90: "x" * 90, "x" * 91: "x" * 91, "": "", "--": "--"}
    ids = make_ids(names)
    assert len(set(ids.values())) == len(ids)
    assert ids["hub"] == "hub" and ids["The Market!"] == "the-market"
    assert ids["Ünïcode ok"] == "unicode-ok"
    for v in ids.values():
        assert 1 <= len(v) <= 56 and v[0].isalnum()
    more = make_ids({**names, "Another": "Another", "HUB": "HUB"})
    assert all(more[k] == v for k, v in ids.items())


# -- random graphs ----------------------------------------------------------------------------


@st.composite
def dags(draw):
    """A random acyclic story graph: node i links only to nodes after it; node 0 starts."""
    n = draw(st.integers(1, 9))
    edges = {}
    for i in range(n):
        later = list(range(i + 1, n))
        edges[i] = draw(st.lists(st.sampled_from(later), unique=True, max_size=4)) if later else []
    return edges


def _reachable(edges):
    seen, stack = {0}, [0]
    while stack:
        for t in edges[stack.pop()]:
            if t not in seen:
                seen.add(t)
                stack.append(t)
    return seen


def _reachable_from(edges, start):
    seen, stack = {start}, [start]
    while stack:
        for t in edges[stack.pop()]:
            if t not in seen:
                seen.add(t)
                stack.append(t)
    return seen


def _as_twee(edges):
    out = []
    for i, targets in edges.items():
        out.append(f":: Node {i}\nText of node {i}.\n")
        out += [f"[[Go to {t}->Node {t}]]\n" for t in targets]
        out.append("\n")
    return "".join(out).replace(":: Node 0", ":: Start", 1).replace("->Node 0]]", "->Start]]")


def _as_yarn(edges):
    out = []
    for i, targets in edges.items():
        title = "Start" if i == 0 else f"Node{i}"
        out.append(f"title: {title}\n---\nText of node {i}.\n")
        if len(targets) == 1:
            out.append(f"<<jump Node{targets[0]}>>\n")
        for t in targets if len(targets) > 1 else []:
            out.append(f"-> Go to {t}\n    <<jump Node{t}>>\n")
        out.append("===\n")
    return "".join(out)


def _structure(manifest):
    """Segment id -> sorted successor ids, from an imported manifest."""
    out = {}
    for s in manifest["spec"]["segments"]:
        nxt = [s["next"]] if "next" in s else [o["next"] for o in s.get("choice", {}).get(
            "options", [])]
        out[s["id"]] = sorted(nxt)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags())
def test_random_twee_graphs_keep_their_reachable_structure(edges):
    result = import_text("random.twee", _as_twee(edges).encode())
    ids = {i: ("start" if i == 0 else f"node-{i}") for i in edges}
    reach = _reachable(edges)
    expected = {ids[i]: sorted(ids[t] for t in edges[i]) for i in reach}
    assert _structure(result.manifest) == expected
    assert result.segments == len(reach)
    assert result.options == sum(len(edges[i]) for i in reach)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags())
def test_random_yarn_graphs_keep_their_reachable_structure(edges):
    result = import_text("random.yarn", _as_yarn(edges).encode())
    ids = {i: ("start" if i == 0 else f"node{i}") for i in edges}
    reach = _reachable(edges)
    expected = {ids[i]: sorted(ids[t] for t in edges[i]) for i in reach}
    assert _structure(result.manifest) == expected
    # one jump is a next; several are a choice
    for s in result.manifest["spec"]["segments"]:
        i = next(k for k, v in ids.items() if v == s["id"])
        assert ("next" in s) == (len(edges[i]) == 1)


@st.composite
def cyclic(draw):
    edges = draw(dags())
    n = len(edges)
    back_from = draw(st.integers(0, n - 1))
    back_to = draw(st.integers(0, back_from))
    if back_to not in edges[back_from]:
        edges[back_from] = [*edges[back_from], back_to]
    return edges


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cyclic(), st.integers(0, 2))
def test_random_loops_are_refused_or_unrolled_to_an_acyclic_manifest(edges, depth):
    from orchestrator.importers import ImportFailed
    from orchestrator.spec.loading import load_manifest

    text = _as_twee(edges).encode()
    reach = _reachable(edges)
    loops = any(i in _reachable_from(edges, t) for i in reach for t in edges[i])
    if loops:
        with pytest.raises(ImportFailed) as err:
            import_text("loop.twee", text)
        assert any(p.message.startswith("loop: ") for p in err.value.problems)
    result = import_text("loop.twee", text, unroll=depth)
    load_manifest("unrolled", yaml.safe_dump(result.manifest).encode())  # acyclic and valid
    names = {s["source"]["name"] for s in result.manifest["spec"]["segments"]}
    assert names == {"Start" if i == 0 else f"Node {i}" for i in reach}


# -- rendering ---------------------------------------------------------------------------------


SMALL_RENDER = """\
profile: {width: 64, height: 64, fps: 8}
renderer: {backend: previz}
seed: 3
masters: endings
shots: {words_per_second: 40, min_duration: 0.25, max_duration: 0.5}
"""


@pytest.mark.parametrize("source, args", [
    (DATA / "ink" / "branches.ink.json", ()),
    (DATA / "lock-and-key" / "lock-and-key.twee", ("--all-options", "--unroll", "1")),
    (DATA / "lock-and-key" / "lock-and-key-harlowe.html", ("--all-options", "--unroll", "1")),
    (DATA / "space" / "Sally.yarn", ("--all-options",)),
], ids=["ink", "twee", "twine-html", "yarn"])
def test_imported_stories_render_on_previz_with_a_master_per_ending(ray_cluster, tmp_path,
                                                                     source, args):
    defaults = write(tmp_path / "defaults.yaml", SMALL_RENDER)
    manifest = tmp_path / "story.yaml"
    r = run_import(source, *args, "--defaults", str(defaults), out=manifest)
    assert r.code == 0, r.stderr
    out = tmp_path / "out"
    code, stdout, stderr = cli("render", str(manifest), "--store", str(tmp_path / "store"),
                               "--out", str(out), "--plain")
    assert code == 0, stderr
    endings = {sid for sid, nxt in r.successors().items() if not nxt}
    branches = json.loads((out / "branches.json").read_text())
    assert {b["segments"][-1] for b in branches} == endings
    for b in branches:
        assert b["master"] is not None and (out / b["master"]["path"]).stat().st_size > 0


# -- malformed input never gives a traceback ------------------------------------------------------

_SEEDS = {
    "twee": (DATA / "lock-and-key" / "lock-and-key.twee").read_bytes(),
    "twine-html": b'<tw-storydata name="s" startnode="1"><tw-passagedata pid="1" name="A">'
                  b"Hi (if: $x)[ [[Go->B]] ] &lt;!-- shot: duration=2 --&gt;</tw-passagedata>"
                  b'<tw-passagedata pid="2" name="B">Bye [[A]]</tw-passagedata></tw-storydata>',
    "yarn": (DATA / "space" / "Sally.yarn").read_bytes(),
    "ink": (DATA / "ink" / "tunnels.ink.json").read_bytes(),
}


@st.composite
def mutated(draw):
    fmt = draw(st.sampled_from(sorted(_SEEDS)))
    data = bytearray(_SEEDS[fmt])
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(data)))
        if draw(st.booleans()) and data:
            del data[pos : pos + draw(st.integers(1, 20))]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=6)) if draw(st.booleans()) else (
                draw(st.text("[]<>(){}|-:=\n \"'$#/*^.,0123456789\\", min_size=1, max_size=6))
                .encode())
    return fmt, bytes(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(), st.booleans())
def test_any_mangled_source_imports_or_gives_problems(case, lenient):
    from orchestrator.importers import ImportFailed

    fmt, data = case
    kw = {"all_options": True, "unroll": 1} if lenient else {}
    try:
        result = import_text("mangled", data, fmt, **kw)
    except ImportFailed as exc:
        assert exc.problems and all(p.file == "mangled" or p.file.startswith("mangled")
                                    for p in exc.problems)
    else:
        assert result.segments >= 1


def test_a_segments_source_is_checked_like_any_field(tmp_path):
    """``source`` is a documented optional field of reelfarm/v1: validated, never free-form."""
    src = write(tmp_path / "door.twee", TWEE)
    good = tmp_path / "good.yaml"
    assert run_import(src, out=good).code == 0
    code, _out, err = cli("validate", str(good))
    assert code == 0, err
    doc = yaml.safe_load(good.read_text())
    doc["spec"]["segments"][0]["source"] = {"file": "door.twee", "name": "Start", "line": 0}
    doc["spec"]["segments"][1]["source"] = {"file": "door.twee", "name": "Hall", "page": 3}
    bad = write(tmp_path / "bad.yaml", yaml.safe_dump(doc, sort_keys=False))
    code, _out, err = cli("validate", str(bad))
    assert code == 2
    assert "spec.segments[0].source.line" in err
    assert "spec.segments[1].source.page" in err


def test_help_teaches_with_an_example():
    code, stdout, _ = cli("import", "--help")
    assert code == 0
    assert "Example" in stdout and "reelfarm import" in stdout
    for option in ("--from", "--unroll", "--all-options", "--defaults", "-o"):
        assert option in stdout
