"""HLS (RFC 8216) playlists over the shared fMP4 segments.

One media playlist per branch lists that branch's media segments in playing order, all of them
stored once in ``media/`` and shared by every branch that plays them. A segment whose first
decode time does not continue the previous segment's timeline (a new story segment starts its
shots at decode time 0) is preceded by ``EXT-X-DISCONTINUITY``; shots within one story segment
continue each other's timeline and need none. ``EXT-X-MAP`` names the init segment, repeated
only when it changes. The multivariant playlist offers the branches as alternative video
renditions (``EXT-X-MEDIA:TYPE=VIDEO``) of one variant stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

HLS_VERSION = 6  # EXT-X-MAP in a media playlist that is not I-frames only (RFC 8216, 7)


@dataclass(frozen=True)
class PlaylistSegment:
    uri: str
    init: str
    duration: float  # seconds
    size: int  # bytes
    decode_start: int  # ticks
    decode_end: int  # ticks


def media_playlist(segments: list[PlaylistSegment], *, prefix: str = "") -> str:
    """A VOD media playlist; URIs are written as ``prefix + uri``."""
    if not segments:
        raise ValueError("a playlist needs at least one segment")
    target = max(1, max(round(s.duration) for s in segments))
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{HLS_VERSION}",
        f"#EXT-X-TARGETDURATION:{target}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-DISCONTINUITY-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    prev: PlaylistSegment | None = None
    for s in segments:
        if prev is not None and s.decode_start != prev.decode_end:
            lines.append("#EXT-X-DISCONTINUITY")
        if prev is None or s.init != prev.init:
            lines.append(f'#EXT-X-MAP:URI="{prefix}{s.init}"')
        lines.append(f"#EXTINF:{s.duration:.6f},")
        lines.append(f"{prefix}{s.uri}")
        prev = s
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def peak_bandwidth(segments: list[PlaylistSegment]) -> int:
    """BANDWIDTH (RFC 8216 4.3.4.2): the peak segment bit rate, in bits per second."""
    return max(math.ceil(s.size * 8 / s.duration) for s in segments)


def average_bandwidth(segments: list[PlaylistSegment]) -> int:
    seconds = sum(s.duration for s in segments)
    return math.ceil(sum(s.size for s in segments) * 8 / seconds)


@dataclass(frozen=True)
class Rendition:
    name: str
    uri: str
    segments: list[PlaylistSegment]


def multivariant_playlist(renditions: list[Rendition], *, codecs: str, width: int, height: int,
                          fps: int) -> str:
    """The branches as alternative video renditions of one stream; the first is the default."""
    all_segments = [s for r in renditions for s in r.segments]
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{HLS_VERSION}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for i, r in enumerate(renditions):
        default = "YES" if i == 0 else "NO"
        lines.append(
            f'#EXT-X-MEDIA:TYPE=VIDEO,GROUP-ID="branch",NAME="{r.name}",DEFAULT={default},'
            f'AUTOSELECT={default},URI="{r.uri}"'
        )
    lines.append(
        f"#EXT-X-STREAM-INF:BANDWIDTH={peak_bandwidth(all_segments)},"
        f"AVERAGE-BANDWIDTH={average_bandwidth(all_segments)},"
        f'CODECS="{codecs}",RESOLUTION={width}x{height},FRAME-RATE={fps:.3f},VIDEO="branch"'
    )
    lines.append(renditions[0].uri)
    return "\n".join(lines) + "\n"
