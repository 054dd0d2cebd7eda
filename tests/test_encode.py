"""The intermediate encode spec, the streaming encoder and frame fitting, with the real ffmpeg."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import pytest
from av.video.frame import PictureType

from actors.encode import (
    ClipEncoder,
    EncodeError,
    decode_png,
    encode_png,
    encode_spec,
    fit_frame,
)
from actors.media import FFmpegNotFound, ProbeError, ffmpeg_exe, probe
from orchestrator.spec.manifest import Profile

PROFILE = Profile(width=256, height=144, fps=24)


def gradient(width: int, height: int, shift: int = 0) -> np.ndarray:
    x = np.linspace(0, 255, width)[None, :]
    y = np.linspace(0, 255, height)[:, None]
    r = np.broadcast_to((x + shift) % 256, (height, width))
    g = np.broadcast_to(y, (height, width))
    b = np.broadcast_to((x + y) / 2, (height, width))
    return np.stack([r, g, b], axis=2).astype(np.uint8)


def decode_all(path) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def test_encoder_writes_the_spec(tmp_path):
    out = tmp_path / "clip.mp4"
    frames = [gradient(256, 144, shift=4 * i) for i in range(30)]
    with ClipEncoder(out, PROFILE) as enc:
        for f in frames:
            enc.write(f)
    assert enc.close() == 30
    assert np.array_equal(enc.last_frame, frames[-1])

    info = probe(out)
    assert info.frames == 30
    assert (info.width, info.height) == (256, 144)
    assert info.fps == Fraction(24)
    assert info.codec == "h264"
    assert info.pix_fmt == "yuv420p"
    assert info.timescale == 24000 == encode_spec(PROFILE)["timescale"]
    assert info.duration_ticks == 30 * 1000  # constant frame rate: 1000 ticks per frame
    assert info.keyframes[0] == 0
    assert not info.has_audio

    decoded = decode_all(out)
    assert len(decoded) == 30
    assert decoded[0].key_frame
    assert PictureType(decoded[0].pict_type) == PictureType.I
    assert all(PictureType(f.pict_type) != PictureType.B for f in decoded)
    assert [f.pts for f in decoded] == [i * 1000 for i in range(30)]
    # the pixels survive the trip (lossy, but close)
    first = decoded[0].to_ndarray(format="rgb24").astype(int)
    assert np.abs(first - frames[0].astype(int)).mean() < 4


def test_faststart_puts_the_index_first(tmp_path):
    out = tmp_path / "clip.mp4"
    with ClipEncoder(out, PROFILE) as enc:
        for i in range(5):
            enc.write(gradient(256, 144, i))
    data = out.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")


def test_frames_of_another_size_are_fitted_by_the_encoder(tmp_path):
    out = tmp_path / "clip.mp4"
    square = np.full((100, 100, 3), 200, dtype=np.uint8)
    with ClipEncoder(out, PROFILE) as enc:
        enc.write(square)
        enc.write(square)
    assert enc.last_frame.shape == (144, 256, 3)
    info = probe(out)
    assert (info.width, info.height, info.frames) == (256, 144, 2)
    rgb = decode_all(out)[0].to_ndarray(format="rgb24").astype(int)
    assert rgb[:, :40].max() < 30  # pillarbox: black bars left and right
    assert rgb[:, -40:].max() < 30
    assert abs(rgb[72, 128].mean() - 200) < 8  # the square in the middle


def test_an_exception_inside_the_block_leaves_no_file(tmp_path):
    out = tmp_path / "clip.mp4"
    with pytest.raises(RuntimeError, match="render failed"), ClipEncoder(out, PROFILE) as enc:
        enc.write(gradient(256, 144))
        raise RuntimeError("render failed")
    assert not out.exists()
    assert os.listdir(tmp_path) == []


def test_closing_without_frames_is_an_error(tmp_path):
    out = tmp_path / "clip.mp4"
    enc = ClipEncoder(out, PROFILE)
    with pytest.raises(EncodeError, match="no frames"):
        enc.close()
    assert os.listdir(tmp_path) == []


@dataclass(frozen=True)
class OddProfile:
    width: int = 255  # yuv420p needs even sizes: ffmpeg refuses this
    height: int = 144
    fps: int = 24


def test_an_ffmpeg_failure_raises_with_its_stderr(tmp_path):
    out = tmp_path / "clip.mp4"
    frame = np.zeros((144, 255, 3), dtype=np.uint8)
    with pytest.raises(EncodeError) as err, ClipEncoder(out, OddProfile()) as enc:
        for _ in range(10):
            enc.write(frame)
        enc.close()
    # reelfarm's own words (which file, that ffmpeg stopped), not ffmpeg's reason.
    assert str(err.value).startswith(f"{out}: ffmpeg "), err.value
    assert os.listdir(tmp_path) == []


def test_encode_spec_is_json_and_names_what_changes_bytes():
    spec = encode_spec(PROFILE)
    assert json.loads(json.dumps(spec)) == spec
    assert spec["codec"] == "h264" and spec["pix_fmt"] == "yuv420p" and spec["bframes"] == 0
    assert spec["timescale"] == 24 * 1000
    assert encode_spec(Profile(width=256, height=144, fps=30)) != spec
    assert encode_spec(Profile(width=512, height=144, fps=24)) != spec


# -- fit_frame ----------------------------------------------------------------------------------


def test_fit_same_size_is_unchanged():
    frame = gradient(64, 48)
    assert np.array_equal(fit_frame(frame, 64, 48), frame)


def test_fit_wide_frame_is_letterboxed():
    wide = np.full((50, 200, 3), 255, dtype=np.uint8)  # 4:1 into 2:1
    out = fit_frame(wide, 128, 64)
    assert out.shape == (64, 128, 3) and out.dtype == np.uint8
    rows = out.max(axis=(1, 2))
    assert rows[:15].max() == 0 and rows[-15:].max() == 0  # black bars top and bottom
    assert (out[17:47] == 255).all()  # 32 rows of picture, centred
    assert (out[:, 0] > 0).any()  # full width


def test_fit_tall_frame_is_pillarboxed():
    tall = np.full((200, 100, 3), 255, dtype=np.uint8)
    out = fit_frame(tall, 128, 64)
    cols = out.max(axis=(0, 2))
    assert cols[:47].max() == 0 and cols[-47:].max() == 0
    assert (out[:, 50:78] == 255).all()


def test_fit_converts_gray_rgba_and_float():
    gray = np.full((8, 8), 90, dtype=np.uint8)
    assert np.array_equal(fit_frame(gray, 8, 8), np.full((8, 8, 3), 90, dtype=np.uint8))

    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0  # a transparent pixel composites to black
    out = fit_frame(rgba, 8, 8)
    assert out.shape == (8, 8, 3)
    assert tuple(out[1, 1]) == (200, 0, 0) and tuple(out[0, 0]) == (0, 0, 0)

    floats = np.full((8, 8, 3), 0.5, dtype=np.float32)
    floats[0, 0] = [2.0, -1.0, 1.0]  # out of range values are clipped
    out = fit_frame(floats, 8, 8)
    assert out.dtype == np.uint8
    assert tuple(out[1, 1]) == (128, 128, 128) and tuple(out[0, 0]) == (255, 0, 255)


def test_fit_refuses_what_is_not_an_image():
    with pytest.raises(ValueError, match="shape"):
        fit_frame(np.zeros((4, 4, 5), dtype=np.uint8), 8, 8)


def test_png_round_trip_is_exact_and_stable():
    frame = gradient(40, 30, 7)
    data = encode_png(frame)
    assert data.startswith(b"\x89PNG")
    assert np.array_equal(decode_png(data), frame)
    assert encode_png(frame.copy()) == data


# -- media ----------------------------------------------------------------------------------------


def test_ffmpeg_exe_honours_the_environment(monkeypatch, tmp_path):
    real = ffmpeg_exe()
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", real)
    assert os.path.samefile(ffmpeg_exe(), real)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-such-ffmpeg"))
    with pytest.raises(FFmpegNotFound, match="IMAGEIO_FFMPEG_EXE"):
        ffmpeg_exe()


def test_probe_refuses_what_is_not_a_clip(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(ProbeError, match="junk.mp4"):
        probe(junk)
    with pytest.raises(ProbeError, match="no such file"):
        probe(tmp_path / "missing.mp4")


def test_same_frames_give_the_same_bytes(tmp_path):
    frames = [gradient(256, 144, shift=9 * i) for i in range(12)]
    outs = []
    for name in ("one.mp4", "two.mp4"):
        with ClipEncoder(tmp_path / name, PROFILE) as enc:
            for f in frames:
                enc.write(f)
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1]
