"""Where a render publishes its outputs: a directory, or an ``s3://`` prefix."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .base import BlobRef, Store, sha256_file
from .output_api import Output, check_output_rel


class LocalOutput(Output):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        self.url = str(self.root)

    def put_json(self, rel: str, doc: Any) -> None:
        dest = self.root / check_output_rel(rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        os.replace(tmp, dest)

    def put_blob(self, rel: str, store: Store, ref: BlobRef) -> None:
        dest = self.root / check_output_rel(rel)
        if dest.exists() and sha256_file(dest)[0] == ref.sha256:
            return  # already published
        dest.parent.mkdir(parents=True, exist_ok=True)
        store.get_file(ref.sha256, dest)


def open_output(url: str, *, s3_endpoint: str | None = None) -> Output:
    if url.startswith("s3://"):
        from .s3_objects import S3Output

        return S3Output(url, endpoint_url=s3_endpoint)
    if url.startswith("file://"):
        url = url[len("file://"):]
    return LocalOutput(url)
