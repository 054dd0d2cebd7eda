"""Assembly: one master per branch, its clips joined with ffmpeg's concat demuxer (stream copy).

Runs as a Ray task next to the store (see :mod:`orchestrator.schedule`); masters are blobs in
the store too, under a key made of their ordered clip digests, so an unchanged branch is never
assembled twice.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from ..spec.manifest import Profile
from ..store import ActionRecord, BlobRef, open_store


def assemble_master(
    store_url: str, s3_endpoint: str | None, key: str, clips: list[BlobRef], profile: Profile,
    encoder: dict[str, str] | None = None,
) -> ActionRecord:
    """Fetch (and verify) the clips, join them without re-encoding, store the master.

    ``encoder`` is the ffmpeg build the master's key names; another build here refuses."""
    from actors.assemble import concat_clips
    from actors.encode import check_encoder

    check_encoder(encoder)  # the muxer's bytes are the build's too
    started = time.perf_counter()
    store = open_store(store_url, s3_endpoint=s3_endpoint)
    with tempfile.TemporaryDirectory(prefix="reelfarm-master-") as tmp:
        paths: list[Path] = []
        fetched: dict[str, Path] = {}
        for i, clip in enumerate(clips):
            if clip.sha256 not in fetched:  # a clip may repeat within a branch
                dest = Path(tmp) / f"{i:05d}.mp4"
                store.get_file(clip.sha256, dest)  # raises CorruptBlob: never assembled
                fetched[clip.sha256] = dest
            paths.append(fetched[clip.sha256])
        out = Path(tmp) / "master.mp4"
        info = concat_clips(paths, out, profile)
        master = store.put_file(out)
    record = ActionRecord(
        key=key,
        kind="master",
        outputs={"master": master},
        frames=info.frames,
        width=profile.width,
        height=profile.height,
        fps=profile.fps,
        backend="concat",
        seconds=round(time.perf_counter() - started, 4),
    )
    store.put_action(record)
    return record
