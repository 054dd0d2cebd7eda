"""A blob the store keeps handing back corrupt (a failing disk, a broken proxy) ends the render:
its tasks fail after ``MAX_CORRUPT_READS`` re-renders instead of rendering again forever.

Re-rendering repairs an ordinary corrupt blob (both stores replace an existing blob whose bytes
do not hash to its digest), so the corruption here is on the way back, not in the store: the
render talks to the S3 server (moto over HTTP) through a proxy on 127.0.0.1 that flips bytes in
every GET of one object, however often it is written again.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cachetools import by_id, fork_story, render, run_cli, save

from orchestrator.run.driver import MAX_CORRUPT_READS

pytestmark = pytest.mark.s3

# Headers a proxy must not copy (hop-by-hop, or recomputed for the body it sends).
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection",
       "te", "trailer", "upgrade"}


class RotProxy:
    """An HTTP proxy in front of ``upstream``; the body of every GET whose path ends in one of
    ``self.rot`` comes back with bits flipped (same length, so a size check cannot see it)."""

    def __init__(self, upstream: str) -> None:
        self.rot: set[str] = set()
        self.rotted: list[str] = []  # the objects it flipped bytes in, one entry per GET
        up = urlsplit(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                    if body is not None:
                        headers["Content-Length"] = str(len(body))
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    out = list(resp.getheaders())
                finally:
                    conn.close()
                name = urlsplit(self.path).path.rsplit("/", 1)[-1]
                if self.command == "GET" and resp.status == 200 and name in proxy.rot:
                    mid = len(data) // 2
                    flipped = bytes(b ^ 0xFF for b in data[mid:mid + 16])
                    data = data[:mid] + flipped + data[mid + 16:]
                    # No stored checksum to compare with: the reader's own hash must see it.
                    out = [(k, v) for k, v in out if not k.lower().startswith("x-amz-checksum")]
                    proxy.rotted.append(name)
                self.send_response(resp.status)
                for k, v in out:
                    if k.lower() not in HOP and k.lower() not in ("server", "date"):
                        self.send_header(k, v)
                size = resp.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", size or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def rot_proxy(s3_endpoint: str) -> Iterator[RotProxy]:
    proxy = RotProxy(s3_endpoint)
    yield proxy
    proxy.close()


@pytest.mark.timeout(600)  # without the bound the render never ends: this is how it fails
def test_a_blob_that_keeps_reading_corrupt_fails_its_task(ray_cluster, s3_url: str,
                                                          rot_proxy: RotProxy,
                                                          tmp_path: Path) -> None:
    story = save(tmp_path, fork_story("stuck"))
    # A clean first render through the proxy: every task is cached afterwards.
    first = render(story, s3_url, tmp_path / "out1", "--s3-endpoint", rot_proxy.url)
    assert first["status"] == "succeeded"
    hall = by_id(first)["hall"]
    plan = json.loads(run_cli("plan", story, "--store", s3_url, "--json")[1])
    assert plan["tasks"]["to_render"] == 0
    # "stairs" continues "hall": rendering it again reads hall's last frame from the store.
    last = _last_frame(s3_url, hall["key"])
    rot_proxy.rot.add(last)

    code, _, stderr = run_cli("render", story, "--store", s3_url, "--s3-endpoint",
                              rot_proxy.url, "--out", str(tmp_path / "out2"), "--quiet",
                              "--force", "stairs")
    assert code == 1, stderr
    assert "Traceback" not in stderr
    report = json.loads((tmp_path / "out2" / "report.json").read_text())
    assert report["status"] == "failed"
    # Each read by "stairs" found it corrupt, and hall was rendered again each time but the
    # last: MAX_CORRUPT_READS re-renders, then the task that owns the blob fails.
    assert [c["sha256"] for c in report["corrupt"]] == [last] * (MAX_CORRUPT_READS + 1)
    assert {c["found_by"] for c in report["corrupt"]} == {"stairs"}
    tasks = by_id(report)
    assert tasks["hall"]["status"] == "failed"
    why = tasks["hall"]["error"]
    assert f"blob {last[:12]} read corrupt {MAX_CORRUPT_READS + 1} times" in why
    assert "reelfarm cache verify" in why
    assert tasks["stairs"]["status"] == "blocked", tasks["stairs"]
    # The rest of the story was not touched: its tasks stay cached.
    assert {t for t, v in tasks.items() if v["status"] == "cached"} == {"lamp", "door", "yard"}
    assert {b["name"]: b["status"] for b in report["branches"]} == {"a": "failed", "b": "failed"}
    # Every read of the blob went through the broken proxy: the renders of hall re-wrote it
    # (after proving the stored copy bad) and stairs read it back corrupt each time.
    assert rot_proxy.rotted.count(last) >= MAX_CORRUPT_READS + 1


def _last_frame(store: str, key: str) -> str:
    from orchestrator.store import open_store

    rec = open_store(store).get_actions([key])[key]
    assert rec is not None
    return rec.outputs["last_frame"].sha256
