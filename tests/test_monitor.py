"""``reelfarm ui`` in real headless Chromium (Playwright), over a store filled by a real render
(the lighthouse story), served by the real command on a free loopback port; and
``reelfarm reviews``.

Screenshots go to the artifacts directory (``REELFARM_TEST_ARTIFACTS``, else a temporary one;
the path is printed)."""

from __future__ import annotations

import copy
import http.client
import json
import os
import select
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
import yaml
from fixtures_delivery import LIGHTHOUSE, run_cli

from orchestrator.store import open_store

REELFARM = [sys.executable, "-m", "orchestrator.cli"]
TOKEN = "t0ken-for-the-monitor-tests-0123456789"
WAIT_MS = 30_000


def start_ui(store: Path | str, *, token: str | None = None, tmpdir: Path | None = None
             ) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if k != "REELFARM_UI_TOKEN"}
    if token:
        env["REELFARM_UI_TOKEN"] = token
    if tmpdir:
        env["TMPDIR"] = str(tmpdir)
    proc = subprocess.Popen([*REELFARM, "ui", "--store", str(store), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    ready, _, _ = select.select([proc.stdout], [], [], 120)
    if not ready:
        proc.kill()
        pytest.fail("reelfarm ui printed no URL within 120 s")
    url = proc.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), (url, proc.stderr.read() if proc.poll() else "")
    return proc, url


def stop(proc: subprocess.Popen) -> int:
    proc.terminate()
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def request(url: str, path: str, *, method: str = "GET", headers: dict | None = None,
            body: bytes | None = None) -> tuple[int, dict, bytes]:
    """One raw HTTP request (the path is sent exactly as given: no client-side clean-up)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def site(lighthouse, tmp_path_factory):
    """A copy of the lighthouse store (reviews are written to it), and its run."""
    store = tmp_path_factory.mktemp("monitor") / "store"
    shutil.copytree(lighthouse["store"], store)
    st = open_store(str(store), create=False)
    rid = min(st.list_runs("lighthouse"))  # the render; later runs of the story are no-ops
    return {"store": store, "run_id": rid, "run": st.get_run("lighthouse", rid)}


@pytest.fixture(scope="module")
def ui(site):
    proc, url = start_ui(site["store"])
    yield url
    stop(proc)


@pytest.fixture
def page(browser, artifacts):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.errors = errors
    yield pg
    ctx.close()
    assert not errors, errors


def snap(page, artifacts: Path, name: str, *, full: bool = False) -> None:
    path = artifacts / f"monitor-{name}.png"
    page.screenshot(path=str(path), full_page=full)
    print(f"\nscreenshot: {path}")


def run_url(url: str, story: str, run_id: str) -> str:
    return f"{url}#/run/{story}/{run_id}"


def open_run(page, url: str, story: str, run_id: str) -> None:
    page.goto(run_url(url, story, run_id))
    page.wait_for_selector("#graph .shot", timeout=WAIT_MS)


def shot_status(run: dict) -> dict[str, str]:
    """The status each shot should show: its worst task's."""
    rank = ["failed", "blocked", "running", "ready", "pending", "rendered", "cached"]
    out: dict[str, str] = {}
    for t in run["tasks"]:
        s = out.get(t["shot"])
        out[t["shot"]] = t["status"] if s is None or rank.index(t["status"]) < rank.index(s) else s
    return out


def put_run_copy(store: Path, run: dict, run_id: str, edit) -> dict:
    """Write a run record to the store through its API: ``run`` changed by ``edit``. The ids
    used sort before the real runs', so that the latest run of the story stays a real one."""
    doc = copy.deepcopy(run)
    doc["run_id"] = run_id
    edit(doc)
    open_store(str(store), create=False).put_run(doc["story"], run_id, doc)
    return doc


# -- pages ---------------------------------------------------------------------------------------


def wait_for_sheets(page) -> None:
    """Every contact-sheet image loaded. They load lazily, as a person scrolls to them: each
    one not yet loaded is scrolled into view while waiting."""
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.sheet img')).every(i => "
        "(i.complete && i.naturalWidth > 0) || (i.scrollIntoView(), false))", timeout=WAIT_MS)

def test_runs_page_lists_the_run_and_updates_without_a_reload(ui, site, page, artifacts):
    page.goto(ui)
    row = page.wait_for_selector(f"#runs tr[data-run='lighthouse/{site['run_id']}']",
                                 timeout=WAIT_MS)
    assert row.get_attribute("data-status") == "succeeded"
    cells = [c.inner_text() for c in row.query_selector_all("td")]
    assert cells[0] == "lighthouse" and cells[1] == site["run_id"]
    assert cells[8] == str(len(site["run"]["tasks"]))  # shots
    assert cells[9] == str(site["run"]["totals"]["rendered"])
    snap(page, artifacts, "runs")
    # a run that starts while the page is open appears on it, without a reload
    live = "19700101T000000Z-live01"
    put_run_copy(site["store"], site["run"], live,
                 lambda d: d.update(status="running", user="mara", priority=5))
    row = page.wait_for_selector(f"#runs tr[data-run='lighthouse/{live}']", timeout=WAIT_MS)
    assert row.get_attribute("data-status") == "running"
    assert "mara" in row.inner_text()


def test_run_page_shows_every_segment_and_shot_with_its_status(ui, site, page, artifacts):
    manifest = yaml.safe_load(LIGHTHOUSE.read_text())
    open_run(page, ui, "lighthouse", site["run_id"])
    segments = page.eval_on_selector_all("#graph .segment", "ns => ns.map(n => n.dataset.segment)")
    assert sorted(segments) == sorted(s["id"] for s in manifest["spec"]["segments"])
    shown = dict(page.eval_on_selector_all(
        "#graph .shot", "ns => ns.map(n => [n.dataset.shot, n.dataset.status])"))
    assert shown == shot_status(site["run"])
    assert set(shown.values()) == {"rendered"}
    # every shot sits in its own segment's box, with its thumbnail
    for seg in manifest["spec"]["segments"]:
        ids = page.eval_on_selector_all(
            f"#graph .segment[data-segment='{seg['id']}'] .shot",
            "ns => ns.map(n => n.dataset.shot)")
        assert ids == [s["id"] for s in seg["shots"]]
    assert page.locator("#graph .shot image").count() == len(shown)
    # every choice is an edge labelled with its option
    labels = sorted(page.eval_on_selector_all(
        "#graph .edge-label", "ns => ns.map(n => [n.dataset.from, n.dataset.to, n.textContent])"))
    want = sorted([s["id"], o["next"], o["label"]] for s in manifest["spec"]["segments"]
                  if s.get("choice") for o in s["choice"]["options"])
    assert labels == want
    assert page.locator("#graph path.edge").count() == len(want) + sum(
        1 for s in manifest["spec"]["segments"] if s.get("next"))
    # each thumbnail loaded (served by the server, from the store)
    wait_for_sheets(page)
    snap(page, artifacts, "run", full=True)


def test_a_running_run_updates_on_its_page_without_a_reload(ui, site, page, artifacts):
    """The renderer rewrites the run record as shots finish: the page follows."""
    rid = "19700101T000003Z-live02"

    def running(d):
        d["status"] = "running"
        d["running"] = [{"task": "sunrise", "shot": "sunrise", "node": "gpu-7",
                         "since": "2026-01-01T00:00:00Z"}]
        for t in d["tasks"]:
            if t["shot"] in ("sunrise", "wreck"):
                t["status"], t["clip"] = "pending", None

    put_run_copy(site["store"], site["run"], rid, running)
    open_run(page, ui, "lighthouse", rid)
    assert page.get_attribute("#graph .shot[data-shot=sunrise]", "data-status") == "running"
    assert page.get_attribute("#graph .shot[data-shot=wreck]", "data-status") == "pending"
    page.click("#graph .shot[data-shot='sunrise']")
    assert page.inner_text("#panel .task[data-task=sunrise] .node") == "gpu-7"
    page.fill("#panel textarea[name=note]", "half-typed")
    snap(page, artifacts, "running")
    finished = copy.deepcopy(site["run"])
    finished["run_id"] = rid
    open_store(str(site["store"]), create=False).put_run("lighthouse", rid, finished)
    page.wait_for_selector("#graph .shot[data-shot=sunrise][data-status=rendered]",
                           timeout=WAIT_MS)
    page.wait_for_selector("#graph .shot[data-shot=wreck][data-status=rendered]",
                           timeout=WAIT_MS)
    page.wait_for_selector("#run-summary .st-succeeded", timeout=WAIT_MS)
    # the open panel follows too, and keeps what was being typed
    page.wait_for_selector("#panel .task[data-task=sunrise] video.clip", timeout=WAIT_MS)
    assert page.input_value("#panel textarea[name=note]") == "half-typed"


def test_clicking_a_shot_shows_its_key_why_node_and_log_state(ui, site, page, artifacts):
    task = next(t for t in site["run"]["tasks"] if t["shot"] == "keeper-face")
    open_run(page, ui, "lighthouse", site["run_id"])
    page.click("#graph .shot[data-shot='keeper-face']")
    panel = page.wait_for_selector("#panel .task[data-task='keeper-face']", timeout=WAIT_MS)
    assert panel.query_selector(".key").inner_text() == task["key"]
    assert panel.query_selector(".why").inner_text() == task["reason"]
    assert panel.query_selector(".node").inner_text() == task["node"]
    assert panel.query_selector(".retries").inner_text() == str(task["retries"])
    assert panel.query_selector(".seconds").inner_text() == f"{task['seconds']:.2f}"
    if task.get("log"):
        log = open_store(str(site["store"])).get_bytes(task["log"]).decode()
        page.wait_for_function(
            "(t) => document.querySelector('#panel pre.log').textContent === t", arg=log,
            timeout=WAIT_MS)
    else:
        assert panel.query_selector(".no-log").inner_text() == "no log recorded"
    # the clip plays from the server
    clip = panel.query_selector("video.clip")
    assert clip.get_attribute("src") == f"/media/{task['clip']}.mp4"
    snap(page, artifacts, "shot-panel")


def test_a_recorded_log_and_reason_are_shown_as_text(ui, site, page, artifacts):
    """A run record whose task names a log blob in the store (the shot's log, as the renderer
    records it), a reason and a choice label with markup in them: all shown, as text."""
    st = open_store(str(site["store"]), create=False)
    log = ("loading previz\nrendered 12 frames\n<script>window.pwned = 1</script>\n"
           "<img src=x onerror=\"window.pwned = 2\">\n")
    ref = st.put_bytes(log.encode())
    reason = 'prompt: "<b>red</b> coat" → "green coat"'

    label = "<img src=x onerror=\"window.pwned = 3\">Light it"

    def edit(d):
        for t in d["tasks"]:
            if t["shot"] == "wreck":
                t["log"], t["reason"] = ref.sha256, reason
        lamp = next(s for s in d["graph"]["segments"] if s["id"] == "lamp")
        lamp["choice"]["options"][0]["label"] = label  # free text from a manifest

    rid = "19700101T000001Z-log001"
    put_run_copy(site["store"], site["run"], rid, edit)
    open_run(page, ui, "lighthouse", rid)
    page.click("#graph .shot[data-shot='wreck']")
    page.wait_for_function(
        "(t) => { const p = document.querySelector('#panel pre.log'); "
        "return p && p.textContent === t; }", arg=log, timeout=WAIT_MS)
    whys = page.eval_on_selector_all("#panel .task .why", "ns => ns.map(n => n.textContent)")
    assert whys == [reason] * sum(t["shot"] == "wreck" for t in site["run"]["tasks"])
    assert page.evaluate("window.pwned") is None
    assert page.locator("#panel script, #panel img, #panel b, #graph img").count() == 0
    assert label in page.eval_on_selector_all("#graph .edge-label",
                                              "ns => ns.map(n => n.textContent)")
    snap(page, artifacts, "shot-log")


def test_a_masters_video_plays(ui, site, page, artifacts):
    branch = next(b for b in site["run"]["branches"] if b["master"])
    open_run(page, ui, "lighthouse", site["run_id"])
    sel = f"video.master[data-branch='{branch['name']}']"
    page.wait_for_selector(sel, timeout=WAIT_MS)
    page.eval_on_selector(sel, "v => { v.muted = true; return v.play(); }")
    page.wait_for_function(f"() => document.querySelector(\"{sel}\").currentTime > 0.5",
                           timeout=60_000)
    # its contact sheet: the branch's shots, in playing order
    sheet = page.eval_on_selector_all(f".sheet[data-branch='{branch['name']}'] figcaption",
                                      "ns => ns.map(n => n.textContent)")
    by_id = {t["id"]: t["shot"] for t in site["run"]["tasks"]}
    assert sheet == [by_id[t] for t in branch["tasks"]]
    page.locator(f"section.branch[data-branch='{branch['name']}']").scroll_into_view_if_needed()
    snap(page, artifacts, "master")


def test_media_is_served_in_ranges(ui, site):
    master = next(b["master"] for b in site["run"]["branches"] if b["master"])
    whole = open_store(str(site["store"])).get_bytes(master)
    code, headers, body = request(ui, f"/media/{master}.mp4", headers={"Range": "bytes=100-199"})
    assert code == 206 and body == whole[100:200]
    assert headers["content-type"] == "video/mp4"
    assert headers["content-range"] == f"bytes 100-199/{len(whole)}"


# -- reviews -------------------------------------------------------------------------------------

def review_json(store: Path) -> dict:
    code, out, err = run_cli("reviews", "lighthouse", "--store", str(store), "--json")
    assert code == 0, err
    return {r["shot"]: r for r in json.loads(out)["reviews"]}


def test_an_approval_survives_a_reload_and_is_listed_by_reviews(ui, site, page, artifacts):
    task = next(t for t in site["run"]["tasks"] if t["shot"] == "oars")
    open_run(page, ui, "lighthouse", site["run_id"])
    page.click("#graph .shot[data-shot='oars']")
    page.fill("#panel input[name=who]", "mara")
    page.fill("#panel textarea[name=note]", "the swell reads well")
    page.click("#panel button.approve")
    page.wait_for_selector("#graph .shot[data-shot='oars'] [data-review=approved]",
                           timeout=WAIT_MS)
    page.reload()
    page.wait_for_selector("#graph .shot[data-shot='oars'] [data-review=approved]",
                           timeout=WAIT_MS)
    page.click("#graph .shot[data-shot='oars']")
    last = page.wait_for_selector("#panel .last-review", timeout=WAIT_MS).inner_text()
    assert "Approved" in last and "mara" in last and task["key"][:12] in last
    snap(page, artifacts, "approved")

    r = review_json(site["store"])["oars"]
    assert (r["verdict"], r["who"], r["key"], r["note"], r["current"]) == (
        "approved", "mara", task["key"], "the swell reads well", True)
    code, out, _ = run_cli("reviews", "lighthouse", "--store", str(site["store"]))
    assert code == 0
    (line,) = [ln for ln in out.splitlines() if ln.startswith("oars ")]
    assert "approved" in line and "mara" in line and "current take" in line


def test_needs_changes_needs_a_note(ui, site, page):
    open_run(page, ui, "lighthouse", site["run_id"])
    page.click("#graph .shot[data-shot='sunrise']")
    page.click("#panel button.changes")
    msg = page.wait_for_selector("#panel .review-msg.error", timeout=WAIT_MS).inner_text()
    assert "note" in msg
    page.fill("#panel textarea[name=note]", "warmer light")
    page.click("#panel button.changes")
    page.wait_for_selector("#graph .shot[data-shot='sunrise'] [data-review=changes]",
                           timeout=WAIT_MS)
    r = review_json(site["store"])["sunrise"]
    assert (r["verdict"], r["note"]) == ("changes", "warmer light")


def test_a_review_of_an_older_take_says_so(ui, site, page, artifacts, tmp_path):
    """Approve a shot, render it again with another prompt (a new key): the approval is for an
    older take, on the page and in ``reelfarm reviews``."""
    st = open_store(str(site["store"]), create=False)
    before = set(st.list_runs("lighthouse"))
    open_run(page, ui, "lighthouse", site["run_id"])
    page.click("#graph .shot[data-shot='dock-wide']")
    page.click("#panel button.approve")
    page.wait_for_selector("#graph .shot[data-shot='dock-wide'] [data-review=approved]",
                           timeout=WAIT_MS)
    edited = tmp_path / "lighthouse.yaml"
    edited.write_text(LIGHTHOUSE.read_text().replace(
        "Dusk. A stone lighthouse on a rock", "Dawn. A stone lighthouse on a rock"))
    code, _, err = run_cli("render", str(edited), "--store", str(site["store"]), "--out",
                           str(tmp_path / "out"), "--plain")
    assert code == 0, err
    (new_id,) = set(st.list_runs("lighthouse")) - before
    new_key = next(t["key"] for t in st.get_run("lighthouse", new_id)["tasks"]
                   if t["id"] == "dock-wide")
    r = review_json(site["store"])["dock-wide"]
    assert r["current"] is False and r["key"] != new_key
    open_run(page, ui, "lighthouse", new_id)
    page.wait_for_selector("#graph .shot[data-shot='dock-wide'] [data-review=stale]",
                           timeout=WAIT_MS)
    page.click("#graph .shot[data-shot='dock-wide']")
    assert "older take" in page.inner_text("#panel .review .stale")
    snap(page, artifacts, "older-take")


# -- security ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/api/runs/..%2F..%2F..%2Fetc/passwd",
    "/api/runs/lighthouse/..%2Fconfig",
    "/api/runs/lighthouse/..",
    "/api/reviews/..%2Fac",
    "/api/log/..%2F..%2Fconfig.json",
    "/media/..%2F..%2Fconfig.json.mp4",
    "/media/" + "a" * 63 + "%2F.mp4",
    "/static/..%2F__init__.py",
])
def test_a_traversal_id_is_refused(ui, path):
    code, _, body = request(ui, path)
    assert 400 <= code < 500, (code, body)
    assert b"salt" not in body and b"root:" not in body


def test_a_review_post_from_another_origin_or_without_the_header_is_refused(ui, site):
    path = f"/api/reviews/lighthouse/{site['run_id']}/wreck"
    body = json.dumps({"verdict": "approved", "who": "eve"}).encode()
    code, _, _ = request(ui, path, method="POST", body=body,
                         headers={"Content-Type": "application/json"})
    assert code == 403
    code, _, _ = request(ui, path, method="POST", body=body, headers={
        "Content-Type": "application/json", "X-Reelfarm-Request": "1",
        "Origin": "http://evil.example"})
    assert code == 403
    code, _, _ = request(ui, path, method="POST", body=body, headers={
        "Content-Type": "application/json", "X-Reelfarm-Request": "1", "Host": "evil.example"})
    assert code == 403  # DNS rebinding: a loopback server answers loopback names only
    assert "wreck" not in review_json(site["store"])


def test_with_a_token_nothing_is_served_without_it(site, browser, artifacts):
    proc, url = start_ui(site["store"], token=TOKEN)
    try:
        master = next(b["master"] for b in site["run"]["branches"] if b["master"])
        for path in ["/", "/static/app.js", "/api/runs", f"/media/{master}.mp4",
                     "/api/reviews/lighthouse"]:
            assert request(url, path)[0] == 401, path
            assert request(url, path, headers={"X-Reelfarm-Token": TOKEN + "x"})[0] == 401
            assert request(url, path + ("&" if "?" in path else "?") + "token=wrong")[0] == 401
            assert request(url, path, headers={"X-Reelfarm-Token": TOKEN})[0] == 200, path
        assert request(url, "/api/runs",
                       headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
        # the browser: ?token= once, then a cookie; the address bar loses the token
        ctx = browser.new_context()
        page = ctx.new_page()
        page.goto(f"{url}?token={TOKEN}")
        page.wait_for_selector(f"#runs tr[data-run='lighthouse/{site['run_id']}']",
                               timeout=WAIT_MS)
        assert "token" not in page.url
        cookie = next(c for c in ctx.cookies() if c["name"] == "reelfarm_ui_token")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        ctx.close()
    finally:
        stop(proc)


def test_a_non_loopback_host_without_a_token_refuses_to_start(site, monkeypatch):
    monkeypatch.delenv("REELFARM_UI_TOKEN", raising=False)
    code, out, err = run_cli("ui", "--store", str(site["store"]), "--host", "0.0.0.0")
    assert code == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert "REELFARM_UI_TOKEN" in line and "0.0.0.0" in line
    monkeypatch.setenv("REELFARM_UI_TOKEN", "short")
    code, _, err = run_cli("ui", "--store", str(site["store"]), "--host", "0.0.0.0")
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_reviews_refuses_a_bad_story_name_and_a_missing_store(site, tmp_path):
    code, _, err = run_cli("reviews", "../etc", "--store", str(site["store"]))
    assert code == 2 and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("reviews", "lighthouse", "--store", str(tmp_path / "nowhere"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "nowhere").exists()


def test_a_200_segment_story_stays_readable(ui, site, page, artifacts):
    """A planned run of a 200-segment story (its record written through the store API, as a
    render writes it before any shot finishes): every box drawn at full size, none overlapping,
    every choice labelled."""
    from test_monitor_layout import branching_story

    graph = branching_story(200)
    tasks = [{"id": shot, "shot": shot, "segment": s["id"], "key": f"{i:064x}",
              "status": "pending", "cached": False, "reason": "never rendered", "seconds": 0.0,
              "load_seconds": 0.0, "retries": 0, "node": None, "error": None, "clip": None}
             for i, (s, shot) in enumerate((s, x) for s in graph["segments"] for x in s["shots"])]
    rid = "19700101T000002Z-big200"
    put_run_copy(site["store"], site["run"], rid, lambda d: d.update(
        story="lighthouse", status="running", graph=graph, tasks=tasks, branches=[],
        records={}))
    open_run(page, ui, "lighthouse", rid)
    boxes = page.eval_on_selector_all(
        "#graph .seg-box", "ns => ns.map(n => { const b = n.getBoundingClientRect(); "
        "return [b.left, b.top, b.right, b.bottom]; })")
    assert len(boxes) == 200
    assert page.locator("#graph .shot[data-status=pending]").count() == len(tasks)
    rows: dict[float, list] = {}
    for b in boxes:
        rows.setdefault(round(b[1]), []).append(b)
    for row in rows.values():
        row.sort()
        for a, b in zip(row, row[1:], strict=False):
            assert a[2] < b[0], (a, b)
    # text is drawn at its own size (the page scrolls; nothing is scaled down to fit)
    size = page.eval_on_selector("#graph .seg-title",
                                 "n => parseFloat(getComputedStyle(n).fontSize)")
    assert size >= 12
    assert page.locator("#graph .edge-label").count() == sum(
        len(s["choice"]["options"]) for s in graph["segments"] if s["choice"])
    snap(page, artifacts, "run-200")


def test_an_s3_store_is_served_without_its_credentials(site, s3_url, s3_client, browser,
                                                       artifacts, tmp_path):
    """The same run in an S3 store (moto over HTTP): pages and media come through the server,
    verified; nothing the browser receives names the endpoint or a credential, and a corrupt
    blob is refused, never served."""
    local = open_store(str(site["store"]), create=False)
    s3 = open_store(s3_url)
    run = site["run"]
    wanted = {b["master"] for b in run["branches"] if b["master"]} | {
        t["clip"] for t in run["tasks"] if t["clip"]}
    for rec in run["records"].values():
        wanted |= {o["sha256"] for o in rec["outputs"].values()}
    for digest in wanted:
        assert s3.put_bytes(local.get_bytes(digest)).sha256 == digest
    s3.put_run("lighthouse", site["run_id"], run)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc, url = start_ui(s3_url, tmpdir=tmp)
    try:
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        page = ctx.new_page()
        seen: list[bytes] = []
        page.on("response", lambda r: seen.append(r.body()) if r.status == 200 and not
                r.request.headers.get("range") and r.request.resource_type != "media" else None)
        open_run(page, url, "lighthouse", site["run_id"])
        wait_for_sheets(page)
        sel = "video.master"
        page.eval_on_selector(sel, "v => { v.muted = true; return v.play(); }")
        page.wait_for_function(f"() => document.querySelector('{sel}').currentTime > 0.5",
                               timeout=60_000)
        snap(page, artifacts, "run-s3")
        ctx.close()
        secrets = [os.environ["AWS_SECRET_ACCESS_KEY"], os.environ["AWS_ACCESS_KEY_ID"],
                   os.environ["AWS_ENDPOINT_URL"]]
        assert seen and not any(s.encode() in body for body in seen for s in secrets)

        master = next(b["master"] for b in run["branches"] if b["master"])
        whole = local.get_bytes(master)
        code, _, body = request(url, f"/media/{master}.mp4", headers={"Range": "bytes=0-99"})
        assert code == 206 and body == whole[:100]
        # a clip whose object no longer matches its name: refused, not served
        clip = next(t["clip"] for t in run["tasks"] if t["clip"])
        bucket, prefix = s3_url[len("s3://"):].split("/", 1)
        s3_client.put_object(Bucket=bucket, Key=f"{prefix}/cas/sha256/{clip[:2]}/{clip}",
                             Body=b"not the clip")
        code, _, body = request(url, f"/media/{clip}.mp4")
        assert code == 502 and b"corrupt" in body
        assert list(tmp.iterdir())  # the verified copies the server streamed from
    finally:
        code = stop(proc)
        s3.close()
    assert code == 0 and list(tmp.iterdir()) == []  # SIGTERM: closed, its copies removed


def test_ui_refuses_a_missing_store_and_a_taken_port(site, tmp_path, monkeypatch):
    import socket

    monkeypatch.delenv("REELFARM_UI_TOKEN", raising=False)
    code, out, err = run_cli("ui", "--store", str(tmp_path / "nowhere"))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "nowhere").exists()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        # a process of its own: this one's thread runs the browser driver's event loop
        env = {k: v for k, v in os.environ.items() if k != "REELFARM_UI_TOKEN"}
        proc = subprocess.run([*REELFARM, "ui", "--store", str(site["store"]), "--port",
                               str(port)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert f"127.0.0.1:{port}" in line
