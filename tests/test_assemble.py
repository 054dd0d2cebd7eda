"""Masters by ffmpeg's concat demuxer and stream copy, with the real ffmpeg."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from actors.assemble import SpecMismatch, concat_clips, concat_list
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
    # a quote and spaces in a name: the concat list must quote paths properly
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


def test_concat_list_quotes_paths(tmp_path):
    text = concat_list([tmp_path / "it's.mp4"])
    assert text.splitlines()[0] == "ffconcat version 1.0"
    assert text.splitlines()[1] == "file '" + str(tmp_path.resolve()) + "/it'\\''s.mp4'"
    with pytest.raises(ValueError, match="line break"):
        concat_list([tmp_path / "a\nb.mp4"])
