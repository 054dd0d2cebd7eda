"""Just enough ISO BMFF to cut a fragmented MP4 into CMAF pieces: an init segment (``ftyp`` +
``moov``) and media fragments (``moof`` + ``mdat``), to move a fragment's decode time
(``tfdt``) and to read the codec string (RFC 6381) from the ``avcC`` box.

ffmpeg writes the fragments (stream copy); this module only splits its output at box
boundaries and rewrites one integer per fragment, so no sample is ever touched.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

#: Containers whose children this module walks.
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"moof", b"traf", b"mvex"}


class Fmp4Error(ValueError):
    """The bytes are not the fragmented MP4 this module expects."""


@dataclass(frozen=True)
class Box:
    type: bytes
    start: int  # offset of the box header
    header: int  # header length (8, or 16 for a 64-bit size)
    end: int  # offset just past the box

    @property
    def body(self) -> int:
        return self.start + self.header


def boxes(data: bytes | bytearray, start: int = 0, end: int | None = None) -> list[Box]:
    """The boxes laid end to end in ``data[start:end]``."""
    end = len(data) if end is None else end
    out: list[Box] = []
    pos = start
    while pos < end:
        if end - pos < 8:
            raise Fmp4Error(f"truncated box header at byte {pos}")
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if end - pos < 16:
                raise Fmp4Error(f"truncated box header at byte {pos}")
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise Fmp4Error(f"box {kind!r} at byte {pos} runs past its parent")
        out.append(Box(kind, pos, header, pos + size))
        pos += size
    return out


def find(data: bytes | bytearray, path: list[bytes], box: Box | None = None) -> list[Box]:
    """Every box reached by ``path`` (box types, outermost first) under ``box`` (or the top)."""
    level = boxes(data) if box is None else boxes(data, box.body, box.end)
    found = [b for b in level if b.type == path[0]]
    if len(path) == 1:
        return found
    out: list[Box] = []
    for b in found:
        if b.type not in _CONTAINERS:
            raise Fmp4Error(f"box {b.type!r} is not a container")
        out += find(data, path[1:], b)
    return out


@dataclass(frozen=True)
class Fragmented:
    init: bytes  # ftyp + moov
    fragments: list[bytes]  # each: [styp] moof mdat
    timescale: int


def split(data: bytes) -> Fragmented:
    """Cut a fragmented MP4 (``empty_moov``, one track) into its init segment and fragments."""
    top = boxes(data)
    kinds = [b.type for b in top]
    if kinds[:2] != [b"ftyp", b"moov"]:
        raise Fmp4Error(f"expected ftyp and moov first, found {kinds[:2]}")
    moov = top[1]
    if len(find(data, [b"trak"], moov)) != 1:
        raise Fmp4Error("expected exactly one track")
    if not find(data, [b"mvex"], moov):
        raise Fmp4Error("the moov has no mvex: not a fragmented MP4")
    init = data[: moov.end]
    fragments: list[bytes] = []
    pending: int | None = None  # start of the fragment being gathered (a styp, or its moof)
    for b in top[2:]:
        if b.type in (b"styp", b"moof") and pending is None:
            pending = b.start
        elif b.type == b"mdat":
            if pending is None:
                raise Fmp4Error(f"mdat at byte {b.start} has no moof")
            fragments.append(data[pending : b.end])
            pending = None
        elif b.type in (b"mfra", b"sidx", b"free", b"skip", b"prft"):
            continue
    if pending is not None:
        raise Fmp4Error("the last moof has no mdat")
    if not fragments:
        raise Fmp4Error("no media fragments")
    return Fragmented(bytes(init), fragments, timescale(init))


def timescale(init: bytes) -> int:
    """The track's timescale, from ``mdhd``."""
    (mdhd,) = find(init, [b"moov", b"trak", b"mdia", b"mdhd"])
    version = init[mdhd.body]
    off = mdhd.body + 4 + (16 if version == 1 else 8)
    return struct.unpack_from(">I", init, off)[0]


def decode_time(fragment: bytes) -> int:
    """The fragment's ``tfdt`` base media decode time (in track ticks)."""
    (tfdt,) = find(fragment, [b"moof", b"traf", b"tfdt"])
    version = fragment[tfdt.body]
    if version == 1:
        return struct.unpack_from(">Q", fragment, tfdt.body + 4)[0]
    return struct.unpack_from(">I", fragment, tfdt.body + 4)[0]


def shift_decode_time(fragment: bytes, ticks: int) -> bytes:
    """The fragment with its ``tfdt`` moved by ``ticks`` (sizes and offsets are unchanged)."""
    if ticks == 0:
        return fragment
    out = bytearray(fragment)
    (tfdt,) = find(out, [b"moof", b"traf", b"tfdt"])
    version = out[tfdt.body]
    if version == 1:
        (t,) = struct.unpack_from(">Q", out, tfdt.body + 4)
        struct.pack_into(">Q", out, tfdt.body + 4, t + ticks)
    else:
        (t,) = struct.unpack_from(">I", out, tfdt.body + 4)
        if t + ticks >= 1 << 32:
            raise Fmp4Error("decode time does not fit a version-0 tfdt")
        struct.pack_into(">I", out, tfdt.body + 4, t + ticks)
    return bytes(out)


def sample_count(fragment: bytes) -> int:
    """Samples (frames) in the fragment: the sum of its ``trun`` sample counts."""
    return sum(
        struct.unpack_from(">I", fragment, t.body + 4)[0]
        for t in find(fragment, [b"moof", b"traf", b"trun"])
    )


def codec_string(init: bytes) -> str:
    """The RFC 6381 codec string of the track, e.g. ``avc1.64001f``, read from ``avcC``."""
    (stsd,) = find(init, [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"])
    entries = boxes(init, stsd.body + 8, stsd.end)  # full box header + entry count
    if not entries:
        raise Fmp4Error("stsd has no sample entry")
    entry = entries[0]
    fourcc = entry.type.decode("ascii", "replace")
    # a visual sample entry's children start after its 78 fixed bytes
    for child in boxes(init, entry.body + 78, entry.end):
        if child.type == b"avcC":
            p, c, lvl = init[child.body + 1 : child.body + 4]
            return f"{fourcc}.{p:02x}{c:02x}{lvl:02x}"
    raise Fmp4Error(f"sample entry {fourcc} has no avcC box")
