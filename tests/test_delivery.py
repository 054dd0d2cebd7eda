"""Packaging (CMAF by stream copy, content-addressed), per-branch HLS and story.json, on a real
previz render of manifests/lighthouse.yaml (see fixtures_delivery.py)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from fixtures_delivery import LIGHTHOUSE, ROOT, framemd5, run_cli

from orchestrator.delivery import _fmp4
from orchestrator.delivery.storymap import schema_text

SCHEMA = ROOT / "manifests" / "story-map.schema.json"


def package_json(story: Path, store: Path, out: Path | str, *extra: str) -> dict:
    code, stdout, stderr = run_cli("package", str(story), "--store", str(store), "--out",
                                   str(out), "--json", *extra)
    assert code == 0, stderr
    return json.loads(stdout)


# -- the site --------------------------------------------------------------------------------


def test_render_package_writes_a_static_site(lighthouse):
    out = lighthouse["out"]
    for name in ("index.html", "player.js", "player.css", "story.json", "hls/index.m3u8"):
        assert (out / name).is_file(), name
    assert lighthouse["stdout"].splitlines()[-1] == f"{out}/index.html"
    assert re.search(r"packaged \d+, reused 0 of \d+ shot packages", lighthouse["stderr"])


def test_story_map_schema_is_committed_and_story_json_follows_it(lighthouse):
    assert SCHEMA.read_text() == schema_text(), (
        "regenerate: python -m orchestrator.delivery.storymap > manifests/story-map.schema.json")
    jsonschema.validate(lighthouse["story"], json.loads(SCHEMA.read_text()))


def test_story_json_holds_segments_choices_endings_and_start(lighthouse):
    doc = lighthouse["story"]
    manifest = yaml.safe_load(LIGHTHOUSE.read_text())["spec"]
    assert doc["version"] == 1
    assert doc["start"] == "dock"
    assert sorted(doc["endings"]) == ["dawn", "storm"]
    segs = {s["id"]: s for s in doc["segments"]}
    assert segs["dock"]["choice"] == {
        "prompt": "Where does the keeper go?", "default": 0, "window": 2.0, "timeout": "default",
        "options": [{"label": "Climb the tower", "next": "tower"},
                    {"label": "Take the boat", "next": "boat"}],
    }
    assert segs["lamp"]["choice"]["window"] == 2.0 and segs["lamp"]["choice"]["default"] == 1
    assert segs["tower"]["next"] == "lamp" and segs["tower"]["choice"] is None
    assert segs["dawn"]["ending"] and not segs["dock"]["ending"]
    # the reconverging segment plays a continuity variant chosen by the way it was entered
    lamp = segs["lamp"]["variants"]
    assert sorted(tuple(v["after"]) for v in lamp) == [("oars",), ("stairs",)]
    assert {v["shots"][0] for v in lamp} == {"lamp-room~1", "lamp-room~2"}
    for seg in manifest["segments"]:
        want = sum(s["duration"] for s in seg["shots"])
        assert segs[seg["id"]]["duration"] == pytest.approx(want)
    dock_wide = doc["shots"]["dock-wide"]
    assert dock_wide["duration"] == 3.0
    assert sum(m["duration"] for m in dock_wide["media"]) == pytest.approx(3.0)
    for shot in doc["shots"].values():
        assert all(m["duration"] <= 2.0 for m in shot["media"])
        for m in shot["media"]:
            assert (lighthouse["out"] / m["uri"]).is_file()


def test_media_segments_are_stream_copies_of_the_clips(lighthouse):
    """The frames in a shot's segments are the clip's frames, bit for bit (no re-encode)."""
    from orchestrator.store import open_store

    out, doc = lighthouse["out"], lighthouse["story"]
    report = json.loads((out / "report.json").read_text())
    store = open_store(str(lighthouse["store"]))
    clip = next(t["clip"] for t in report["tasks"] if t["id"] == "dock-wide")
    shot = doc["shots"]["dock-wide"]
    joined = out / "joined.mp4"
    joined.write_bytes((out / shot["init"]).read_bytes()
                       + b"".join((out / m["uri"]).read_bytes() for m in shot["media"]))
    clip_path = out / "clip.mp4"
    store.get_file(clip, clip_path)
    from actors.media import probe

    a, b = probe(joined, packets=True), probe(clip_path, packets=True)
    assert [p.crc for p in a.packets] == [p.crc for p in b.packets]
    assert len(a.packets) == shot["frames"]


# -- bytes -----------------------------------------------------------------------------------


def test_package_bytes_are_close_to_the_unique_shots(lighthouse, tmp_path):
    doc = package_json(LIGHTHOUSE, lighthouse["store"], tmp_path / "again")
    b = doc["bytes"]
    assert b["package"] <= 1.1 * b["unique_shots"]
    assert b["masters"] is not None and b["package"] < b["masters"]
    assert b["naive_shots"] > b["unique_shots"]
    on_disk = sum(p.stat().st_size for p in (tmp_path / "again" / "media").iterdir())
    assert on_disk == b["package"]


# -- content addressing ----------------------------------------------------------------------


def test_packaging_again_reuses_every_shot(lighthouse, tmp_path):
    doc = package_json(LIGHTHOUSE, lighthouse["store"], tmp_path / "pkg")
    assert doc["packaged"] == 0 and doc["packaged_tasks"] == []
    assert doc["reused"] == doc["packages"]


def test_an_edit_repackages_only_the_edited_shots(lighthouse, tmp_path):
    data = yaml.safe_load(LIGHTHOUSE.read_text())
    for seg in data["spec"]["segments"]:
        for shot in seg["shots"]:
            if shot["id"] == "sunrise":
                shot["prompt"] = "Sunrise, and a second ship on the horizon."
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(data, sort_keys=False))
    code, _, stderr = run_cli("render", str(edited), "--store", str(lighthouse["store"]),
                              "--out", str(tmp_path / "out"), "--plain")
    assert code == 0, stderr
    doc = package_json(edited, lighthouse["store"], tmp_path / "out")
    assert doc["packaged_tasks"] == ["sunrise"]
    assert doc["packaged"] == 1


def test_the_choice_window_is_not_part_of_any_key(lighthouse, tmp_path):
    data = yaml.safe_load(LIGHTHOUSE.read_text())
    data["spec"]["segments"][0]["choice"]["window"] = 2.5
    edited = tmp_path / "window.yaml"
    edited.write_text(yaml.safe_dump(data, sort_keys=False))
    plans = []
    for story in (LIGHTHOUSE, edited):
        code, stdout, stderr = run_cli("plan", str(story), "--store", str(lighthouse["store"]),
                                       "--json")
        assert code == 0, stderr
        plans.append(json.loads(stdout))
    assert [t["key"] for t in plans[0]["task_list"]] == [t["key"] for t in plans[1]["task_list"]]
    assert plans[1]["tasks"]["to_render"] == 0
    doc = package_json(edited, lighthouse["store"], tmp_path / "pkg")
    assert doc["packaged"] == 0
    story = json.loads((tmp_path / "pkg" / "story.json").read_text())
    assert story["segments"][0]["choice"]["window"] == 2.5


@pytest.mark.parametrize("window", [0, -1, 601, "soon"])
def test_a_bad_choice_window_is_refused_with_its_line(tmp_path, window):
    data = yaml.safe_load(LIGHTHOUSE.read_text())
    data["spec"]["segments"][0]["choice"]["window"] = window
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data, sort_keys=False))
    code, _, stderr = run_cli("validate", str(bad))
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1
    assert "spec.segments[0].choice.window" in lines[0] and f"{bad}:" in lines[0]


def test_the_committed_manifest_schema_has_the_window():
    schema = json.loads((ROOT / "manifests" / "story.schema.json").read_text())
    window = schema["$defs"]["Choice"]["properties"]["window"]
    assert window["default"] == 5.0 and window["exclusiveMinimum"] == 0


# -- input errors ----------------------------------------------------------------------------


def test_packaging_an_unrendered_story_says_so(tmp_path):
    code, stdout, stderr = run_cli("package", str(LIGHTHOUSE), "--store", str(tmp_path / "empty"),
                                   "--out", str(tmp_path / "out"))
    assert code == 1
    assert stdout == ""
    assert stderr.startswith("error: 9 shot(s) are not rendered")
    assert "Traceback" not in stderr
    assert not (tmp_path / "out").exists()


def test_a_segment_shorter_than_a_keyframe_interval_is_refused(lighthouse, tmp_path):
    code, _, stderr = run_cli("package", str(LIGHTHOUSE), "--store", str(lighthouse["store"]),
                              "--out", str(tmp_path / "out"), "--segment-seconds", "1")
    assert code == 2
    assert stderr.strip().splitlines() == [
        "error: --segment-seconds 1 is shorter than the clips' keyframe interval (2 s): media "
        "segments start on keyframes and are never re-encoded"]


def test_longer_segments_hold_whole_keyframe_intervals(lighthouse, tmp_path):
    package_json(LIGHTHOUSE, lighthouse["store"], tmp_path / "out", "--segment-seconds", "4")
    doc = json.loads((tmp_path / "out" / "story.json").read_text())
    assert [m["duration"] for m in doc["shots"]["dock-wide"]["media"]] == [3.0]


# -- HLS -------------------------------------------------------------------------------------

TAG_RE = re.compile(r"^#EXT[-A-Z0-9]*(?::.*)?$")


def parse_media_playlist(path: Path) -> dict:
    """Parse a media playlist and check the RFC 8216 rules it must follow."""
    lines = path.read_text().splitlines()
    assert lines[0] == "#EXTM3U"
    tags: dict[str, str] = {}
    segments: list[dict] = []
    pending: dict = {"discontinuity": False}
    init = None
    for line in lines[1:]:
        assert line == line.strip() and line, f"blank or padded line in {path}"
        if line.startswith("#"):
            assert TAG_RE.match(line), line
            name, _, value = line.partition(":")
            if name == "#EXTINF":
                duration, _, _title = value.partition(",")
                pending["duration"] = float(duration)
            elif name == "#EXT-X-DISCONTINUITY":
                pending["discontinuity"] = True
            elif name == "#EXT-X-MAP":
                m = re.fullmatch(r'URI="([^"]+)"', value)
                assert m, line
                init = m.group(1)
            else:
                assert name not in tags, f"{name} twice"
                tags[name] = value
            continue
        assert "duration" in pending, f"{line} has no EXTINF"
        assert init is not None, "a media segment before any EXT-X-MAP"
        segments.append({**pending, "uri": line, "init": init})
        pending = {"discontinuity": False}
    assert lines[-1] == "#EXT-X-ENDLIST"
    assert int(tags["#EXT-X-VERSION"]) >= 6  # EXT-X-MAP without I-frames only
    target = int(tags["#EXT-X-TARGETDURATION"])
    assert all(round(s["duration"]) <= target for s in segments)
    assert tags["#EXT-X-PLAYLIST-TYPE"] == "VOD"
    return {"tags": tags, "segments": segments}


def test_branch_playlists_are_valid_and_share_segments(lighthouse):
    out = lighthouse["out"]
    doc = lighthouse["story"]
    seen: dict[str, int] = {}
    for b in doc["branches"]:
        pl = parse_media_playlist(out / b["playlist"])
        uris = [s["uri"] for s in pl["segments"]]
        # the playlist lists exactly the branch's shots' media segments, in order
        want = [m["uri"] for t in b["shots"] for m in doc["shots"][t]["media"]]
        assert [u.removeprefix("../") for u in uris] == want
        for s in pl["segments"]:
            assert (out / "hls" / s["uri"]).is_file()
            assert (out / "hls" / s["init"]).is_file()
            seen[s["uri"]] = seen.get(s["uri"], 0) + 1
        assert sum(s["duration"] for s in pl["segments"]) == pytest.approx(b["frames"] / 12)
        # EXT-X-DISCONTINUITY exactly where the decode times do not continue
        prev_end = None
        for s in pl["segments"]:
            data = (out / "hls" / s["uri"]).read_bytes()
            start = _fmp4.decode_time(data)
            assert s["discontinuity"] == (prev_end is not None and start != prev_end), s["uri"]
            assert prev_end is None or start >= prev_end  # time never runs backwards
            prev_end = start + _fmp4.sample_count(data) * 1000
    assert max(seen.values()) == len(doc["branches"])  # the opening is shared by every branch
    # tower (1 s) and boat (1 s) are as long as each other: the lamp room continues either
    # way, so no branch of this story needs a discontinuity at all
    assert not any(s["discontinuity"] for b in doc["branches"]
                   for s in parse_media_playlist(out / b["playlist"])["segments"])


def test_multivariant_playlist_offers_every_branch(lighthouse):
    out = lighthouse["out"]
    lines = (out / "hls" / "index.m3u8").read_text().splitlines()
    assert lines[0] == "#EXTM3U"
    media = [ln for ln in lines if ln.startswith("#EXT-X-MEDIA:")]
    names = [re.search(r'NAME="([^"]+)"', ln).group(1) for ln in media]
    assert names == [b["name"] for b in lighthouse["story"]["branches"]]
    assert sum("DEFAULT=YES" in ln for ln in media) == 1
    for ln in media:
        uri = re.search(r'URI="([^"]+)"', ln).group(1)
        assert (out / "hls" / uri).is_file()
    i = next(i for i, ln in enumerate(lines) if ln.startswith("#EXT-X-STREAM-INF:"))
    inf = lines[i]
    assert re.search(r"BANDWIDTH=\d+", inf) and 'VIDEO="branch"' in inf
    assert re.search(r'CODECS="avc1\.64[0-9a-f]{4}"', inf) and "RESOLUTION=128x72" in inf
    assert (out / "hls" / lines[i + 1]).is_file()


def test_ffmpeg_decodes_each_branch_playlist_to_exactly_its_master(lighthouse):
    out = lighthouse["out"]
    for b in lighthouse["branches"]:
        hls = framemd5(["-i", str(out / "hls" / f"{b['name']}.m3u8")])
        master = framemd5(["-i", str(out / b["master"]["path"])])
        assert len(hls) == b["master"]["frames"] == len(master)
        assert hls == master, b["name"]


def test_a_reconverging_branch_of_unequal_length_gets_one_discontinuity(ray_cluster, tmp_path):
    """When one way to a segment is shorter, its playlist jumps forward in time there, marked
    by EXT-X-DISCONTINUITY, and ffmpeg still decodes exactly the master's frames."""
    data = yaml.safe_load(LIGHTHOUSE.read_text())
    data["metadata"]["name"] = "lighthouse-long"
    for seg in data["spec"]["segments"]:
        if seg["id"] == "tower":
            seg["shots"][0]["duration"] = 2.0
    story = tmp_path / "long.yaml"
    story.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "out"
    code, _, stderr = run_cli("render", str(story), "--store", str(tmp_path / "store"), "--out",
                              str(out), "--plain", "--package")
    assert code == 0, stderr
    branches = json.loads((out / "branches.json").read_text())
    for b in branches:
        pl = parse_media_playlist(out / "hls" / f"{b['name']}.m3u8")
        jumps = sum(s["discontinuity"] for s in pl["segments"])
        assert jumps == (1 if "boat" in b["segments"] else 0), b["name"]
        hls = framemd5(["-i", str(out / "hls" / f"{b['name']}.m3u8")])
        assert hls == framemd5(["-i", str(out / b["master"]["path"])])
        if jumps:  # and a plain `ffmpeg -i playlist out.mp4` neither drops nor repeats frames
            from actors.media import ffmpeg_exe, probe

            dest = tmp_path / f"{b['name']}.mp4"
            subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i",
                            str(out / "hls" / f"{b['name']}.m3u8"), str(dest)], check=True)
            assert probe(dest).frames == b["master"]["frames"]


# -- a package in S3 ------------------------------------------------------------------------


@pytest.mark.s3
def test_package_to_s3_has_the_content_types_a_static_host_needs(lighthouse, s3_url, s3_client):
    from orchestrator.store.s3 import parse_s3_url

    doc = package_json(LIGHTHOUSE, lighthouse["store"], s3_url)
    assert doc["packaged"] == 0  # packaged already by the render: only published here
    bucket, prefix = parse_s3_url(s3_url)
    story = lighthouse["story"]
    want = {
        "index.html": "text/html; charset=utf-8",
        "player.js": "text/javascript; charset=utf-8",
        "story.json": "application/json",
        "hls/index.m3u8": "application/vnd.apple.mpegurl",
        story["shots"]["oars"]["init"]: "video/mp4",
        story["shots"]["oars"]["media"][0]["uri"]: "video/iso.segment",
    }
    for rel, ctype in want.items():
        obj = s3_client.get_object(Bucket=bucket, Key=f"{prefix}{rel}")
        assert obj["ContentType"] == ctype, rel
        body = obj["Body"].read()
        if rel.startswith("media/"):
            assert body == (lighthouse["out"] / rel).read_bytes()
    listed = s3_client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}media/")
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in listed["Contents"]) == sorted(
        p.name for p in (lighthouse["out"] / "media").iterdir())


def test_render_package_does_not_package_a_render_with_failed_shots(ray_cluster, tmp_path):
    from backends_for_tests import SleepBackend, use

    use(SleepBackend("sleep-fail-delivery", fail_shots=frozenset({"oars"})))
    data = yaml.safe_load(LIGHTHOUSE.read_text())
    data["metadata"]["name"] = "lighthouse-fail"
    data["spec"]["renderer"] = {"backend": "sleep-fail-delivery"}
    story = tmp_path / "fail.yaml"
    story.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "out"
    code, _, stderr = run_cli("render", str(story), "--store", str(tmp_path / "store"), "--out",
                              str(out), "--plain", "--retries", "0", "--package")
    assert code == 1
    assert "lighthouse-fail: not packaged: the render did not finish every shot" in stderr
    assert (out / "branches.json").is_file() and not (out / "story.json").exists()
