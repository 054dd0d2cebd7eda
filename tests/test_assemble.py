"""Masters by ffmpeg's concat demuxer and stream copy, with the real ffmpeg."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from actors.assemble import (
    AssemblyError,
    SpecMismatch,
    check_clips,
    check_master,
    concat_clips,
)
from actors.backends.previz import PrevizRenderer
from actors.encode import ClipEncoder
from actors.media import ffmpeg_exe, probe
from orchestrator.plan import RenderTask
from orchestrator.spec.manifest import Profile, RendererSpec

PROFILE = Profile(width=256, height=144, fps=24)
FRAMES = (10, 24, 7)


def previz_clip(path: Path, frames: int, profile: Profile = PROFILE, seed: int = 1) -> Path:
    task = RenderTask(
        id=path.stem,
        key="c" * 64,
        shot="shot",
        segment="seg",
        prompt=f"shot {seed}",
        negative_prompt="",
        seed=seed,
        frames=frames,
        profile=profile,
        renderer=RendererSpec(backend="previz"),
        continuity="cut",
    )
    with ClipEncoder(path, profile) as enc:
        for frame in PrevizRenderer().render(task, None):
            enc.write(frame)
    return path


def ffmpeg_clip(path: Path, *args: str, size: str = "256x144", rate: int = 24) -> Path:
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    cmd += ["-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}", *args, "-frames:v", "8"]
    cmd += ["-c:v", "libx264", "-bf", "0", "-video_track_timescale", str(rate * 1000), str(path)]
    subprocess.run(cmd, check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("clips")
    # a quote and spaces in a name
    names = ["a.mp4", "it's b.mp4", "c c.mp4"]
    pairs = zip(names, FRAMES, strict=True)
    return [previz_clip(d / n, f, seed=i) for i, (n, f) in enumerate(pairs)]


def test_concat_sums_frames_and_copies_every_packet(clips, tmp_path):
    out = tmp_path / "masters" / "ending.mp4"
    info = concat_clips(clips, out, PROFILE)
    assert info.path == str(out)
    assert info.frames == sum(FRAMES) == probe(out).frames
    assert info.duration_ticks == sum(FRAMES) * 1000
    assert (info.width, info.height, info.fps, info.timescale) == (256, 144, 24, 24000)
    assert sorted(p.name for p in out.parent.iterdir()) == ["ending.mp4"]  # no temp left over

    # no re-encode: the master's packets are the clips' packets, byte for byte, in order
    master = probe(out, packets=True)
    parts = [probe(c, packets=True) for c in clips]
    want = [(p.size, p.crc, p.keyframe) for part in parts for p in part.packets]
    assert [(p.size, p.crc, p.keyframe) for p in master.packets] == want
    assert master.extradata == parts[0].extradata
    assert [p.pts for p in master.packets] == [i * 1000 for i in range(sum(FRAMES))]
    assert master.keyframes[:3] == (0, FRAMES[0], FRAMES[0] + FRAMES[1])

    # and it plays: every frame decodes, in order
    with av.open(str(out)) as container:
        decoded = list(container.decode(video=0))
    assert len(decoded) == sum(FRAMES)
    assert [f.pts for f in decoded] == [i * 1000 for i in range(sum(FRAMES))]


def test_a_clip_may_repeat(clips, tmp_path):
    out = tmp_path / "twice.mp4"
    info = concat_clips([clips[2], clips[2]], out, PROFILE)
    assert info.frames == 2 * FRAMES[2]


def test_output_is_replaced_atomically(clips, tmp_path):
    out = tmp_path / "m.mp4"
    out.write_bytes(b"old")
    concat_clips(clips[:1], out, PROFILE)
    assert probe(out).frames == FRAMES[0]


def refused(clips: list[Path], tmp_path: Path) -> SpecMismatch:
    out = tmp_path / "master.mp4"
    with pytest.raises(SpecMismatch) as err:
        concat_clips(clips, out, PROFILE)
    assert not out.exists()
    assert list(tmp_path.glob(".master.mp4*")) == []
    return err.value


def test_another_frame_rate_is_refused(clips, tmp_path):
    bad = previz_clip(tmp_path / "fast.mp4", 6, Profile(width=256, height=144, fps=30))
    err = refused([clips[0], bad, clips[1]], tmp_path)
    assert len(err.problems) == 1
    assert "clip 1" in str(err) and "fast.mp4" in str(err)
    assert "fps 30 (expected 24)" in str(err) and "timescale 30000 (expected 24000)" in str(err)


def test_another_size_is_refused(clips, tmp_path):
    bad = previz_clip(tmp_path / "big.mp4", 4, Profile(width=320, height=192, fps=24))
    err = refused([bad, *clips], tmp_path)
    assert "clip 0" in str(err) and "big.mp4" in str(err)
    assert "size 320x192 (expected 256x144)" in str(err)


def test_another_pixel_format_is_refused(clips, tmp_path):
    bad = ffmpeg_clip(tmp_path / "444.mp4", "-pix_fmt", "yuv444p")
    err = refused([clips[0], bad], tmp_path)
    assert "444.mp4" in str(err) and "pix_fmt yuv444p (expected yuv420p)" in str(err)


def test_other_codec_settings_are_refused(clips, tmp_path):
    # right size, rate, pixel format and timescale, but other H.264 headers (Baseline profile)
    bad = ffmpeg_clip(tmp_path / "baseline.mp4", "-pix_fmt", "yuv420p", "-profile:v", "baseline")
    err = refused([clips[0], bad], tmp_path)
    assert "baseline.mp4" in str(err) and "codec headers" in str(err)


def test_a_clip_with_audio_is_refused(clips, tmp_path):
    bad = ffmpeg_clip(
        tmp_path / "audio.mp4", "-f", "lavfi", "-i", "sine=duration=1", "-pix_fmt", "yuv420p"
    )
    err = refused([clips[0], bad], tmp_path)
    assert "audio.mp4" in str(err) and "audio track" in str(err)


def test_a_clip_that_is_not_video_is_refused(clips, tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.arange(256, dtype=np.uint8).tobytes())
    with pytest.raises(Exception, match="junk.mp4"):
        concat_clips([clips[0], junk], tmp_path / "master.mp4", PROFILE)
    assert not (tmp_path / "master.mp4").exists()


def test_no_clips_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no clips"):
        concat_clips([], tmp_path / "m.mp4", PROFILE)



def top_boxes(path: Path) -> list[bytes]:
    """The types of an MP4 file's top-level boxes, in file order, read from its bytes."""
    data = path.read_bytes()
    kinds, at = [], 0
    while at < len(data):
        size = int.from_bytes(data[at:at + 4], "big")
        if size == 1:
            size = int.from_bytes(data[at + 8:at + 16], "big")
        assert size >= 8, (at, size)
        kinds.append(data[at + 4:at + 8])
        at += size
    assert at == len(data)
    return kinds


def test_the_master_is_faststart(clips, tmp_path):
    out = tmp_path / "m.mp4"
    concat_clips(clips, out, PROFILE)
    kinds = top_boxes(out)
    assert kinds[0] == b"ftyp"
    assert kinds.index(b"moov") < kinds.index(b"mdat")


def test_the_master_is_deterministic(clips, tmp_path):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    concat_clips(clips, a, PROFILE)
    concat_clips(clips, b, PROFILE)
    assert a.read_bytes() == b.read_bytes()
    data = a.read_bytes()
    assert b"Lavf" not in data  # bit-exact: no muxer version string, no metadata


def test_every_mismatched_clip_is_named(clips, tmp_path):
    # the first clip is fine; two others each fail another way, one of them twice in the list
    fast = previz_clip(tmp_path / "fast.mp4", 6, Profile(width=256, height=144, fps=30))
    yuv444 = ffmpeg_clip(tmp_path / "444.mp4", "-pix_fmt", "yuv444p")
    err = refused([clips[0], fast, clips[1], yuv444, fast], tmp_path)
    assert len(err.problems) == 3
    assert err.problems[0].startswith("clip 1 (") and "fast.mp4" in err.problems[0]
    assert err.problems[1].startswith("clip 3 (") and "444.mp4" in err.problems[1]
    assert "pix_fmt yuv444p (expected yuv420p)" in err.problems[1]
    assert err.problems[2].startswith("clip 4 (") and "fps 30 (expected 24)" in err.problems[2]


def test_a_master_that_is_not_the_clips_sum_is_refused(clips, tmp_path):
    master = tmp_path / "m.mp4"
    concat_clips(clips[:2], master, PROFILE)
    infos = check_clips(clips[:2], PROFILE)
    assert check_master(master, infos).frames == FRAMES[0] + FRAMES[1]
    # checked against one clip more than it holds: its frame count is wrong
    with pytest.raises(AssemblyError, match=f"has {FRAMES[0] + FRAMES[1]} frames"):
        check_master(master, check_clips(clips, PROFILE))
    # and against fewer
    with pytest.raises(AssemblyError, match=f"add up to {FRAMES[0]} "):
        check_master(master, infos[:1])


def test_a_master_cut_short_is_refused(clips, tmp_path):
    master = tmp_path / "m.mp4"
    concat_clips(clips, master, PROFILE)
    infos = check_clips(clips, PROFILE)
    data = master.read_bytes()
    master.write_bytes(data[:-100])
    with pytest.raises(AssemblyError, match="not a complete MP4"):
        check_master(master, infos)


def test_a_master_with_its_index_last_is_refused(clips, tmp_path):
    plain = tmp_path / "plain.mp4"
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i",
           str(clips[0]), "-c", "copy", str(plain)]
    subprocess.run(cmd, check=True, capture_output=True)
    assert top_boxes(plain).index(b"mdat") < top_boxes(plain).index(b"moov")
    with pytest.raises(AssemblyError, match="moov"):
        check_master(plain, check_clips(clips[:1], PROFILE))
