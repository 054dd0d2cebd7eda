"""``reelfarm import`` of Twee 3: mapping, shots, loops, conditions, errors, round trips."""

from __future__ import annotations

import re

import pytest
import yaml
from importkit import DATA, cli, plan_keys, run_import, write

SMALL = """\
:: StoryTitle
The Night Train

:: StoryData
{
  "ifid": "2B68ECD6-348F-4CF5-96F8-549A512A8128",
  "format": "SugarCube",
  "format-version": "2.36.1",
  "start": "Platform"
}

:: StoryInit
<<set $ticket to false>>

:: Platform [intro night] {"position":"100,100"}
Rain on the platform. The last train is late.

<!-- shot: duration=3.5 continuity=previous -->
A clock ticks over the ticket office.

[[Board the train->Carriage]]
[[Town<-Walk into town]]
[[Wait|Bench]]

:: Carriage
The carriage is warm.
<<goto "Arrival">>

:: Town
The streets are empty and wet.
/* shot: prompt="wide shot, empty wet street at night" seed=42 */
Nobody is about.
[[Bench]]

:: Bench
You sit and wait until dawn.

:: Arrival
The train arrives at the coast. The end.
"""


@pytest.fixture
def small(tmp_path):
    src = write(tmp_path / "night.twee", SMALL)
    return src, run_import(src, out=tmp_path / "night.yaml")


def test_passages_become_segments_and_links_become_options(small):
    _src, r = small
    assert r.code == 0, r.stderr
    segs = r.segments
    # StoryInit, StoryTitle and StoryData are not story passages
    assert set(segs) == {"platform", "carriage", "town", "bench", "arrival"}
    assert r.manifest["spec"]["start"] == "platform"
    assert r.manifest["metadata"] == {"name": "the-night-train", "title": "The Night Train"}
    opts = segs["platform"]["choice"]["options"]
    # the three link forms: Label->Target, Target<-Label, Label|Target
    assert opts == [
        {"label": "Board the train", "next": "carriage"},
        {"label": "Walk into town", "next": "town"},
        {"label": "Wait", "next": "bench"},
    ]
    assert segs["carriage"]["next"] == "arrival"  # <<goto>>: a single divert
    assert segs["town"]["choice"]["options"] == [{"label": "Bench", "next": "bench"}]
    assert "choice" not in segs["arrival"] and "next" not in segs["arrival"]  # an ending


def test_one_shot_per_paragraph_with_comment_steering(small):
    _src, r = small
    shots = r.segments["platform"]["shots"]
    assert [s["prompt"] for s in shots] == [
        "Rain on the platform. The last train is late.",
        "A clock ticks over the ticket office.",
    ]
    # 9 words at 2.5 words/s = 3.6 s; the steered shot keeps what the comment says
    assert shots[0]["duration"] == 3.6 and "continuity" not in shots[0]
    assert shots[1]["duration"] == 3.5 and shots[1]["continuity"] == "previous"
    town = r.segments["town"]["shots"]
    assert town[1]["prompt"] == "wide shot, empty wet street at night"
    assert town[1]["seed"] == 42
    # a short paragraph is held to the 2 s minimum
    assert r.segments["carriage"]["shots"][0]["duration"] == 2.0


def test_each_segment_keeps_its_source(small):
    src, r = small
    lines = SMALL.splitlines()
    for seg in r.segments.values():
        ref = seg["source"]
        assert ref["file"] == str(src)
        assert lines[ref["line"] - 1].startswith(f":: {ref['name']}")


def test_summary_and_every_loss_are_printed(small):
    src, r = small
    assert re.search(r"imported .*night\.twee: 5 segments, 2 choices \(4 options\), "
                     r"2 endings, 7 shots; \d+ losses; wrote ", r.stderr)
    lost = r.lines("lost: ")
    assert any(f"{src}:12: StoryInit" in ln for ln in lost)
    assert any("SugarCube 2.36.1" in ln for ln in lost)


def test_stdout_is_the_manifest_when_no_output_file(tmp_path, small):
    src, r = small
    code, stdout, stderr = cli("import", str(src))
    assert code == 0
    assert yaml.safe_load(stdout) == r.manifest
    assert "imported" not in stdout and "imported" in stderr


LOOP = """\
:: Start
The city gate at dawn.
[[Enter->Hub]]

:: Hub
The square is busy.
[[Market]]
[[Leave town->Road]]

:: Market
Bread smells warm.
[[Back to the square->Hub]]

:: Road
The road is empty.
"""


def test_a_loop_is_named_with_its_line_and_exit_2(tmp_path):
    src = write(tmp_path / "loop.twee", LOOP)
    r = run_import(src)
    assert r.code == 2
    assert f"{src}:12: loop: Hub -> Market -> Hub" in r.stderr.splitlines()
    assert "--unroll" in r.stderr


def test_unroll_follows_a_loop_n_more_times_then_drops_the_link(tmp_path):
    src = write(tmp_path / "loop.twee", LOOP)
    r = run_import(src, "--unroll", "2")
    assert r.code == 0, r.stderr
    succ = r.successors()
    assert succ["hub"] == ["market", "road"]
    assert succ["market"] == ["hub--2"]
    assert succ["market--2"] == ["hub--3"]
    assert succ["market--3"] == []  # the link back is dropped after two rounds: an ending
    assert succ["hub--3"] == ["market--3", "road"]
    assert any("Market: link 'Back to the square' back to Hub closes a loop" in ln
               for ln in r.lines("lost: "))
    assert re.search(r"unrolled: 4 segment copies \(", r.stderr)
    # copies share the source and the prompts of the passage they copy
    assert r.segments["hub--3"]["source"] == r.segments["hub"]["source"]
    assert r.segments["hub--3"]["shots"][0]["prompt"] == r.segments["hub"]["shots"][0]["prompt"]


CONDITIONS = """\
:: Start
A shop full of lamps.
<<if $coins > 2>>[[Buy a lamp->Lamp]]<</if>>
(if: $brave)[ [[Go into the back room->Back]] ]
[[Leave]]

:: Lamp
The lamp glows.

:: Back
Dust everywhere.

:: Leave
The street is dark.
"""


def test_conditional_options_stop_the_import_with_their_list(tmp_path):
    src = write(tmp_path / "cond.twee", CONDITIONS)
    r = run_import(src)
    assert r.code == 2
    assert (f"{src}:3: Start: option 'Buy a lamp' -> Lamp depends on a condition "
            "(<<if $coins > 2>>)") in r.stderr
    assert (f"{src}:4: Start: option 'Go into the back room' -> Back depends on a condition "
            "((if: $brave))") in r.stderr
    assert "--all-options" in r.stderr


def test_all_options_makes_every_conditional_option_available(tmp_path):
    src = write(tmp_path / "cond.twee", CONDITIONS)
    r = run_import(src, "--all-options")
    assert r.code == 0, r.stderr
    assert r.successors()["start"] == ["lamp", "back", "leave"]
    assert len([ln for ln in r.lines("lost: ") if "always available" in ln]) == 2


@pytest.mark.parametrize(
    "text, line, what",
    [
        (":: Start\nHello [[Go->Next\n\n:: Next\nBye.\n", 2, "never closed with ]]"),
        (":: Start\n<<if $x>>Hi [[Next]]\n\n:: Next\nBye.\n", 2, "is never closed"),
        (":: Start ] oops\nHi\n", 1, "unescaped ']'"),
        (":: Start\n<!-- shot: duration=-1 -->\nHi\n", 2, "duration=-1"),
        (":: Start\n<!-- shot: zoom=3 -->\nHi\n", 2, "unknown setting 'zoom'"),
        (":: StoryData\n{\"start\": \n:: Start\nHi\n", 2, "StoryData is not a JSON object"),
        (":: Start\nHi\n:: Start\nAgain\n", 3, "defined twice (first on line 1)"),
        ("Some text\n:: Start\nHi\n", 1, "text before the first passage header"),
        (":: Start [a b\nHi\n", 1, "never closed with ]"),
    ],
)
def test_malformed_twee_exits_2_with_file_and_line(tmp_path, text, line, what):
    src = write(tmp_path / "bad.twee", text)
    r = run_import(src)
    assert r.code == 2
    located = [ln for ln in r.stderr.splitlines() if ln.startswith(f"{src}:{line}: ")]
    assert any(what in ln for ln in located), r.stderr


def test_not_utf8_and_empty_files_exit_2(tmp_path):
    bad = tmp_path / "bin.twee"
    bad.write_bytes(b":: Start\n\xff\xfe\n")
    r = run_import(bad)
    assert r.code == 2 and f"{bad}:2: not UTF-8 text (byte 0xff)" in r.stderr
    empty = write(tmp_path / "empty.twee", "")
    r = run_import(empty)
    assert r.code == 2 and "no passages" in r.stderr


def test_a_link_to_a_missing_passage_is_listed_and_dropped(tmp_path):
    src = write(tmp_path / "broken.twee", ":: Start\nHi\n[[Nowhere]]\n[[End]]\n\n:: End\nBye\n")
    r = run_import(src)
    assert r.code == 0, r.stderr
    assert r.successors()["start"] == ["end"]
    assert f"lost: {src}:3: Start: link to 'Nowhere', which is not in the story, dropped" in (
        r.stderr)


def test_reimport_is_identical_and_an_edit_changes_only_that_passages_shots(tmp_path):
    src = write(tmp_path / "night.twee", SMALL)
    first = tmp_path / "a.yaml"
    again = tmp_path / "b.yaml"
    assert run_import(src, out=first).code == 0
    assert run_import(src, out=again).code == 0
    assert first.read_text() == again.read_text()  # same ids, same keys: nothing re-renders

    write(src, SMALL.replace("The streets are empty and wet.", "The streets shine with rain."))
    edited = tmp_path / "c.yaml"
    assert run_import(src, out=edited).code == 0
    before = plan_keys(first, tmp_path / "store")
    after = plan_keys(edited, tmp_path / "store")
    assert set(before) == set(after)
    changed = {shot for shot in before if before[shot] != after[shot]}
    assert changed == {"town-1"}


def test_source_references_are_not_part_of_any_cache_key(tmp_path):
    src = write(tmp_path / "night.twee", SMALL)
    a = tmp_path / "a.yaml"
    assert run_import(src, out=a).code == 0
    # the same story, each passage one line lower in the source: only source.line moves
    moved = write(tmp_path / "moved.twee", "\n" + SMALL)
    b = tmp_path / "b.yaml"
    assert run_import(moved, out=b).code == 0
    doc_a, doc_b = yaml.safe_load(a.read_text()), yaml.safe_load(b.read_text())
    lines_a = [s["source"]["line"] for s in doc_a["spec"]["segments"]]
    lines_b = [s["source"]["line"] for s in doc_b["spec"]["segments"]]
    assert lines_b == [n + 1 for n in lines_a]
    assert plan_keys(a, tmp_path / "s") == plan_keys(b, tmp_path / "s")


def _links(text: str) -> int:
    return len(re.findall(r"\[\[", text))


def test_real_story_lock_and_key(tmp_path):
    """The Twine Cookbook's Lock and Key (SugarCube): a loop, a conditional link, variables."""
    src = DATA / "lock-and-key" / "lock-and-key.twee"
    r = run_import(src)
    assert r.code == 2
    assert f"{src}:30: loop: Back Room -> Front Room -> Back Room" in r.stderr
    assert f"{src}:24: Front Room: option 'Exit' -> Exit depends on a condition" in r.stderr

    r = run_import(src, "--all-options", "--unroll", "0")
    assert r.code == 0, r.stderr
    passages = [p for p in re.findall(r"^:: (.+?)\s*$", src.read_text(), re.M)
                if p != "StoryTitle"]
    # every passage is a segment; every link is an option but the one that closes the loop
    assert sorted(s["source"]["name"] for s in r.segments.values()) == sorted(passages)
    options = sum(len(s.get("choice", {}).get("options", [])) for s in r.segments.values())
    dropped = [ln for ln in r.lines("lost: ") if "closes a loop" in ln]
    assert options + len(dropped) == _links(src.read_text()) == 5
    assert r.successors() == {
        "start": ["back-room", "front-room"],
        "back-room": ["front-room"],
        "front-room": ["exit"],
        "exit": [],
    }


def test_the_start_passage_need_not_come_first(tmp_path):
    src = write(tmp_path / "late.twee", ':: StoryData\n{"start": "Begin"}\n\n:: End\nBye.\n\n'
                ':: Begin\nHello.\n[[End]]\n')
    r = run_import(src)
    assert r.code == 0, r.stderr
    assert r.manifest["spec"]["start"] == "begin"
    assert r.successors() == {"begin": ["end"], "end": []}


def test_passage_tags_steer_every_shot_of_the_passage(tmp_path):
    src = write(tmp_path / "tags.twee", """\
:: Start
A door.
[[Hall]]

:: Hall [night shot:continuity=previous shot:duration=1.5]
A long hall.

<!-- shot: duration=4 -->
A lamp at the end.
""")
    r = run_import(src)
    assert r.code == 0, r.stderr
    assert r.segments["hall"]["shots"] == [
        {"id": "hall-1", "prompt": "A long hall.", "duration": 1.5, "continuity": "previous"},
        {"id": "hall-2", "prompt": "A lamp at the end.", "duration": 4.0,
         "continuity": "previous"},
    ]
    assert "continuity" not in r.segments["start"]["shots"][0]
    bad = write(tmp_path / "bad.twee", ":: Start [shot:prompt=x]\nHi\n")
    r = run_import(bad)
    assert r.code == 2
    assert f"{bad}:1: tag shot:prompt=x: a prompt is set per paragraph, not per passage" in (
        r.stderr)
