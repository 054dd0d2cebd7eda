"""``report.html`` beside ``report.json``: opened from the output directory (``file://``, no
server) in real headless Chromium. A story of two branches, one of which fails (a shot that
keeps failing), with manifest text that must be shown as text."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from backends_for_tests import SleepBackend, use
from click.testing import CliRunner
from storybuild import shot, story_dict, write_story

from orchestrator.cli import main
from orchestrator.run.report_html import THUMB_WIDTH, thumb_rel, write_thumbs
from orchestrator.store import ActionRecord, open_store
from orchestrator.store.outputs import open_output

TITLE = "The <b>Heist</b> & co"
LABEL = "Crack <i>the</i> safe"


def story() -> dict:
    doc = story_dict([
        {"id": "vault", "shots": [shot("door"), shot("mara", continuity="previous")],
         "choice": {"prompt": "?", "default": 0, "options": [
             {"label": LABEL, "next": "safe"}, {"label": "Walk away", "next": "street"}]}},
        {"id": "safe", "shots": [shot("dial"), shot("gold", continuity="previous")]},
        {"id": "street", "shots": [shot("rain"), shot("bad")]},
    ], name="page", renderer={"backend": "page-sleep"})
    doc["metadata"]["title"] = TITLE
    return doc


@pytest.fixture(scope="module")
def rendered(ray_cluster, tmp_path_factory) -> dict[str, Any]:
    use(SleepBackend("page-sleep", fail_shots=frozenset({"bad"})))
    base = tmp_path_factory.mktemp("page")
    src = write_story(base / "page.yaml", story())
    store, out = base / "store", base / "out"
    r = CliRunner().invoke(main, ["render", str(src), "--store", str(store), "--out", str(out),
                                  "--quiet", "--retries", "0"], catch_exceptions=False)
    assert r.exit_code == 1, r.stderr  # the street branch fails; the safe branch is done
    return {"store": store, "out": out,
            "report": json.loads((out / "report.json").read_text()),
            "branches": json.loads((out / "branches.json").read_text())}


def test_report_html_in_chromium(rendered, browser, artifacts):
    out: Path = rendered["out"]
    page_path = out / "report.html"
    assert page_path.is_file()
    page = browser.new_page()
    try:
        page.goto(page_path.as_uri())
        page.wait_for_load_state("load")
        # every branch, with its status from the run
        shown = page.eval_on_selector_all(
            "article.branch", "els => els.map(e => [e.dataset.branch, "
            "e.querySelector('h3 .status').textContent])")
        want = {b["name"]: b["status"] for b in rendered["report"]["branches"]}
        assert dict(shown) == want
        assert set(want.values()) == {"done", "failed"}

        # images: every rendered shot's thumbnail loaded; the failed one has none
        images = page.eval_on_selector_all(
            "article.branch img", "els => els.map(e => [e.getAttribute('src'), "
            "e.complete, e.naturalWidth])")
        done = {t["key"] for t in rendered["report"]["tasks"] if t["clip"]}
        assert {src for src, _, _ in images} == {thumb_rel(k) for k in done}
        # loaded, at the frame's own width (64 px: thumbnails are never wider than a frame)
        assert all(complete and width == 64 for _, complete, width in images), images
        # contact sheets in playing order: one figure per shot of the branch
        sheets = page.eval_on_selector_all(
            "article.branch", "els => els.map(e => [e.dataset.branch, "
            "Array.from(e.querySelectorAll('figure figcaption')).map(f => f.textContent)])")
        for name, captions in sheets:
            b = next(b for b in rendered["branches"] if b["name"] == name)
            assert [c.split()[-1] for c in captions] == b["shots"]

        # master links resolve, relative to the page, to the published masters
        links = page.eval_on_selector_all("a.master", "els => els.map(e => [e.href, "
                                                      "e.closest('article').dataset.branch])")
        with_master = [b for b in rendered["branches"] if b["master"]]
        assert len(links) == len(with_master) == 1
        for href, name in links:
            target = Path(href.removeprefix("file://"))
            assert target.is_file() and target.parent.parent == out
            b = next(b for b in with_master if b["name"] == name)
            assert hashlib.sha256(target.read_bytes()).hexdigest() == b["master"]["sha256"]

        # manifest text is text: no element made of it
        assert page.title().startswith(TITLE)
        assert page.locator("h1 b").count() == 0 and page.locator(".path i").count() == 0
        assert LABEL in page.inner_text("article[data-branch='safe']")
        # each shot's row says why it rendered, and the failed one its error
        rows = page.eval_on_selector_all(
            "tr[data-task]", "els => els.map(e => [e.dataset.task, e.cells[3].textContent, "
            "e.cells[9].textContent])")
        rows = {tid: (why, err) for tid, why, err in rows}
        assert rows["door"][0] == "never rendered"
        assert "deliberate failure of bad" in rows["bad"][1]

        shot_path = artifacts / "report-html.png"
        page.screenshot(path=str(shot_path), full_page=True)
        print(f"report.html screenshot: {shot_path}")
        assert shot_path.stat().st_size > 0
    finally:
        page.close()


def test_thumbnails_prefer_the_poster_and_are_pruned(tmp_path):
    from PIL import Image

    store = open_store(str(tmp_path / "store"))
    out = open_output(str(tmp_path / "out"))

    def image(colour: tuple[int, int, int], fmt: str) -> bytes:
        buf = io.BytesIO()
        Image.new("RGB", (320, 180), colour).save(buf, fmt)
        return buf.getvalue()

    last = store.put_bytes(image((255, 0, 0), "PNG"))
    poster = store.put_bytes(image((0, 0, 255), "JPEG"))
    with_poster = ActionRecord(key="a" * 64, outputs={"clip": last, "last_frame": last,
                                                      "poster": poster}, frames=1)
    without = ActionRecord(key="b" * 64, outputs={"clip": last, "last_frame": last}, frames=1)
    out.put_bytes(thumb_rel("c" * 64), b"old", "image/jpeg")  # of a task no longer planned

    keys, problems = write_thumbs(out, store, {"x": with_poster, "y": without}, prune=True)
    assert keys == {"a" * 64, "b" * 64} and problems == []
    assert out.list_files("thumbs/") == [thumb_rel("a" * 64), thumb_rel("b" * 64)]
    for key, colour in (("a", (0, 0, 255)), ("b", (255, 0, 0))):
        with Image.open(tmp_path / "out" / thumb_rel(key * 64)) as im:
            assert im.size == (THUMB_WIDTH, 90)
            r, g, b = im.convert("RGB").getpixel((80, 45))
            assert max(abs(r - colour[0]), abs(g - colour[1]), abs(b - colour[2])) < 16


def test_a_long_branchs_contact_sheet_is_bounded_and_reads_only_its_thumbnails(tmp_path):
    """A fresh --out for a studio-sized story: the contact sheet shows SHEET_SHOTS shots from
    the first to the last, and only their posters are read from the store."""
    from PIL import Image

    from orchestrator.run.report_html import SHEET_SHOTS, publish

    store = open_store(str(tmp_path / "store"))
    out = open_output(str(tmp_path / "out"))
    n = SHEET_SHOTS * 3 + 7
    records, tasks = {}, []
    for i in range(n):
        buf = io.BytesIO()
        Image.new("RGB", (64, 36), (i % 256, 0, 0)).save(buf, "JPEG")
        ref = store.put_bytes(buf.getvalue())
        key = f"{i:064x}"
        records[f"t{i}"] = ActionRecord(key=key, outputs={"clip": ref, "poster": ref}, frames=1)
        tasks.append({"id": f"t{i}", "shot": f"s{i}", "key": key, "status": "cached"})
    reads: list[str] = []
    get_bytes = store.get_bytes
    store.get_bytes = lambda sha: reads.append(sha) or get_bytes(sha)
    report = {"story": "long", "run_id": "r", "status": "succeeded", "tasks": tasks}
    branches = [{"name": "main", "segments": ["a"], "tasks": [t["id"] for t in tasks]}]
    assert publish(out, store, report, branches, records) == []
    assert len(reads) == SHEET_SHOTS
    thumbs = out.list_files("thumbs/")
    assert len(thumbs) == SHEET_SHOTS
    assert thumb_rel(records["t0"].key) in thumbs and thumb_rel(records[f"t{n - 1}"].key) in thumbs
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count('<figure class="shot"') == SHEET_SHOTS
    assert f"{SHEET_SHOTS} of {n} shots" in page
    assert page.count("<tr data-task=") == n  # the table still lists every shot
