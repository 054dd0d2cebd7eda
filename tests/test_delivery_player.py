"""The branching player in real headless Chromium (Playwright), on the lighthouse package.

The player's contract: ``window.reelfarmPlayer.events`` ({type, segment, shot, option, t}) and
``index.html?choices=...``. Gaps are read from the video's buffered media timeline (a property
of what was appended, not of this machine's speed); click-to-play waits are only reported."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from fixtures_delivery import LIGHTHOUSE, copy_package

REELFARM = [sys.executable, "-c", "from orchestrator.cli import main; main()"]
MAX_GAP = 0.150  # seconds on the media timeline
DONE = "window.reelfarmPlayer && ['ended', 'error'].includes(window.reelfarmPlayer.state)"
STATE = """() => {
  const v = document.getElementById('video');
  const p = window.reelfarmPlayer;
  return {events: p.events, metrics: p.metrics, state: p.state, error: p.error, path: p.path,
          prefetched: p.prefetched,
          buffered: Array.from({length: v.buffered.length},
                               (_, i) => [v.buffered.start(i), v.buffered.end(i)])};
}"""


def expected_path(story: dict, choices: list[int]) -> dict:
    """Walk story.json taking ``choices``: segments, shot ids and option indices."""
    segs = {s["id"]: s for s in story["segments"]}
    sid, k, segments, taken = story["start"], 0, [], []
    while True:
        segments.append(sid)
        seg = segs[sid]
        if seg["choice"]:
            opt = choices[k] if k < len(choices) else seg["choice"]["default"]
            taken.append(opt)
            sid, k = seg["choice"]["options"][opt]["next"], k + 1
        elif seg["next"]:
            sid = seg["next"]
        else:
            break
    branch = next(b for b in story["branches"] if b["segments"] == segments)
    shots = [story["shots"][t]["shot"] for t in branch["shots"]]
    return {"segments": segments, "options": taken, "shots": shots, "branch": branch}


def played(state: dict) -> dict:
    ev = state["events"]
    return {
        "shots": [e["shot"] for e in ev if e["type"] == "shot"],
        "options": [e["option"] for e in ev if e["type"] == "choice"],
        "via": [e["via"] for e in ev if e["type"] == "choice"],
        "ends": [e for e in ev if e["type"] == "end"],
    }


def check_timeline(state: dict, want: dict, fps: int, *, rewound: bool = False) -> None:
    """One continuous buffered range from 0 to the branch's length; each choice's gap small."""
    assert state["state"] == "ended", state["error"]
    assert len(state["buffered"]) == 1, state["buffered"]
    start, end = state["buffered"][0]
    assert start == pytest.approx(0, abs=0.5 / fps)
    assert end == pytest.approx(want["branch"]["frames"] / fps, abs=0.5 / fps)
    gaps = state["metrics"]["gaps"]
    assert len(gaps) == sum(e["type"] == "choice" for e in state["events"])
    for g in gaps:
        assert g["gap"] < MAX_GAP, g
    times = [e["t"] for e in state["events"] if e["type"] == "shot"]
    assert times[0] == 0 and (rewound or times == sorted(times))


def report(artifacts: Path, name: str, state: dict) -> None:
    waits = [round(w["ms"], 1) for w in state["metrics"]["waits"]]
    gaps = [g["gap"] for g in state["metrics"]["gaps"]]
    (artifacts / f"{name}.json").write_text(json.dumps(state, indent=2))
    print(f"\n{name}: choice gaps {gaps} s (media timeline), click-to-play waits {waits} ms")


def open_player(browser, url: str):
    page = browser.new_page(viewport={"width": 960, "height": 640})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_function("window.reelfarmPlayer && window.reelfarmPlayer.state !== 'loading'",
                           timeout=30_000)
    return page, errors


def test_chromium_can_play_the_package_codec(lighthouse, browser, serve):
    page, _ = open_player(browser, serve(lighthouse["out"]))
    mime = lighthouse["story"]["video"]["mime"]
    assert page.evaluate("(m) => MediaSource.isTypeSupported(m)", mime)
    page.close()


@pytest.mark.parametrize("how,choices", [("pointer", [1, 0]), ("keyboard", [0, 1])])
def test_each_option_chosen_plays_its_shots_in_order(lighthouse, browser, serve, artifacts, how,
                                                    choices):
    story = lighthouse["story"]
    want = expected_path(story, choices)
    page, errors = open_player(browser, serve(lighthouse["out"]))
    for opt in choices:
        page.wait_for_selector("#choice:not([hidden])", timeout=30_000)
        label = page.locator(f"#choice-options button[data-option='{opt}']").get_attribute(
            "aria-label")
        assert label.startswith(f"Option {opt + 1} of 2: ")
        if how == "pointer":
            page.get_by_role("button", name=label).click()
        else:
            page.keyboard.press(str(opt + 1))
        page.wait_for_selector("#choice", state="hidden")
    page.wait_for_function(DONE, timeout=60_000)
    state = page.evaluate(STATE)
    page.screenshot(path=str(artifacts / f"end-{how}.png"), full_page=True)
    got = played(state)
    assert got["shots"] == want["shots"]
    assert got["options"] == choices == want["options"]
    assert got["via"] == [how] * len(choices)
    assert len(got["ends"]) == 1 and got["ends"][0]["segment"] == want["segments"][-1]
    labels = page.locator("#path li").all_inner_texts()
    assert labels == state["path"] == [c["label"] for c in
                                       (e for e in state["events"] if e["type"] == "choice")]
    # during each window the first segment of every option was fetched ahead
    for e in (e for e in state["events"] if e["type"] == "choice"):
        seg = next(s for s in story["segments"] if s["id"] == e["segment"])
        for o in seg["choice"]["options"]:
            nxt = next(s for s in story["segments"] if s["id"] == o["next"])
            firsts = {story["shots"][v["shots"][0]]["media"][0]["uri"] for v in nxt["variants"]}
            assert firsts & set(state["prefetched"]), o
    check_timeline(state, want, story["video"]["fps"])
    report(artifacts, f"player-{how}", state)
    assert errors == []
    page.close()


def test_a_timeout_takes_the_default(lighthouse, browser, serve, artifacts):
    story = lighthouse["story"]
    want = expected_path(story, [])
    page, errors = open_player(browser, serve(lighthouse["out"]))
    page.wait_for_selector("#choice:not([hidden])", timeout=30_000)
    page.screenshot(path=str(artifacts / "choice.png"), full_page=True)
    page.wait_for_function(DONE, timeout=60_000)
    state = page.evaluate(STATE)
    got = played(state)
    assert got["via"] == ["timeout", "timeout"]
    assert got["options"] == want["options"] == [0, 1]  # the manifest's defaults
    assert got["shots"] == want["shots"]
    check_timeline(state, want, story["video"]["fps"])
    report(artifacts, "player-timeout", state)
    assert errors == []
    page.close()


def test_choices_in_the_url_play_that_path_unattended(lighthouse, browser, serve, artifacts):
    story = lighthouse["story"]
    want = expected_path(story, [1, 1])
    page, errors = open_player(browser, serve(lighthouse["out"]) + "?choices=1,1")
    page.wait_for_function(DONE, timeout=60_000)
    state = page.evaluate(STATE)
    got = played(state)
    assert got["via"] == ["script", "script"]
    assert got["options"] == [1, 1]
    assert got["shots"] == want["shots"]
    # the boat path enters the lamp room by its own continuity variant
    assert [e["task"] for e in state["events"] if e["type"] == "shot"][3] == "lamp-room~2"
    check_timeline(state, want, story["video"]["fps"])
    report(artifacts, "player-choices-url", state)
    assert errors == []
    page.close()


def test_back_to_last_choice_replays_it(lighthouse, browser, serve, artifacts):
    story = lighthouse["story"]
    page, _ = open_player(browser, serve(lighthouse["out"]))
    page.wait_for_selector("#choice:not([hidden])", timeout=30_000)
    page.keyboard.press("1")  # climb the tower
    page.wait_for_selector("#choice:not([hidden])", timeout=30_000)
    page.keyboard.press("1")  # light it
    page.wait_for_function(DONE, timeout=60_000)
    page.get_by_role("button", name="Back to last choice").click()
    page.wait_for_selector("#choice:not([hidden])", timeout=30_000)
    assert page.locator("#choice-prompt").inner_text() == "Light the lamp?"
    assert page.locator("#path li").all_inner_texts() == ["Climb the tower"]
    page.keyboard.press("2")  # let it go dark
    page.wait_for_function(DONE, timeout=60_000)
    state = page.evaluate(STATE)
    page.screenshot(path=str(artifacts / "back.png"), full_page=True)
    assert state["path"] == ["Climb the tower", "Let it go dark"]
    choices = [(e["segment"], e["option"]) for e in state["events"] if e["type"] == "choice"]
    assert choices == [("dock", 0), ("lamp", 0), ("lamp", 1)]
    assert [e["segment"] for e in state["events"] if e["type"] == "end"] == ["dawn", "storm"]
    assert state["events"][-2]["shot"] == "wreck"
    check_timeline(state, expected_path(story, [0, 1]), story["video"]["fps"], rewound=True)
    # restart plays the story again from its first shot, with an empty path
    before = len(state["events"])
    page.get_by_role("button", name="Restart").click()
    page.wait_for_selector("#choice:not([hidden])", timeout=30_000)
    assert page.locator("#path li").count() == 0
    again = page.evaluate("reelfarmPlayer.events").copy()[before:]
    assert (again[0]["type"], again[0]["shot"], again[0]["t"]) == ("shot", "dock-wide", 0)
    assert page.evaluate("reelfarmPlayer.path") == []
    page.close()


def test_an_unreadable_story_map_shows_a_clear_message(lighthouse, browser, serve, tmp_path):
    pkg = copy_package(lighthouse["out"], tmp_path / "pkg")
    (pkg / "story.json").write_text("{ not json")
    page, _ = open_player(browser, serve(pkg))
    assert page.evaluate("reelfarmPlayer.state") == "error"
    alert = page.get_by_role("alert")
    assert alert.is_visible()
    assert alert.inner_text().startswith(
        "Sorry, this part of the story cannot be played: story.json could not be read")
    page.close()


def _break(out: Path, dest: Path, story: dict, task: str, how: str) -> str:
    pkg = copy_package(out, dest)
    uri = story["shots"][task]["media"][0]["uri"]
    if how == "missing":
        (pkg / uri).unlink()
    else:
        (pkg / uri).write_bytes(b"\x00\x00\x00\x10moof" + os.urandom(4000))
    return uri


@pytest.mark.parametrize("how", ["missing", "corrupt"])
def test_a_broken_segment_shows_a_clear_message(lighthouse, browser, serve, artifacts, tmp_path,
                                                how):
    story = lighthouse["story"]
    uri = _break(lighthouse["out"], tmp_path / "pkg", story, "oars", how)
    page, _ = open_player(browser, serve(tmp_path / "pkg") + "?choices=1,0")
    page.wait_for_function(DONE, timeout=60_000)
    state = page.evaluate(STATE)
    assert state["state"] == "error"
    alert = page.get_by_role("alert")
    assert alert.is_visible()
    text = alert.inner_text()
    assert text.startswith("Sorry, this part of the story cannot be played")
    if how == "missing":
        assert f"{uri} could not be loaded (HTTP 404)" in text
    # it stopped before the broken shot: nothing from it or after it played
    shots = [e["shot"] for e in state["events"] if e["type"] == "shot"]
    assert shots[0] == "dock-wide" and "oars" not in shots and "sunrise" not in shots
    assert page.locator("#choice").is_hidden()
    page.screenshot(path=str(artifacts / f"broken-{how}.png"), full_page=True)
    page.close()


# -- reelfarm play ---------------------------------------------------------------------------


def test_play_serves_the_package_with_its_content_types(lighthouse):
    proc = subprocess.Popen(
        [*REELFARM, "play", str(LIGHTHOUSE), "--out",
         str(lighthouse["out"]), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/index\.html", url), url
        base = url.rsplit("/", 1)[0]
        story = lighthouse["story"]
        want = {
            "index.html": "text/html",
            "player.js": "text/javascript",
            "story.json": "application/json",
            "hls/index.m3u8": "application/vnd.apple.mpegurl",
            story["shots"]["dock-wide"]["init"]: "video/mp4",
            story["shots"]["dock-wide"]["media"][0]["uri"]: "video/iso.segment",
        }
        for rel, ctype in want.items():
            with urllib.request.urlopen(f"{base}/{rel}") as r:
                assert r.headers["Content-Type"].split(";")[0] == ctype, rel
                assert r.read() == (lighthouse["out"] / rel).read_bytes()
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{base}/media/")
        assert e.value.code == 404  # no listings
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=30)
    assert rc == 0


def test_play_without_a_package_says_what_to_do(tmp_path):
    proc = subprocess.run(
        [*REELFARM, "play", str(LIGHTHOUSE), "--out",
         str(tmp_path), "--port", "0"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path} holds no package (index.html and story.json); "
        "run `reelfarm package` first"]


def test_play_refuses_a_public_address(tmp_path):
    proc = subprocess.run(
        [*REELFARM, "play", str(LIGHTHOUSE), "--out",
         str(tmp_path), "--host", "0.0.0.0"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: the player server binds a loopback address only, not '0.0.0.0'")


def test_after_a_missing_segment_the_viewer_can_go_back_and_choose_again(
        lighthouse, browser, serve, tmp_path):
    story = lighthouse["story"]
    _break(lighthouse["out"], tmp_path / "pkg", story, "oars", "missing")
    page, _ = open_player(browser, serve(tmp_path / "pkg"))
    page.wait_for_selector("#choice:not([hidden])", timeout=30_000)
    page.keyboard.press("2")  # take the boat: its segment is missing
    page.get_by_role("alert").wait_for(state="visible", timeout=30_000)
    page.get_by_role("button", name="Back to last choice").click()
    page.wait_for_selector("#choice:not([hidden])", timeout=30_000)
    assert page.get_by_role("alert").is_hidden()
    page.keyboard.press("1")  # climb the tower instead
    page.wait_for_function(DONE, timeout=60_000)
    state = page.evaluate(STATE)
    assert state["state"] == "ended", state["error"]
    assert state["path"] == ["Climb the tower", "Let it go dark"]
    assert [e["shot"] for e in state["events"] if e["type"] == "shot"][-3:] == [
        "stairs", "lamp-room", "wreck"]
    page.close()
