"""``reelfarm nightly`` takes only reelfarm/v1 Story manifests: drafts and schemas are skipped and
listed, an invalid manifest fails the night; ``--include``/``--exclude`` pick files and
``--dry-run`` gives the night's plan without rendering or creating anything."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from storybuild import shot, story_dict, write_story

from orchestrator.cli import main
from orchestrator.jobs.nightly import NightlyOptions, not_a_story, run_nightly
from orchestrator.run.driver import SchedulerOptions

ROOT = Path(__file__).resolve().parent.parent


def small(name: str) -> dict:
    return story_dict([{"id": "a", "shots": [shot("a1", f"{name} opens")], "next": "b"},
                       {"id": "b", "shots": [shot("b1", f"{name} ends")]}], name=name)


def stories_dir(root: Path) -> Path:
    d = root / "stories"
    (d / "drafts").mkdir(parents=True)
    write_story(d / "one.yaml", small("one"))
    write_story(d / "drafts" / "wip.yaml", small("wip"))  # a story, but excluded below
    (d / "notes.yaml").write_text("todo:\n  - write act two\n")  # a draft: not a manifest
    shutil.copy(ROOT / "manifests" / "story.schema.json", d / "story.schema.json")
    (d / "other.yaml").write_text("apiVersion: reelfarm/v2\nkind: Story\n")
    (d / "data.json").write_text(json.dumps({"frames": list(range(600_000))}))  # > 2 MiB
    return d


def cli(*args: str):
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_what_claims_to_be_a_story():
    schema = (ROOT / "manifests" / "story.schema.json").read_bytes()
    assert not_a_story("s.json", schema) is not None
    assert not_a_story("d.yaml", b"todo: [x]\n") is not None
    assert not_a_story("e.yaml", b"") is not None
    assert not_a_story("l.yaml", b"- apiVersion: reelfarm/v1\n- kind: Story\n") is not None
    assert not_a_story("s.yaml", b"just words\n") is not None
    assert not_a_story("v2.yaml", b"apiVersion: reelfarm/v2\nkind: Story\n") is not None
    assert not_a_story("h.yaml", (ROOT / "manifests" / "heist.yaml").read_bytes()) is None
    # broken YAML that says it is a Story is a Story (and is then reported invalid)
    assert not_a_story("b.yaml", b"apiVersion: reelfarm/v1\nkind: Story\nspec: [\n") is None
    assert not_a_story("j.json", json.dumps(small("j")).encode()) is None


def test_dry_run_plans_the_night_and_creates_nothing(tmp_path):
    d = stories_dir(tmp_path)
    (d / "broken.yaml").write_text("apiVersion: reelfarm/v1\nkind: Story\nspec: [\n")
    store, out = tmp_path / "store", tmp_path / "out"
    code, stdout, stderr = cli("nightly", str(d), "--store", str(store), "--out", str(out),
                               "--exclude", "drafts/*", "--dry-run")
    assert code == 1  # broken.yaml claims to be a story and is not a valid one
    assert not store.exists() and not out.exists()
    assert "invalid broken.yaml" not in stderr  # problems name the full source
    assert f"invalid {d / 'broken.yaml'}:" in stderr
    for name in ("notes.yaml", "story.schema.json", "other.yaml", "data.json"):
        assert f"skipped {d / name}: {d / name}: not a reelfarm/v1 Story manifest" in stderr
    assert "wip" not in stdout  # excluded
    assert "dry run: 2 stories, 4 skipped, 1 invalid; 2 tasks: 0 cached, 2 to render " \
           "(the store does not exist yet: nothing is cached); nothing rendered" in stderr

    code, stdout, stderr = cli("nightly", str(d), "--store", str(store), "--out", str(out),
                               "--include", "*.yaml", "--exclude", "broken.yaml",
                               "--exclude", "drafts/*", "--dry-run")
    assert code == 0, stderr
    assert "story.schema.json" not in stdout + stderr  # not included
    assert "dry run: 1 stories, 2 skipped, 0 invalid" in stderr
    assert not store.exists() and not out.exists()


def test_a_night_with_drafts_and_a_schema_is_green(ray_cluster, tmp_path):
    d = stories_dir(tmp_path)
    opts = NightlyOptions(store=str(tmp_path / "store"), out=str(tmp_path / "out"),
                          progress="quiet", scheduler=SchedulerOptions(retries=0),
                          exclude=("drafts/*",))
    result = run_nightly(str(d), opts)
    assert result.exit_code == 0
    status = {Path(s.source).name: s.status for s in result.stories}
    assert status == {"one.yaml": "rendered", "notes.yaml": "skipped", "data.json": "skipped",
                      "story.schema.json": "skipped", "other.yaml": "skipped"}
    summary = json.loads(Path(result.summary).read_text())
    assert summary["status"] == "succeeded"
    assert summary["totals"]["stories"] == 1 and summary["totals"]["skipped"] == 4

    # the same night, dry: every task is cached now
    code, stdout, stderr = cli("nightly", str(d), "--store", str(tmp_path / "store"),
                               "--out", str(tmp_path / "out"), "--exclude", "drafts/*",
                               "--dry-run")
    assert code == 0, stderr
    assert "2 tasks: 2 cached, 0 to render; nothing rendered" in stderr


def _put(client: Any, url: str, body: bytes) -> None:
    from orchestrator.store.s3 import parse_s3_url

    bucket, key = parse_s3_url(url)
    client.put_object(Bucket=bucket, Key=key.rstrip("/"), Body=body)


def test_dry_run_over_an_s3_prefix(s3_url, s3_client):
    from orchestrator.store.s3 import parse_s3_url

    base = s3_url.rstrip("/")
    _put(s3_client, f"{base}/stories/one.yaml", yaml.safe_dump(small("one")).encode())
    _put(s3_client, f"{base}/stories/story.schema.json",
         (ROOT / "manifests" / "story.schema.json").read_bytes())
    _put(s3_client, f"{base}/stories/drafts/wip.yaml", yaml.safe_dump(small("wip")).encode())
    _put(s3_client, f"{base}/stories/cycle.yaml",
         (ROOT / "manifests" / "invalid" / "cycle.yaml").read_bytes())
    code, stdout, stderr = cli("nightly", f"{base}/stories", "--store", f"{base}/store",
                               "--out", f"{base}/out", "--exclude", "drafts/*", "--dry-run")
    assert code == 1, stderr  # cycle.yaml is a Story manifest, and an invalid one
    assert "safe -> escape -> safe" in stderr
    assert f"skipped {base}/stories/story.schema.json" in stderr
    assert "dry run: 2 stories, 1 skipped, 1 invalid; 2 tasks: 0 cached, 2 to render" in stderr
    bucket, prefix = parse_s3_url(base)
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket, Prefix=prefix)
            .get("Contents", [])]
    assert all("/stories/" in k for k in keys)  # nothing written: no store, no output


def test_a_file_too_big_for_a_manifest_is_skipped_unless_it_says_it_is_one(tmp_path):
    from orchestrator.jobs.nightly import INVALID, SKIPPED, StoryOutcome, _load

    big = tmp_path / "big.yaml"
    big.write_text("apiVersion: reelfarm/v1\nkind: Story\n# " + "x" * (3 * 2**20) + "\n")
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"frames": list(range(600_000))}))
    for path, status in ((big, INVALID), (data, SKIPPED)):
        outcome = StoryOutcome(source=str(path), status="failed")
        assert _load(str(path), None, outcome) is None
        assert outcome.status == status and outcome.problems
