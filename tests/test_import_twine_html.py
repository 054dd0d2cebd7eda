"""``reelfarm import`` of Twine 2 published HTML: passages, entities, lines, nothing fetched."""

from __future__ import annotations

import http.server
import re
import threading

import pytest
from importkit import DATA, run_import, write

PAGE = """\
<!DOCTYPE html>
<html>
<head>
<title>Harbour</title>
<link rel="stylesheet" href="http://127.0.0.1:{port}/style.css">
<script src="http://127.0.0.1:{port}/engine.js"></script>
</head>
<body>
<tw-storydata name="Harbour &amp; Sea" startnode="2" creator="Twine" creator-version="2.6.2"
 ifid="5F0C1E56-4D77-4C9B-8C4A-6D2F0A2B1C3E" format="Harlowe" format-version="3.3.8">
<style role="stylesheet" id="twine-user-stylesheet" type="text/twine-css">body {{}}</style>
<script role="script" id="twine-user-script" type="text/twine-javascript">fetch("http://127.0.0.1:{port}/run")</script>
<tw-passagedata pid="1" name="Dock" tags="">Gulls over the dock. &lt;b&gt;Loud&lt;/b&gt; gulls.

[[Sail->Open sea]]
[[Stay &amp; fish|Pier]]</tw-passagedata>
<tw-passagedata pid="2" name="Harbour" tags="start">Boats knock together in the harbour.
&lt;img src=&quot;http://127.0.0.1:{port}/boat.png&quot;&gt;
(link-goto: "Walk to the dock", "Dock")</tw-passagedata>
<tw-passagedata pid="3" name="Open sea" tags="">Waves, and nothing else.</tw-passagedata>
<tw-passagedata pid="4" name="Pier" tags="">&lt;!-- shot: duration=4 --&gt;
A fish bites.</tw-passagedata>
</tw-storydata>
<script title="Twine engine code">window.location = "http://127.0.0.1:{port}/away";</script>
</body>
</html>
"""


@pytest.fixture
def counting_server():
    """A local HTTP server that counts every request made to it."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's spelling
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], hits
    server.shutdown()
    server.server_close()


def test_passages_links_and_entities(tmp_path, counting_server):
    port, hits = counting_server
    src = write(tmp_path / "harbour.html", PAGE.format(port=port))
    r = run_import(src)
    assert r.code == 0, r.stderr
    assert r.manifest["metadata"]["title"] == "Harbour & Sea"
    assert r.manifest["spec"]["start"] == "harbour"  # startnode="2"
    segs = r.segments
    assert set(segs) == {"dock", "harbour", "open-sea", "pier"}
    # entities are decoded; HTML tags written in the text are not part of the prompt
    assert segs["dock"]["shots"][0]["prompt"] == "Gulls over the dock. Loud gulls."
    assert segs["dock"]["choice"]["options"] == [
        {"label": "Sail", "next": "open-sea"},
        {"label": "Stay & fish", "next": "pier"},
    ]
    assert segs["harbour"]["choice"]["options"] == [{"label": "Walk to the dock", "next": "dock"}]
    assert segs["pier"]["shots"] == [{"id": "pier-1", "prompt": "A fish bites.", "duration": 4.0}]
    # scripts, stylesheets and the format's engine are listed, never run or fetched
    lost = r.lines("lost: ")
    assert any("1 story script(s) are not run" in ln for ln in lost)
    assert any("Harlowe 3.3.8" in ln for ln in lost)
    assert hits == []


def test_each_passage_keeps_its_line_in_the_html(tmp_path, counting_server):
    port, _ = counting_server
    text = PAGE.format(port=port)
    src = write(tmp_path / "harbour.html", text)
    r = run_import(src)
    lines = text.splitlines()
    for seg in r.segments.values():
        ref = seg["source"]
        assert f'name="{ref["name"]}"' in lines[ref["line"] - 1]


def test_a_problem_in_a_passage_names_its_line(tmp_path):
    text = ('<tw-storydata name="x" startnode="1">\n'
            '<tw-passagedata pid="1" name="A">First line\n'
            'second line [[Go->B\n'
            '</tw-passagedata>\n'
            '<tw-passagedata pid="2" name="B">Bye</tw-passagedata></tw-storydata>\n')
    src = write(tmp_path / "bad.html", text)
    r = run_import(src)
    assert r.code == 2
    assert f"{src}:3: A: a link [[ is never closed with ]]" in r.stderr


@pytest.mark.parametrize(
    "body, what",
    [
        ("<html><body><p>Just a page</p></body></html>", "no <tw-storydata> element"),
        ('<tw-storydata name="x" startnode="9"><tw-passagedata pid="1" name="A">Hi'
         "</tw-passagedata></tw-storydata>", "startnode '9' names no passage"),
        ('<tw-storydata name="x" startnode="1"></tw-storydata>', "has no <tw-passagedata>"),
        ('<tw-storydata name="x" startnode="1"><tw-passagedata pid="1">Hi</tw-passagedata>'
         "</tw-storydata>", "without a name"),
    ],
)
def test_malformed_html_exits_2(tmp_path, body, what):
    src = write(tmp_path / "bad.html", body)
    r = run_import(src)
    assert r.code == 2
    assert what in r.stderr


def test_real_story_lock_and_key_published_by_twine(tmp_path):
    """The Twine Cookbook's Lock and Key, published by Twine 2.1.3 with Harlowe 2.0.1 (the
    format's 270 KB engine in the page): the same story graph as its Twee version."""
    src = DATA / "lock-and-key" / "lock-and-key-harlowe.html"
    r = run_import(src)
    assert r.code == 2
    assert "loop: Front Room -> Back Room -> Front Room" in r.stderr
    assert "option 'Exit' -> Exit depends on a condition ((if: $key is true))" in r.stderr

    r = run_import(src, "--all-options", "--unroll", "0")
    assert r.code == 0, r.stderr
    text = src.read_text()
    passages = re.findall(r'<tw-passagedata [^>]*name="([^"]+)"', text)
    assert sorted(s["source"]["name"] for s in r.segments.values()) == sorted(passages)
    story = re.search(r"<tw-storydata.*</tw-storydata>", text, re.S).group(0)
    options = sum(len(s.get("choice", {}).get("options", [])) for s in r.segments.values())
    dropped = [ln for ln in r.lines("lost: ") if "closes a loop" in ln]
    assert options + len(dropped) == story.count("[[") == 5
    twee = run_import(DATA / "lock-and-key" / "lock-and-key.twee", "--all-options",
                      "--unroll", "0")
    # Harlowe lists Front Room first, SugarCube Back Room: the loop is cut at the other link
    assert set(r.segments) == set(twee.segments)
    assert r.successors() == {
        "start": ["front-room", "back-room"],
        "front-room": ["exit", "back-room"],
        "back-room": [],
        "exit": [],
    }
