"""The monitor's HTTP server (aiohttp): the pages, a JSON API over the store, and media.

Security (README, "Watching the farm"):

* it binds a loopback address unless a token is set (the command refuses otherwise); without a
  token it answers only requests whose ``Host`` is a loopback name (no DNS rebinding);
* with a token (``REELFARM_UI_TOKEN``), every request must carry it: the ``X-Reelfarm-Token``
  header, ``Authorization: Bearer``, or the cookie set once from ``?token=`` (compared in
  constant time); nothing is served without it;
* a POST (a review, the only write) needs the ``X-Reelfarm-Request`` header, which a page on
  another origin cannot send without the server's consent, and a same-origin ``Origin``;
* every id in a URL is checked against its pattern before it names a document or a blob (400);
* blobs are streamed by this server, verified; the store's URL credentials never exist and its
  S3 credentials stay here.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import signal
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from ..store import BlobMissing, CorruptBlob, Store, StoreError
from . import ids, reviews, runs
from .media import BlobCache

COOKIE = "reelfarm_ui_token"
TOKEN_HEADER = "X-Reelfarm-Token"
CSRF_HEADER = "X-Reelfarm-Request"
MEDIA_TYPES = {"mp4": "video/mp4", "png": "image/png", "jpg": "image/jpeg"}
STATIC = {"app.js": "text/javascript", "style.css": "text/css"}
FINISHED_TTL = 60.0  # seconds a finished run's summary is reused on the runs page
MAX_LOG = 4 << 20  # bytes of a log shown (its end, when longer)
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "media-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "form-action 'none'")

STORE_KEY = web.AppKey("store", Store)
CACHE_KEY = web.AppKey("cache", BlobCache)
CONF_KEY = web.AppKey("conf", dict)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _host_name(request: web.Request) -> str:
    host = request.headers.get("Host", "")
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


@web.middleware
async def _guard(request: web.Request, handler):
    conf = request.app[CONF_KEY]
    token: str | None = conf["token"]
    if token is None:
        if not is_loopback(_host_name(request)):
            return _error(403, "this server answers to its loopback address only")
    else:
        given = request.query.get("token")
        if given is not None:
            if not _same(given, token):
                return _error(401, "wrong token")
            # once: the cookie carries it from now on, and the URL loses it
            query = {k: v for k, v in request.query.items() if k != "token"}
            target = str(request.rel_url.with_query(query))
            resp = web.Response(status=302, headers={"Location": target})
            resp.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
            return resp
        sent = request.headers.get(TOKEN_HEADER) or _bearer(request) or request.cookies.get(
            COOKIE)
        if sent is None or not _same(sent, token):
            return _error(401, "this server needs its token (REELFARM_UI_TOKEN): open "
                          "/?token=... once, or send the X-Reelfarm-Token header")
    if request.method not in ("GET", "HEAD"):
        if request.headers.get(CSRF_HEADER) != "1":
            return _error(403, f"a write needs the {CSRF_HEADER} header")
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            return _error(403, "a write must come from this server's own pages")
    try:
        return await handler(request)
    except ids.BadId as e:
        return _error(400, str(e))
    except reviews.ReviewError as e:
        return _error(400, str(e))
    except BlobMissing:
        return _error(404, "no such blob in the store")
    except CorruptBlob:
        return _error(502, "the blob in the store is corrupt (its bytes do not match its name)")
    except StoreError as e:
        return _error(502, f"the store failed: {e}")


def _bearer(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    return auth[7:] if auth.startswith("Bearer ") else None


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers.setdefault("Cache-Control", "no-store")


def _run_in_thread(fn, *args: Any):
    return asyncio.get_running_loop().run_in_executor(None, fn, *args)


# -- reading the store (in worker threads) ----------------------------------------------------

class _Runs:
    """Run records. The runs page's summary of a finished run is reused for
    :data:`FINISHED_TTL` seconds (a finished record rarely changes, and an S3 store would
    otherwise be read whole every few seconds); a running run's and a run page's record are
    read each time."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._done: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def get(self, story: str, run_id: str) -> dict[str, Any] | None:
        doc = self.store.get_run(story, run_id)
        return doc if isinstance(doc, dict) else None

    def _summary(self, story: str, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            done = self._done.get((story, run_id))
        if done is not None and time.monotonic() - done[0] < FINISHED_TTL:
            return done[1]
        doc = self.get(story, run_id)
        if doc is None:
            return None
        s = runs.summary(doc)
        s["story"], s["run_id"] = story, run_id
        if s["status"] not in ("running", "unknown"):
            with self._lock:
                self._done[(story, run_id)] = (time.monotonic(), s)
        return s

    def all(self) -> list[dict[str, Any]]:
        out = []
        for story in self.store.list_stories():
            try:
                run_ids = self.store.list_runs(story)
            except ValueError:  # a name the store layout would never make
                continue
            for rid in run_ids:
                s = self._summary(story, rid)
                if s is not None:
                    out.append(s)
        out.sort(key=lambda s: (s["started"] or "", s["run_id"]), reverse=True)
        return out

    def latest(self, story: str) -> dict[str, Any] | None:
        for rid in reversed(self.store.list_runs(story)):
            doc = self.get(story, rid)
            if doc is not None:
                return doc
        return None


RUNS_KEY = web.AppKey("runs", _Runs)


# -- handlers ---------------------------------------------------------------------------------

async def index(request: web.Request) -> web.Response:
    return web.Response(body=_static("index.html"), content_type="text/html", charset="utf-8")


async def _no_content(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:
        return _error(404, "no such file")
    return web.Response(body=_static(name), content_type=STATIC[name], charset="utf-8")


async def api_runs(request: web.Request) -> web.Response:
    rows = await _run_in_thread(request.app[RUNS_KEY].all)
    return web.json_response({"store": request.app[STORE_KEY].url, "runs": rows,
                              "user": request.app[CONF_KEY]["user"]})


async def api_run(request: web.Request) -> web.Response:
    story = ids.story_id(request.match_info["story"])
    run_id = ids.run_id(request.match_info["run"])
    store = request.app[STORE_KEY]

    def read() -> dict[str, Any] | None:
        doc = request.app[RUNS_KEY].get(story, run_id)
        if doc is None:
            return None
        out = runs.view(doc)
        out["summary"]["story"], out["summary"]["run_id"] = story, run_id
        out["reviews"] = reviews.summary(reviews.story_reviews(store, story), doc)
        return out

    doc = await _run_in_thread(read)
    if doc is None:
        return _error(404, f"no run {run_id} of {story}")
    return web.json_response(doc)


async def api_reviews(request: web.Request) -> web.Response:
    story = ids.story_id(request.match_info["story"])
    store = request.app[STORE_KEY]

    def read() -> dict[str, Any]:
        return reviews.summary(reviews.story_reviews(store, story),
                               request.app[RUNS_KEY].latest(story))

    return web.json_response({"story": story, "reviews": await _run_in_thread(read)})


async def post_review(request: web.Request) -> web.Response:
    story = ids.story_id(request.match_info["story"])
    run_id = ids.run_id(request.match_info["run"])
    shot = ids.shot_id(request.match_info["shot"])
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return _error(400, "the body is not JSON")
    if not isinstance(body, dict):
        return _error(400, "the body is not a JSON object")
    verdict, note = body.get("verdict"), body.get("note", "")
    who = body.get("who") or request.app[CONF_KEY]["user"]
    if not isinstance(verdict, str) or not isinstance(note, str):
        return _error(400, "verdict and note are strings")
    store = request.app[STORE_KEY]
    review = await _run_in_thread(reviews.add_review, store, story, run_id, shot, verdict, note,
                                  who)
    return web.json_response(review.model_dump(), status=201)


async def log(request: web.Request) -> web.Response:
    digest = ids.digest(request.match_info["digest"])

    def read() -> tuple[bytes, int]:
        path = request.app[CACHE_KEY].path(digest)  # verified
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - MAX_LOG))
            return f.read(), size

    data, size = await _run_in_thread(read)
    text = data.decode("utf-8", errors="replace")
    if size > len(data):
        text = f"[the first {size - len(data)} bytes are not shown]\n" + text
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


async def media(request: web.Request) -> web.StreamResponse:
    digest = ids.digest(request.match_info["digest"])
    ext = request.match_info["ext"]
    if ext not in MEDIA_TYPES:
        return _error(404, "no such media type")
    path: Path = await _run_in_thread(request.app[CACHE_KEY].path, digest)
    resp = web.FileResponse(path, headers={
        "Content-Type": MEDIA_TYPES[ext],
        "Cache-Control": "private, max-age=31536000, immutable",  # named by its digest
    })
    return resp


def make_app(store: Store, *, token: str | None = None, user: str = "unknown"
             ) -> web.Application:
    """The monitor over ``store``. ``token`` set: every request must carry it."""
    app = web.Application(middlewares=[_guard], client_max_size=64 * 1024)
    app[STORE_KEY] = store
    app[CACHE_KEY] = BlobCache(store)
    app[RUNS_KEY] = _Runs(store)
    app[CONF_KEY] = {"token": token or None, "user": user}
    app.on_response_prepare.append(_headers)

    async def close(app: web.Application) -> None:
        app[CACHE_KEY].close()

    app.on_cleanup.append(close)
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/favicon.ico", _no_content)
    app.router.add_get("/api/runs", api_runs)
    app.router.add_get("/api/runs/{story}/{run}", api_run)
    app.router.add_get("/api/reviews/{story}", api_reviews)
    app.router.add_post("/api/reviews/{story}/{run}/{shot}", post_review)
    app.router.add_get("/api/log/{digest}", log)
    app.router.add_get(r"/media/{digest}.{ext}", media)
    return app


def serve(app: web.Application, host: str, port: int, started) -> None:
    """Serve ``app`` until SIGINT or SIGTERM; ``started(url)`` is called once it listens. The
    server closes cleanly either way (its private media cache is removed)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            h, p = runner.addresses[0][:2]
            shown = f"[{h}]" if ":" in str(h) else h
            started(f"http://{shown}:{p}/")
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())
