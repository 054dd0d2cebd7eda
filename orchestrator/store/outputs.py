"""Where a render publishes its outputs: a directory, or an ``s3://`` prefix."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..spec.urls import BadLocation, local_path, redact_url
from .base import BlobRef, Store, StoreError, sha256_file
from .files import check_dir_writable, write_atomic
from .output_api import Output, check_output_rel, json_text


class LocalOutput(Output):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(os.path.abspath(Path(root).expanduser()))
        self.url = str(self.root)

    def put_json(self, rel: str, doc: Any) -> None:
        data = json_text(doc).encode()
        write_atomic(self.root / check_output_rel(rel), lambda f: f.write(data))

    def put_bytes(self, rel: str, data: bytes, content_type: str) -> None:
        write_atomic(self.root / check_output_rel(rel), lambda f: f.write(data))

    def list_files(self, prefix: str) -> list[str]:
        base = self.root / check_output_rel(prefix.rstrip("/"))
        if not base.is_dir():
            return []
        rel = prefix.rstrip("/")
        return sorted(f"{rel}/{p.name}" for p in base.iterdir()
                      if not p.name.startswith(".") and p.is_file())

    def check_writable(self) -> None:
        """The directory exists or can be made, and a file can be created in it."""
        try:
            check_dir_writable(self.root, "--out")
        except ValueError as e:
            raise StoreError(str(e)) from None

    def put_blob(self, rel: str, store: Store, ref: BlobRef) -> None:
        dest = self.root / check_output_rel(rel)
        if dest.exists() and sha256_file(dest)[0] == ref.sha256:
            return  # already published
        dest.parent.mkdir(parents=True, exist_ok=True)
        store.get_file(ref.sha256, dest)


    def get_json(self, rel: str) -> Any | None:
        try:
            return json.loads((self.root / check_output_rel(rel)).read_text())
        except (OSError, ValueError):
            return None

    def holds(self, rel: str, sha256: str) -> bool:
        try:
            dest = self.root / check_output_rel(rel)
            return dest.is_file() and sha256_file(dest)[0] == sha256
        except (OSError, ValueError):
            return False

    def list_masters(self) -> list[str]:
        base = self.root / "masters"
        if not base.is_dir():
            return []
        return sorted(f"masters/{p.name}" for p in base.iterdir()
                      if p.suffix == ".mp4" and not p.name.startswith(".") and p.is_file())

    def remove(self, rel: str) -> None:
        (self.root / check_output_rel(rel)).unlink(missing_ok=True)


def open_output(url: str, *, s3_endpoint: str | None = None) -> Output:
    if url.startswith("s3://"):
        from .s3_objects import S3Output

        return S3Output(url, endpoint_url=s3_endpoint)
    if "://" in url and not url.startswith("file://"):
        raise StoreError(f"unsupported output location {redact_url(url)!r}: "
                         "use a directory, file:// or s3://")
    try:
        return LocalOutput(local_path(url))
    except BadLocation as e:
        raise StoreError(str(e)) from None
