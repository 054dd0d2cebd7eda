"""``reelfarm play``: serve a package directory on the loopback interface.

A plain static file server (the player needs nothing else): the content types of
:data:`~._site.CONTENT_TYPES`, no directory listings, and only files under the package root.
It binds 127.0.0.1 (or ::1) only: a package meant for others goes on a static host or a bucket.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ._site import CONTENT_TYPES


class _Handler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **CONTENT_TYPES}

    def list_directory(self, path):  # noqa: ANN001 - the base class's signature
        self.send_error(404, "No listing")
        return None

    def end_headers(self) -> None:
        path = self.path.split("?", 1)[0]
        if "/media/" in path:  # named by digest: never changes
            self.send_header("Cache-Control", "public, max-age=31536000, immutable")
        else:
            self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        if os.environ.get("REELFARM_PLAY_LOG"):
            super().log_message(format, *args)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(root: str | os.PathLike[str], host: str = "127.0.0.1",
                port: int = 0) -> ThreadingHTTPServer:
    """A server for the package at ``root`` (not started); ``port=0`` picks a free port."""
    if not _loopback(host):
        raise ValueError(f"the player server binds a loopback address only, not {host!r}")
    root = Path(root)
    if not (root / "index.html").is_file() or not (root / "story.json").is_file():
        raise FileNotFoundError(f"{root} holds no package (index.html and story.json); "
                                "run `reelfarm package` first")
    handler = functools.partial(_Handler, directory=str(root))
    server_cls = ThreadingHTTPServer
    if ":" in host:
        import socket

        class _V6(ThreadingHTTPServer):
            address_family = socket.AF_INET6

        server_cls = _V6
    server = server_cls((host, port), handler)
    server.daemon_threads = True
    return server


def serve_package(root: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 0
                  ) -> tuple[ThreadingHTTPServer, str]:
    """Start serving ``root`` in a background thread: ``(server, url of index.html)``."""
    server = make_server(root, host, port)
    threading.Thread(target=server.serve_forever, name="reelfarm-play", daemon=True).start()
    h, p = server.server_address[:2]
    shown = f"[{h}]" if ":" in str(h) else h
    return server, f"http://{shown}:{p}/index.html"
