"""Assembly: one master per branch, its clips joined by stream copy (:mod:`actors.assemble`).

Runs as a Ray task next to the store (started by :mod:`.driver`); masters are blobs in the
store too, under a key made of their ordered clip digests, so an unchanged branch is never
assembled twice (:func:`stored_master` finds it).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from ..plan.keys import master_key
from ..spec.manifest import Profile
from ..store import ActionRecord, BlobRef, CorruptBlob, Store, open_store


def stored_master(store: Store, clips: list[BlobRef], profile: Profile,
                  encoder: dict[str, str] | None = None) -> tuple[str, ActionRecord | None]:
    """The master key of these clips (made by ``encoder``), and its record when the master is
    already in the store (record and blob), so that it need not be assembled again."""
    key = master_key([c.sha256 for c in clips], profile.model_dump(), encoder)
    rec = store.get_action(key)
    if rec is None or "master" not in rec.outputs:
        return key, None
    if not all(store.has_blobs([rec.outputs["master"]]).values()):
        return key, None
    return key, rec


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


class Assembler:
    """Masters on the cluster: each one a Ray task beside the store (every Ray call for
    assembly is here). The driver hands it branches whose clips all exist."""

    def __init__(self, store_url: str, s3_endpoint: str | None, profile: Profile,
                 encoder: dict[str, str] | None = None) -> None:
        self.store_url = store_url
        self.s3_endpoint = s3_endpoint
        self.profile = profile
        self.encoder = encoder
        self.running: dict[Any, Any] = {}  # Ray ref -> branch
        # branch name -> its profile, where branches differ (a plan of several stories)
        self.profiles: dict[str, Profile] = {}

    def start(self, branch: Any, key: str, clips: list[BlobRef]) -> None:
        import ray

        profile = self.profiles.get(branch.name, self.profile)
        ref = ray.remote(assemble_master).options(num_cpus=0, max_retries=1).remote(
            self.store_url, self.s3_endpoint, key, clips, profile, self.encoder
        )
        self.running[ref] = branch

    def refs(self) -> list[Any]:
        return list(self.running)

    def collect(self, ref: Any) -> tuple[Any, ActionRecord | CorruptBlob | BaseException]:
        """The branch a finished assembly was for, and its record, the corrupt blob it found,
        or the error it raised."""
        import ray

        branch = self.running.pop(ref)
        try:
            return branch, ray.get(ref)
        except Exception as err:  # noqa: BLE001 - classified by the caller
            return branch, getattr(err, "cause", None) or err

    def cancel(self) -> None:
        import ray

        for ref in list(self.running):
            ray.cancel(ref, force=True)
