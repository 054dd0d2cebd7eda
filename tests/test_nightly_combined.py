"""A night renders every story as one job: shots shared by stories render once, each story
still gets its own masters, branches.json, report.json and run record, a failing shot fails
only its own story, and a no-op night over S3 makes few requests."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from backends_for_tests import CountingBackend, renders, use
from fixtures_s3 import Requests
from storybuild import shot, story, story_dict, write_story

from actors.media import probe
from orchestrator.jobs.nightly import NightlyOptions, dry_run, run_nightly
from orchestrator.plan.expand import expand
from orchestrator.run.combined import combine
from orchestrator.run.driver import SchedulerOptions
from orchestrator.store import sha256_file

SHARED = ["rain over the bank", "mara studies the door", "the vault opens"]


def two_endings(name: str, backend: str, *, own: str, fail: str | None = None,
                profile: dict | None = None) -> dict:
    """Three shared shots (the second continues the first), then a choice between an ending
    of this story's own and one more shared shot; ``fail`` adds a shot to the own ending."""
    ending = [shot(f"{name}-end", own)]
    if fail:
        ending.append(shot(fail, f"{name} breaks"))
    return story_dict([
        {"id": "open", "shots": [shot(f"{name}-1", SHARED[0]),
                                 shot(f"{name}-2", SHARED[1], continuity="previous"),
                                 shot(f"{name}-3", SHARED[2])],
         "choice": {"prompt": "?", "options": [{"label": "stay", "next": "own"},
                                               {"label": "go", "next": "out"}]}},
        {"id": "own", "shots": ending},
        {"id": "out", "shots": [shot(f"{name}-out", "the street at dawn")]},
    ], name=name, renderer={"backend": backend}, profile=profile)


def test_combine_runs_each_key_once_and_keeps_every_story_s_names():
    use(CountingBackend("count-plan", "/nonexistent"))
    a = expand(story(two_endings("alpha", "count-plan", own="alpha's end")["spec"]["segments"],
                     name="alpha", renderer={"backend": "count-plan"}))
    b = expand(story(two_endings("bravo", "count-plan", own="bravo's end")["spec"]["segments"],
                     name="bravo", renderer={"backend": "count-plan"}))
    joined = combine([a, b])
    keys = [t.key for t in joined.plan.tasks]
    assert len(keys) == len(set(keys)) == len({t.key for t in a.tasks + b.tasks})
    assert len(joined.plan.tasks) == len(a.tasks) + len(b.tasks) - 4  # 3 shared + "out"
    # bravo's shared tasks are alpha's, and alpha's chain stays a chain
    ids = joined.ids["bravo"]
    assert ids["bravo-1"] == "alpha/alpha-1" and ids["bravo-2"] == "alpha/alpha-2"
    assert ids["bravo-end"] == "bravo/bravo-end"
    assert joined.plan.by_id["alpha/alpha-2"].upstream == "alpha/alpha-1"
    assert [b.name for b in joined.plan.branches] == [
        *(f"alpha/{x.name}" for x in a.branches), *(f"bravo/{x.name}" for x in b.branches)]
    by_name = {x.name: x for x in joined.plan.branches}
    for x in b.branches:
        assert by_name[f"bravo/{x.name}"].tasks == [ids[t] for t in x.tasks]
        assert [joined.plan.by_id[ids[t]].key for t in x.tasks] == [
            b.by_id[t].key for t in x.tasks]


def test_branches_with_the_same_clips_assemble_their_master_once():
    """Joined stories' branches with the same clips have one master: the first branch to
    need it assembles it, the others wait and take it (not assembled for them); should its
    assembly fail, they are waiting again, to assemble their own."""
    from orchestrator.run.masters import Masters
    from orchestrator.run.state import RunState
    from orchestrator.store import BlobRef

    use(CountingBackend("count-plan", "/nonexistent"))
    joined = combine([expand(story(two_endings(n, "count-plan", own=f"{n}'s end")["spec"][
        "segments"], name=n, renderer={"backend": "count-plan"})) for n in ("alpha", "bravo")])
    state = RunState(joined.plan)
    masters = Masters(joined.plan, None, state, found_corrupt=print, note=print)  # no store read
    by = {b.name: b for b in state.branches}
    alpha, bravo, own = by["alpha/out"], by["bravo/out"], by["bravo/own"]
    alpha.key = bravo.key = "same clips"
    own.key = "other clips"
    assert masters.claim(alpha) and masters.claim(own)
    assert not masters.claim(bravo) and bravo.status == "assembling"

    alpha.status = "failed"  # its assembly failed: bravo assembles its own
    assert masters.assembled(alpha) == [] and bravo.status == "waiting"
    assert masters.claim(bravo)

    alpha.status = "waiting"
    assert not masters.claim(alpha)
    ref = BlobRef(sha256="a" * 64, size=10)
    state.branch_done(bravo, ref, 16, cached=False)
    assert masters.assembled(bravo) == [alpha]
    assert (alpha.status, alpha.master, alpha.frames, alpha.cached) == ("done", ref, 16, True)
    assert (own.status, masters.assembled(own)) == ("waiting", [])


def _night(tmp_path: Path, docs: list[dict], **kw) -> tuple[NightlyOptions, Path]:
    stories = tmp_path / "stories"
    stories.mkdir(exist_ok=True)
    for doc in docs:
        write_story(stories / f"{doc['metadata']['name']}.yaml", doc)
    opts = NightlyOptions(store=str(tmp_path / "store"), out=str(tmp_path / "out"),
                          progress="quiet", scheduler=SchedulerOptions(retries=0), **kw)
    return opts, stories


def rendering(store: Path, story: str = "*") -> bool:
    """Whether a run record of ``story`` (any, by default) is running with a rendered shot."""
    for r in (store / "runs").glob(f"{story}/*.json"):
        with contextlib.suppress(ValueError):
            doc = json.loads(r.read_text())
            if doc["status"] == "running" and doc["totals"]["rendered"] >= 1:
                return True
    return False


def _check_outputs(out: Path, name: str) -> dict:
    """Every master in ``branches.json`` is there, whole; returns the story's report."""
    branches = json.loads((out / name / "branches.json").read_text())
    for b in branches:
        m = b["master"]
        if m is None:  # a branch not assembled says why
            assert b["error"]
            continue
        path = out / name / m["path"]
        assert sha256_file(path)[0] == m["sha256"]
        assert probe(path).frames == m["frames"]
    report = json.loads((out / name / "report.json").read_text())
    assert sorted(b["name"] for b in branches) == sorted(b["name"] for b in report["branches"])
    return report


def test_shots_shared_by_stories_render_once(ray_cluster, tmp_path):
    counts = tmp_path / "renders"
    counts.mkdir()
    use(CountingBackend("count-shared", str(counts)))
    small = {"width": 80, "height": 64, "fps": 8}  # another profile: nothing to share
    docs = [two_endings("alpha", "count-shared", own="alpha's end"),
            two_endings("bravo", "count-shared", own="bravo's end"),
            two_endings("small", "count-shared", own="alpha's end", profile=small)]
    opts, stories = _night(tmp_path, docs)
    result = run_nightly(str(stories), opts)
    assert result.exit_code == 0, [s.problems for s in result.stories]
    by = {s.story: s for s in result.stories}
    assert {n: (s.status, s.tasks, s.rendered, s.cached, s.masters_assembled)
            for n, s in by.items()} == {
        "alpha": ("rendered", 5, 5, 0, 2),
        # only its own ending renders and assembles: the rest, and its "out" master (the
        # same clips as alpha's), are alpha's
        "bravo": ("rendered", 5, 1, 4, 1),
        "small": ("rendered", 5, 5, 0, 2)}
    done = renders(counts)
    assert set(done.values()) == {1}  # no key rendered twice
    assert len(done) == 5 + 1 + 5

    out, store = Path(opts.out), Path(opts.store)
    for name in ("alpha", "bravo", "small"):
        report = _check_outputs(out, name)
        assert report["story"] == name and report["status"] == "succeeded"
        assert report["waiting_for"] is None  # every field of render's report, joined too
        assert report["totals"]["masters"] == 2
        record = json.loads((store / "runs" / name / f"{by[name].run_id}.json").read_text())
        assert record["status"] == "succeeded"
        assert set(record["records"]) == {t["key"] for t in record["tasks"]}
        assert record["graph"]["start"] == "open"  # as render keeps it, for the ui
    bravo = _check_outputs(out, "bravo")
    assert {t["reason"] for t in bravo["tasks"] if t["status"] == "rendered"} == {
        "never rendered"}
    masters = {n: {b["name"]: b["master"]["sha256"]
                   for b in json.loads((out / n / "branches.json").read_text())}
               for n in ("alpha", "bravo")}
    assert masters["bravo"]["out"] == masters["alpha"]["out"]
    assert masters["bravo"]["own"] != masters["alpha"]["own"]
    shared = {t["id"]: t for t in bravo["tasks"] if t["status"] == "cached"}
    assert shared["bravo-2"]["reason"] == "rendered in this run as alpha/alpha-2"
    assert all(t["seconds"] == 0 for t in shared.values())
    alpha = _check_outputs(out, "alpha")
    assert {t["shot"]: t["clip"] for t in alpha["tasks"]}["alpha-3"] == {
        t["shot"]: t["clip"] for t in bravo["tasks"]}["bravo-3"]
    for b in json.loads((out / "small" / "branches.json").read_text()):
        info = probe(out / "small" / b["master"]["path"])
        assert (info.width, info.height) == (80, 64)

    # the next night: nothing changed, nothing renders, nothing is written but the summary
    again = run_nightly(str(stories), opts)
    assert again.exit_code == 0
    assert {s.status for s in again.stories} == {"unchanged"}
    assert renders(counts) == done

    # an edit to a shared shot renders it (and the shot conditioned on it) once, for both
    # stories, and each story says what changed
    for doc in docs[:2]:
        doc["spec"]["segments"][0]["shots"][0]["prompt"] = "rain over the bank, at dusk"
        write_story(stories / f"{doc['metadata']['name']}.yaml", doc)
    third = run_nightly(str(stories), opts)
    by = {s.story: s for s in third.stories}
    assert {n: (s.status, s.rendered) for n, s in by.items()} == {
        "alpha": ("rendered", 2), "bravo": ("rendered", 0), "small": ("unchanged", 0)}
    assert len(renders(counts)) == len(done) + 2
    alpha = _check_outputs(out, "alpha")
    why = {t["id"]: t["reason"] for t in alpha["tasks"] if t["status"] == "rendered"}
    assert why["alpha-1"].startswith("prompt: ") and why["alpha-2"].startswith("upstream ")
    bravo = _check_outputs(out, "bravo")
    assert bravo["totals"]["masters_assembled"] == 1  # its own ending; "out" is alpha's
    assert alpha["totals"]["masters_assembled"] == 2


def test_a_failing_shot_fails_only_its_own_story(ray_cluster, tmp_path):
    counts = tmp_path / "renders"
    counts.mkdir()
    use(CountingBackend("count-fail", str(counts), fail_shots=frozenset({"boom"})))
    docs = [two_endings("alpha", "count-fail", own="alpha's end", fail="boom"),
            two_endings("bravo", "count-fail", own="bravo's end")]
    opts, stories = _night(tmp_path, docs)
    result = run_nightly(str(stories), opts)
    assert result.exit_code == 1
    by = {s.story: s for s in result.stories}
    assert (by["alpha"].status, by["alpha"].failed) == ("failed", 1)
    assert any(p.startswith("boom: ") and "deliberate failure" in p
               for p in by["alpha"].problems)
    assert (by["bravo"].status, by["bravo"].rendered, by["bravo"].masters) == ("rendered", 1, 2)

    out, store = Path(opts.out), Path(opts.store)
    bravo = _check_outputs(out, "bravo")
    assert bravo["status"] == "succeeded" and bravo["failures"] == []
    record = json.loads((store / "runs" / "bravo" / f"{by['bravo'].run_id}.json").read_text())
    assert record["status"] == "succeeded"
    alpha = _check_outputs(out, "alpha")  # its other ending is still assembled
    assert alpha["status"] == "failed"
    assert [f["id"] for f in alpha["failures"]] == ["boom"]
    assert {b["name"]: b["status"] for b in alpha["branches"]} == {
        "own": "failed", "out": "done"}
    branches = json.loads((out / "alpha" / "branches.json").read_text())
    assert [b["name"] for b in branches if b["master"]] == ["out"]
    record = json.loads((store / "runs" / "alpha" / f"{by['alpha'].run_id}.json").read_text())
    assert record["status"] == "failed"
    assert Counter(renders(counts).values()) == {1: 7}  # 6 of alpha (boom once), bravo's end


@pytest.fixture()
def count_s3(monkeypatch):
    """Every request of every S3 client this process makes from here on."""
    from orchestrator.store.s3 import S3Store

    seen: list[Requests] = []
    init = S3Store.__init__

    def counted(self, *a, **kw):
        init(self, *a, **kw)
        seen.append(Requests(self.client))

    monkeypatch.setattr(S3Store, "__init__", counted)
    return lambda: sum(r.total for r in seen)


def test_a_no_op_night_over_s3_makes_few_requests(ray_cluster, s3_url, s3_client, count_s3,
                                                  tmp_path):
    from orchestrator.store.s3 import parse_s3_url

    counts = tmp_path / "renders"
    counts.mkdir()
    use(CountingBackend("count-s3", str(counts)))
    bucket, prefix = parse_s3_url(s3_url)
    n, shots = 3, 30  # 90 tasks: more than the store checks one by one (64)
    for i in range(n):
        name = f"story-{i}"
        doc = story_dict([{"id": "only", "shots": [
            shot(f"s{j}", f"{name} shot {j}", duration=0.125) for j in range(shots)]}],
            name=name, renderer={"backend": "count-s3"})
        s3_client.put_object(Bucket=bucket, Key=f"{prefix}stories/{name}.yaml",
                             Body=yaml.safe_dump(doc).encode())
    base = s3_url.rstrip("/")
    opts = NightlyOptions(store=f"{base}/store", out=f"{base}/out", progress="quiet")
    first = run_nightly(f"{base}/stories", opts)
    assert first.exit_code == 0 and sum(s.rendered for s in first.stories) == n * shots
    done = renders(counts)

    before = count_s3()
    second = run_nightly(f"{base}/stories", opts)
    requests = count_s3() - before
    assert second.exit_code == 0
    assert {s.status for s in second.stories} == {"unchanged"}
    assert renders(counts) == done
    # not one request per task: one listing of the records and one of the blobs for every
    # story at once, and a few requests per story (its manifest, its latest run record, its
    # published outputs) and per master
    assert requests < n * shots, requests

    # the dry run looks the night's keys up the same way: every task cached
    before = count_s3()
    plan = dry_run(f"{base}/stories", opts).document()["totals"]
    assert (plan["tasks"], plan["cached"], plan["to_render"]) == (n * shots, n * shots, 0)
    assert count_s3() - before < n * shots

    before = count_s3()
    alone = run_nightly(f"{base}/stories", replace(opts, combined=False))
    one_by_one = count_s3() - before
    assert {s.status for s in alone.stories} == {"unchanged"}
    assert requests < one_by_one, (requests, one_by_one)


def test_a_story_no_node_can_run_fails_alone(ray_cluster, tmp_path):
    counts = tmp_path / "renders"
    counts.mkdir()
    use(CountingBackend("count-b200", str(counts)))
    alpha = two_endings("alpha", "count-b200", own="alpha's end")
    alpha["spec"]["segments"][1]["shots"].append(
        shot("huge", "a shot for a card this cluster lacks",
             renderer={"resources": {"accelerator_type:B200": 1}}))
    opts, stories = _night(tmp_path, [alpha, two_endings("bravo", "count-b200",
                                                         own="bravo's end")])
    result = run_nightly(str(stories), opts)
    assert result.exit_code == 1
    by = {s.story: s for s in result.stories}
    assert by["alpha"].status == "failed"
    assert any("huge" in p and "accelerator_type:B200" in p for p in by["alpha"].problems)
    assert (by["bravo"].status, by["bravo"].masters) == ("rendered", 2)
    # the shots alpha shares with bravo render (alpha's tasks, being first), the rest fail
    assert by["bravo"].rendered == 1 and by["alpha"].rendered == 4
    _check_outputs(Path(opts.out), "bravo")
    alpha_report = json.loads((Path(opts.out) / "alpha" / "report.json").read_text())
    assert alpha_report["status"] == "failed"
    assert any("accelerator_type:B200" in e for e in alpha_report["errors"])
    assert {t["id"]: t["status"] for t in alpha_report["tasks"]} == {
        "alpha-1": "rendered", "alpha-2": "rendered", "alpha-3": "rendered",
        "alpha-out": "rendered", "alpha-end": "failed", "huge": "failed"}
    assert len(renders(counts)) == 5


def test_a_story_whose_renderers_cannot_start_fails_alone(ray_cluster, tmp_path):
    from backends_for_tests import NoRendererBackend

    counts = tmp_path / "renders"
    counts.mkdir()
    use(CountingBackend("count-ok", str(counts)))
    use(NoRendererBackend("no-device"))
    bad = two_endings("alpha", "no-device", own="alpha's end")
    opts, stories = _night(tmp_path, [bad, two_endings("bravo", "count-ok", own="bravo's end")])
    result = run_nightly(str(stories), opts)
    assert result.exit_code == 1
    by = {s.story: s for s in result.stories}
    assert by["alpha"].status == "failed"
    assert any("found no device" in p for p in by["alpha"].problems)
    assert (by["bravo"].status, by["bravo"].masters) == ("rendered", 2)
    report = _check_outputs(Path(opts.out), "bravo")
    assert report["status"] == "succeeded" and report["totals"]["masters"] == 2


def test_ctrl_c_finalises_every_story_s_record(ray_cluster, tmp_path):
    import signal

    from backends_for_tests import SleepBackend
    from cachetools import cli_process, fork_story, local_records, plan_json, wait_for

    use(SleepBackend("sleep"))  # the CLI process registers the same backend
    stories = tmp_path / "stories"
    stories.mkdir()
    keys: set[str] = set()
    store = tmp_path / "store"
    for name, extra in (("alpha", 4), ("bravo", 5)):
        path = write_story(stories / f"{name}.yaml",
                           fork_story(name, backend="sleep", b_prompt=f"{name}'s door",
                                      extra_a=extra))
        keys |= {t["key"] for t in plan_json(str(path), str(store))["task_list"]}
    p = cli_process(["nightly", str(stories), "--store", str(store), "--out",
                     str(tmp_path / "out"), "--plain", "--max-workers", "2"],
                    address=ray_cluster.address, per_frame_s=0.4, log=tmp_path / "night.log")
    wait_for(lambda: len(local_records(store, keys)) >= 3, 240, "three finished shots")

    # a story's run record shows its progress while the night runs
    wait_for(lambda: rendering(store), 120, "a live run record with a rendered shot")
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=60) == 1, (tmp_path / "night.log").read_text()
    for name in ("alpha", "bravo"):
        runs = [json.loads(r.read_text()) for r in (store / "runs" / name).glob("*.json")]
        assert [r["status"] for r in runs] == ["interrupted"]
        report = json.loads((tmp_path / "out" / name / "report.json").read_text())
        assert report["status"] == "interrupted" and report["run_id"] == runs[0]["run_id"]
    (summary,) = (tmp_path / "out").glob("nightly-*.json")
    doc = json.loads(summary.read_text())
    assert [(s["story"], s["status"]) for s in doc["stories"]] == [
        ("alpha", "failed"), ("bravo", "failed")]
    assert all(s["problems"] == ["render interrupted"] for s in doc["stories"])


def test_ctrl_c_stops_a_story_by_story_night(ray_cluster, tmp_path):
    """Story by story (``combined=False``, or the fallback when the joined run cannot run), a
    SIGINT during one story's render stops the night: that story's record is finalised as
    interrupted and the stories after it are listed as not rendered, not started."""
    import os
    import signal
    import threading

    from backends_for_tests import SleepBackend
    from cachetools import fork_story, wait_for

    from orchestrator.jobs.nightly import NOT_RENDERED

    use(SleepBackend("sleep-night", per_frame_s=0.4))
    docs = [fork_story(name, backend="sleep-night", b_prompt=f"{name}'s door", extra_a=4)
            for name in ("alpha", "bravo")]
    opts, stories = _night(tmp_path, docs, combined=False)
    store = Path(opts.store)

    def interrupt() -> None:
        # alpha's render has a finished shot: its handler is in
        wait_for(lambda: rendering(store, "alpha"), 240, "alpha rendering")
        os.kill(os.getpid(), signal.SIGINT)

    t = threading.Thread(target=interrupt, daemon=True)
    t.start()
    result = run_nightly(str(stories), opts)
    t.join(timeout=10)
    by = {s.source.rsplit("/", 1)[-1]: s for s in result.stories}
    assert by["alpha.yaml"].interrupted and not by["alpha.yaml"].ok
    alpha = [json.loads(r.read_text()) for r in (store / "runs" / "alpha").glob("*.json")]
    assert [r["status"] for r in alpha] == ["interrupted"]
    assert by["bravo.yaml"].problems == [NOT_RENDERED]
    assert not (store / "runs" / "bravo").exists()  # never started
    assert result.exit_code != 0
