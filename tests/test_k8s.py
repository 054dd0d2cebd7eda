"""Offline validation of ``k8s/``: kustomize rendering, KubeRay CRD schemas, semantic lints.

The CRD schemas come from the KubeRay v1.7.0 CRDs in ``<repo>/../shared/kuberay-crds/v1.7.0``
(or ``$KUBERAY_CRDS/v1.7.0``).
Schema tests skip where that folder is absent, except under ``CI=true``, where a missing copy fails
them: CI must never pass without the schemas checked. Every other check runs everywhere.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import k8s_lint  # noqa: E402
import k8s_render  # noqa: E402

REPO = HERE.parent
K8S = REPO / "k8s"
# KUBERAY_CRDS names another folder holding the v1.7.0/ copy (a clone not beside ../shared).
CRD_DIR = Path(os.environ.get("KUBERAY_CRDS") or REPO.parent / "shared" / "kuberay-crds") / "v1.7.0"
OVERLAYS = ["cpu-demo", "gpu"]
TARGETS = ["base", *(f"overlays/{name}" for name in OVERLAYS)]
RAYCRONJOB = K8S / "components" / "raycronjob"


def render(target: str) -> list[dict[str, Any]]:
    return k8s_render.render(K8S / target)


def render_with_raycronjob(tmp: Path, target: str = "overlays/gpu") -> list[dict[str, Any]]:
    """An overlay of ``target`` with the RayCronJob component, as k8s/README.md shows."""
    kustomization = {
        "namespace": "reelfarm",
        "resources": [str(K8S / target)],
        "components": [str(RAYCRONJOB)],
    }
    (tmp / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return k8s_render.render(tmp)


@pytest.fixture(scope="module")
def with_raycronjob(tmp_path_factory) -> list[dict[str, Any]]:
    return render_with_raycronjob(tmp_path_factory.mktemp("raycronjob"))


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    for obj in objects:
        if obj["kind"] == kind and (name is None or obj["metadata"].get("name") == name):
            return obj
    raise AssertionError(f"no {kind} {name or ''} in render")


def embedded_rayjob(objects: list[dict[str, Any]]) -> dict[str, Any]:
    docs = [doc for _, doc in k8s_lint.embedded_objects(objects) if doc["kind"] == "RayJob"]
    assert len(docs) == 1
    return docs[0]


def crd_dir_or_skip(crd_dir: Path, environ: dict[str, str]) -> Path:
    """``crd_dir`` when present; else skip, or fail under ``CI=true``."""
    if crd_dir.is_dir():
        return crd_dir
    reason = (
        f"KubeRay CRDs not found at {crd_dir} "
        "(expected ../shared/kuberay-crds/v1.7.0 or $KUBERAY_CRDS/v1.7.0)"
    )
    if environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true needs them, the schema checks must not be skipped")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def validator() -> k8s_lint.CrdValidator:
    return k8s_lint.CrdValidator(crd_dir_or_skip(CRD_DIR, dict(os.environ)))


def test_missing_crds_skip_locally_and_fail_under_ci(tmp_path):
    missing = tmp_path / "no-crds"
    with pytest.raises(pytest.skip.Exception, match="KubeRay CRDs not found"):
        crd_dir_or_skip(missing, {})
    with pytest.raises(pytest.skip.Exception):
        crd_dir_or_skip(missing, {"CI": "false"})
    with pytest.raises(pytest.fail.Exception, match="CI=true needs them"):
        crd_dir_or_skip(missing, {"CI": "true"})
    assert crd_dir_or_skip(tmp_path, {"CI": "true"}) == tmp_path


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(f"overlays/{request.param}")


# --- rendering ---------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_renders_expected_objects(target):
    objects = render(target)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(
        [
            "ServiceAccount",
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "RayCluster",
            "RayJob",
            "CronJob",
            "ConfigMap",
            "ConfigMap",
        ]
    )
    for obj in objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "reelfarm"


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlays_set_namespace_everywhere(name):
    objects = render(f"overlays/{name}")
    assert {o["metadata"].get("namespace") for o in objects} == {"reelfarm"}
    binding = find(objects, "RoleBinding")
    assert [s["namespace"] for s in binding["subjects"]] == ["reelfarm"]


def test_cpu_demo_has_cpu_image_and_no_gpu_group():
    objects = render("overlays/cpu-demo")
    images = {c["image"] for o in objects for c in k8s_render.iter_containers(o)}
    assert images == {"ghcr.io/reelfarm/reelfarm:0.1.0-cpu", "alpine/k8s:1.33.4"}
    for obj in objects:
        for where, cluster in k8s_lint.cluster_specs(obj):
            names = [g["groupName"] for g in cluster["workerGroupSpecs"]]
            assert names == ["cpu"], where
            assert "nvidia.com/gpu" not in yaml.safe_dump(cluster), where


def test_gpu_overlay_has_gpu_group_that_scales_from_zero():
    objects = render("overlays/gpu")
    images = {c["image"] for o in objects for c in k8s_render.iter_containers(o)}
    assert images == {"ghcr.io/reelfarm/reelfarm:0.1.0-cuda13.0", "alpine/k8s:1.33.4"}
    specs = [spec for obj in objects for _, spec in k8s_lint.cluster_specs(obj)]
    assert len(specs) == 1
    for cluster in specs:
        gpu = next(g for g in cluster["workerGroupSpecs"] if g["groupName"] == "gpu")
        assert gpu["minReplicas"] == 0 and gpu["maxReplicas"] == 8
        container = gpu["template"]["spec"]["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert cluster["enableInTreeAutoscaling"] is True
        assert cluster["autoscalerOptions"]["idleTimeoutSeconds"] > 0
        assert cluster["headGroupSpec"]["rayStartParams"]["num-gpus"] == "0"


def test_render_job_contract():
    objects = render("overlays/gpu")
    spec = find(objects, "RayJob")["spec"]
    assert spec["submissionMode"] == "HTTPMode"
    # On the standing cluster: no cluster spec of its own, nothing that would delete the cluster.
    assert spec["clusterSelector"] == {"ray.io/cluster": "reelfarm"}
    assert find(objects, "RayCluster")["metadata"]["name"] == "reelfarm"
    assert "rayClusterSpec" not in spec and "shutdownAfterJobFinishes" not in spec
    assert spec["activeDeadlineSeconds"] > 0
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["reelfarm", "render"]
    assert argv[2] == "${REELFARM_STORIES}heist.yaml"
    assert argv[argv.index("--store") + 1] == "${REELFARM_STORE}"
    assert argv[argv.index("--out") + 1] == "${REELFARM_OUT}heist"
    settings = find(objects, "ConfigMap", "reelfarm-settings")["data"]
    assert settings["REELFARM_STORIES"].startswith("s3://")
    assert settings["REELFARM_STORE"].startswith("s3://")


@pytest.mark.parametrize("target", TARGETS)
def test_nightly_runs_on_a_stock_kuberay_by_default(target):
    """The default nightly is the CronJob (no feature gate needed), active, and no RayCronJob."""
    objects = render(target)
    assert not [o for o in objects if o["kind"] == "RayCronJob"]
    cron = find(objects, "CronJob", "reelfarm-nightly")
    assert cron["spec"]["suspend"] is False
    assert k8s_lint.check_nightly(objects) == []


def test_raycronjob_component_switches_the_nightly(with_raycronjob):
    objects = with_raycronjob
    cron = find(objects, "RayCronJob", "reelfarm-nightly")
    assert cron["spec"].get("suspend", False) is False
    assert cron["metadata"]["namespace"] == "reelfarm"
    job = cron["spec"]["jobTemplate"]
    assert shlex.split(job["entrypoint"])[:2] == ["reelfarm", "nightly"]
    assert job["submissionMode"] == "HTTPMode"
    assert job["clusterSelector"] == {"ray.io/cluster": "reelfarm"}
    assert "rayClusterSpec" not in job
    assert find(objects, "CronJob", "reelfarm-nightly")["spec"]["suspend"] is True
    assert k8s_lint.lint(objects) == []


def test_nightly_contract():
    objects = render("overlays/gpu")
    config = find(objects, "ConfigMap", "reelfarm-nightly")["data"]
    assert "kubectl create -f /etc/reelfarm/nightly-rayjob.yaml" in config["submit-nightly.sh"]
    nightly = embedded_rayjob(objects)
    assert shlex.split(nightly["spec"]["entrypoint"])[:2] == ["reelfarm", "nightly"]
    assert nightly["spec"]["clusterSelector"] == {"ray.io/cluster": "reelfarm"}
    role = find(objects, "Role")
    rayjob_rules = [r for r in role["rules"] if "rayjobs" in r["resources"]]
    assert {"create", "get"} <= set(rayjob_rules[0]["verbs"])


def test_no_secret_objects_are_committed():
    for target in TARGETS:
        assert not [o for o in render(target) if o["kind"] == "Secret"], target
    for path in K8S.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(doc, dict):
                assert doc.get("kind") != "Secret", path


# --- the renderer itself -----------------------------------------------------------------------


def test_renderer_json6902_test_op_guards_indexes():
    obj = {"spec": {"groups": [{"name": "cpu"}, {"name": "gpu"}]}}
    k8s_render.apply_json6902(
        obj,
        [
            {"op": "test", "path": "/spec/groups/1/name", "value": "gpu"},
            {"op": "remove", "path": "/spec/groups/1"},
            {"op": "add", "path": "/spec/groups/-", "value": {"name": "big"}},
            {"op": "replace", "path": "/spec/groups/0/name", "value": "small"},
        ],
    )
    assert obj == {"spec": {"groups": [{"name": "small"}, {"name": "big"}]}}
    with pytest.raises(k8s_render.KustomizeError, match="test failed"):
        k8s_render.apply_json6902(
            obj, [{"op": "test", "path": "/spec/groups/1/name", "value": "x"}]
        )
    with pytest.raises(k8s_render.KustomizeError, match="out of range"):
        k8s_render.apply_json6902(obj, [{"op": "remove", "path": "/spec/groups/5"}])


def test_renderer_strategic_merge_and_images():
    base = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "spec": {"a": 1, "b": {"c": 2}}}
    merged = k8s_render.strategic_merge(
        base, {"spec": {"a": None, "b": {"d": 3}}}, builtin=False, path=""
    )
    assert merged == {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "spec": {"b": {"c": 2, "d": 3}},
    }
    with pytest.raises(k8s_render.KustomizeError, match="merge keys"):
        k8s_render.strategic_merge({"l": [1]}, {"l": [2]}, builtin=True, path="")
    assert k8s_render.split_image("registry:5000/a/b:1.2@sha256:ab") == (
        "registry:5000/a/b",
        "1.2",
        "sha256:ab",
    )
    assert k8s_render.split_image("registry:5000/a/b") == ("registry:5000/a/b", None, None)


def test_renderer_components_must_be_components(tmp_path):
    (tmp_path / "kustomization.yaml").write_text(f"components: [{K8S / 'base'}]\n")
    with pytest.raises(k8s_render.KustomizeError, match="cannot be used as a component"):
        k8s_render.render(tmp_path)
    with pytest.raises(k8s_render.KustomizeError, match="cannot be used as a resource"):
        k8s_render.render(RAYCRONJOB)


def test_renderer_refuses_unsupported_kustomize_fields(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("namePrefix: x-\nresources: []\n")
    with pytest.raises(k8s_render.KustomizeError, match="namePrefix"):
        k8s_render.render(tmp_path)


def test_renderer_overlay_patches_and_generators(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "sa.yaml").write_text("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa}\n")
    (base / "kustomization.yaml").write_text(
        "resources: [sa.yaml]\n"
        "configMapGenerator:\n- name: settings\n  literals: [A=1, B=2]\n"
        "generatorOptions: {disableNameSuffixHash: true}\n"
    )
    over = tmp_path / "over"
    over.mkdir()
    (over / "kustomization.yaml").write_text(
        "namespace: ns\nresources: [../base]\n"
        "configMapGenerator:\n- name: settings\n  behavior: merge\n  literals: [B=3]\n"
        "generatorOptions: {disableNameSuffixHash: true}\n"
        "patches:\n- patch: |-\n    apiVersion: v1\n    kind: ServiceAccount\n"
        "    metadata: {name: sa, annotations: {role: r}}\n"
    )
    objects = k8s_render.render(over)
    sa = find(objects, "ServiceAccount")
    assert sa["metadata"] == {"name": "sa", "annotations": {"role": "r"}, "namespace": "ns"}
    assert find(objects, "ConfigMap")["data"] == {"A": "1", "B": "3"}


def test_render_cli_prints_yaml(capsys):
    assert k8s_render.main([str(K8S / "overlays" / "cpu-demo")]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert {d["kind"] for d in docs} >= {"RayCluster", "RayJob", "CronJob"}
    assert k8s_render.main([str(K8S / "no-such-overlay")]) == 1


# --- schema and lint on the real manifests -----------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_lint_is_clean(target, validator):
    objects = render(target)
    assert k8s_lint.lint(objects, validator) == []


def test_every_ray_object_is_schema_checked(overlay, validator):
    _, objects = overlay
    ray_objects = [o for o in objects if o["apiVersion"].startswith("ray.io/")]
    ray_objects.append(embedded_rayjob(objects))
    assert sorted(o["kind"] for o in ray_objects) == ["RayCluster", "RayJob", "RayJob"]
    for obj in ray_objects:
        assert validator.validate(obj) == []


def test_raycronjob_component_is_schema_checked(with_raycronjob, validator):
    cron = find(with_raycronjob, "RayCronJob")
    assert validator.validate(cron) == []
    assert k8s_lint.lint(with_raycronjob, validator) == []


def test_lint_without_crds_is_clean(overlay):
    _, objects = overlay
    assert k8s_lint.lint(objects) == []


# --- negative tests: a broken manifest must be reported ------------------------------------------


def mutated(objects, kind, mutate, name=None):
    objects = copy.deepcopy(objects)
    mutate(find(objects, kind, name))
    return objects


def gpu_cluster(obj):
    return obj["spec"]


def gpu_group(cluster):
    return next(g for g in cluster["workerGroupSpecs"] if g["groupName"] == "gpu")


@pytest.mark.parametrize(
    ("kind", "mutate", "expected"),
    [
        (
            "RayCluster",
            lambda o: o["spec"].update(enableGPUs=True),
            "reelfarm: spec: additionalProperties: unknown fields ['enableGPUs']",
        ),
        (
            "RayCluster",
            lambda o: o["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0].update(
                imagePolicy="x"
            ),
            "spec/headGroupSpec/template/spec/containers/0: additionalProperties: "
            "unknown fields ['imagePolicy']",
        ),
        (
            "RayJob",
            lambda o: o["spec"].update(ttlSecondsAfterFinished="1h"),
            "spec/ttlSecondsAfterFinished: type: ",
        ),
        (
            "RayCronJob",
            lambda o: o["spec"]["jobTemplate"].update(submitMode="HTTPMode"),
            "spec/jobTemplate: additionalProperties: unknown fields ['submitMode']",
        ),
        (
            "RayCluster",
            lambda o: o["spec"]["autoscalerOptions"].update(version="v3"),
            "spec/autoscalerOptions/version: enum: ",
        ),
    ],
)
def test_schema_rejects_broken_objects(validator, with_raycronjob, kind, mutate, expected):
    objects = mutated(with_raycronjob, kind, mutate)
    problems = validator.validate(find(objects, kind))
    assert any(expected in p for p in problems), problems


def test_schema_rejects_unknown_field_in_embedded_rayjob(validator):
    objects = copy.deepcopy(render("overlays/gpu"))
    config = find(objects, "ConfigMap", "reelfarm-nightly")
    doc = yaml.safe_load(config["data"]["nightly-rayjob.yaml"])
    doc["spec"]["clusterSelectr"] = {"ray.io/cluster": "reelfarm"}
    config["data"]["nightly-rayjob.yaml"] = yaml.safe_dump(doc)
    problems = k8s_lint.lint(objects, validator)
    expected = "spec: additionalProperties: unknown fields ['clusterSelectr']"
    assert any(expected in p for p in problems), problems


def test_strict_schema_keeps_free_form_maps_open():
    schema = k8s_lint.strict_schema(
        {
            "type": "object",
            "properties": {
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "raw": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "properties": {"a": {"type": "string"}},
                },
                "opt": {"type": "string", "nullable": True},
            },
        }
    )
    assert schema["additionalProperties"] is False
    assert schema["properties"]["labels"]["additionalProperties"] == {"type": "string"}
    assert "additionalProperties" not in schema["properties"]["raw"]
    assert schema["properties"]["opt"]["type"] == ["string", "null"]


def _drop_gpu_limit(obj):
    limits = gpu_group(gpu_cluster(obj))["template"]["spec"]["containers"][0]["resources"]
    del limits["limits"]["nvidia.com/gpu"]
    del limits["requests"]["nvidia.com/gpu"]


def _head_gets_gpus(obj):
    gpu_cluster(obj)["headGroupSpec"]["rayStartParams"]["num-gpus"] = "1"


def _latest_image(obj):
    gpu_cluster(obj)["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["image"] = (
        "ghcr.io/reelfarm/reelfarm:latest"
    )


def _untagged_image(obj):
    gpu_cluster(obj)["headGroupSpec"]["template"]["spec"]["containers"][0]["image"] = (
        "ghcr.io/reelfarm/reelfarm"
    )


def _no_requests(obj):
    container = gpu_group(gpu_cluster(obj))["template"]["spec"]["containers"][0]
    del container["resources"]["requests"]


def _plaintext_token(obj):
    container = gpu_cluster(obj)["headGroupSpec"]["template"]["spec"]["containers"][0]
    for env in container["env"]:
        if env["name"] == "RAY_AUTH_TOKEN":
            env.pop("valueFrom")
            env["value"] = "0123456789abcdef"


def _aws_key_in_settings(obj):
    obj["data"]["AWS_ACCESS_KEY_ID"] = "AKIAIOSFODNN7EXAMPLE"


def _auth_disabled(obj):
    gpu_cluster(obj)["authOptions"]["mode"] = "disabled"


def _gpu_min_replicas(obj):
    gpu_group(gpu_cluster(obj))["minReplicas"] = 1
    gpu_group(gpu_cluster(obj))["replicas"] = 1


def _no_tolerations(obj):
    del gpu_group(gpu_cluster(obj))["template"]["spec"]["tolerations"]


def _autoscaling_off(obj):
    gpu_cluster(obj)["enableInTreeAutoscaling"] = False


def _ttl_without_shutdown(obj):
    obj["spec"]["ttlSecondsAfterFinished"] = 3600


def _shutdown_standing_cluster(obj):
    obj["spec"]["shutdownAfterJobFinishes"] = True


def _own_cluster_and_selector(obj):
    obj["spec"]["rayClusterSpec"] = {"headGroupSpec": {}}


def _selector_names_no_cluster(obj):
    obj["spec"]["clusterSelector"] = {"ray.io/cluster": "elsewhere"}


def _cron_selector_names_no_cluster(obj):
    obj["spec"]["jobTemplate"]["clusterSelector"] = {"ray.io/cluster": "elsewhere"}


def _bad_mode(obj):
    obj["spec"]["submissionMode"] = "HttpMode"


def _http_with_submitter(obj):
    obj["spec"]["submitterConfig"] = {"backoffLimit": 2}


def _no_entrypoint(obj):
    obj["spec"]["entrypoint"] = ""


def _wrong_command(obj):
    obj["spec"]["entrypoint"] = "python render.py heist.yaml --store s3://a/b --out s3://a/c"


def _undefined_variable(obj):
    obj["spec"]["entrypoint"] = obj["spec"]["entrypoint"].replace("REELFARM_STORE", "STORE_URL")


def _both_nightlies(obj):
    obj["spec"]["suspend"] = False


def _no_nightly(obj):
    obj["spec"]["suspend"] = True


def _bad_schedule(obj):
    obj["spec"]["schedule"] = "nightly"


def _wrong_secret(obj):
    gpu_cluster(obj)["authOptions"]["secretName"] = "someone-elses-token"


@pytest.mark.parametrize(
    ("kind", "mutate", "expected"),
    [
        ("RayCluster", _drop_gpu_limit, "no nvidia.com/gpu limit"),
        ("RayCluster", _head_gets_gpus, 'num-gpus: "0"'),
        ("RayCluster", _latest_image, "not pinned"),
        ("RayCluster", _untagged_image, "not pinned"),
        ("RayCluster", _no_requests, "resources.requests"),
        ("RayCluster", _plaintext_token, "env RAY_AUTH_TOKEN is a literal"),
        ("RayCluster", _plaintext_token, "RAY_AUTH_TOKEN must come from secret"),
        ("ConfigMap", _aws_key_in_settings, "an AWS access key id"),
        ("ConfigMap", _aws_key_in_settings, "looks like a credential"),
        ("RayCluster", _auth_disabled, "authOptions.mode must be token"),
        ("RayCluster", _wrong_secret, "Secret someone-elses-token is neither rendered"),
        ("RayCluster", _gpu_min_replicas, "minReplicas must be 0"),
        ("RayCluster", _no_tolerations, "no tolerations"),
        ("RayCluster", _autoscaling_off, "enableInTreeAutoscaling is off"),
        ("RayJob", _ttl_without_shutdown, "ttlSecondsAfterFinished needs shutdownAfterJobFinishes"),
        ("RayJob", _shutdown_standing_cluster, "shutdownAfterJobFinishes with clusterSelector"),
        (
            "RayJob",
            _own_cluster_and_selector,
            "set exactly one of rayClusterSpec and clusterSelector",
        ),
        ("RayJob", _selector_names_no_cluster, "clusterSelector names no RayCluster: elsewhere"),
        (
            "RayCronJob",
            _cron_selector_names_no_cluster,
            "clusterSelector names no RayCluster: elsewhere",
        ),
        ("RayJob", _bad_mode, "submissionMode 'HttpMode' is not one of"),
        ("RayJob", _http_with_submitter, "HTTPMode has no submitter pod"),
        ("RayJob", _no_entrypoint, "no entrypoint"),
        ("RayJob", _wrong_command, "must run `reelfarm render|nightly`"),
        ("RayJob", _undefined_variable, "$STORE_URL, not in reelfarm-settings"),
        ("CronJob", _both_nightlies, "exactly one nightly scheduler"),
        ("CronJob", _no_nightly, "exactly one nightly scheduler"),
        ("CronJob", _bad_schedule, "not a five-field cron"),
    ],
)
def test_lint_reports_broken_manifest(with_raycronjob, kind, mutate, expected):
    name = "reelfarm-settings" if kind == "ConfigMap" else None
    objects = render("overlays/gpu")
    if kind == "RayCronJob" or mutate is _both_nightlies:
        objects = with_raycronjob
    objects = mutated(objects, kind, mutate, name)
    problems = k8s_lint.lint(objects)
    assert any(expected in p for p in problems), problems


def test_lint_reports_committed_secret():
    objects = copy.deepcopy(render("overlays/cpu-demo"))
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "reelfarm-s3"},
        "stringData": {"AWS_ACCESS_KEY_ID": "<your key id>", "AWS_SECRET_ACCESS_KEY": "hunter2"},
    }
    problems = k8s_lint.check_secrets([*objects, secret])
    assert problems == [
        "Secret/reelfarm-s3: stringData.AWS_SECRET_ACCESS_KEY holds a value, not a placeholder"
    ]


def test_lint_reports_broken_rbac():
    objects = mutated(
        render("overlays/gpu"), "RoleBinding", lambda o: o["subjects"][0].update(name="nobody")
    )
    assert any("subject nobody missing" in p for p in k8s_lint.lint(objects))
    objects = mutated(render("overlays/gpu"), "Role", lambda o: o["rules"][0].update(verbs=["*"]))
    assert any("wildcard rule" in p for p in k8s_lint.lint(objects))


def test_lint_reports_nightly_rayjob_pointing_at_missing_cluster():
    objects = copy.deepcopy(render("overlays/gpu"))
    config = find(objects, "ConfigMap", "reelfarm-nightly")
    config["data"]["nightly-rayjob.yaml"] = config["data"]["nightly-rayjob.yaml"].replace(
        "ray.io/cluster: reelfarm", "ray.io/cluster: elsewhere"
    )
    assert any("clusterSelector names no RayCluster" in p for p in k8s_lint.lint(objects))


# --- the documents ------------------------------------------------------------------------------


def _policy_actions(markdown: Path) -> set[str]:
    text = markdown.read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    policies = [json.loads(b) for b in blocks if '"Statement"' in b]
    assert policies, f"no IAM policy in {markdown}"
    return {a for p in policies for s in p["Statement"] for a in s["Action"]}


def test_k8s_iam_policy_grants_what_docs_s3_needs():
    needed = _policy_actions(REPO / "docs" / "s3.md")
    assert {"s3:DeleteObject", "s3:AbortMultipartUpload"} <= needed
    assert needed <= _policy_actions(K8S / "README.md")


def test_readme_kubernetes_commands_use_the_overlays_namespace():
    """Every Secret the READMEs create lands in the overlays' namespace, which is created first."""
    namespaces = {o["metadata"]["namespace"] for n in OVERLAYS for o in render(f"overlays/{n}")}
    assert namespaces == {"reelfarm"}
    for doc in (REPO / "README.md", K8S / "README.md"):
        text = doc.read_text(encoding="utf-8")
        commands = [c for c in re.findall(r"```(?:sh|bash)\n(.*?)```", text, re.S)]
        script = "\n".join(commands).replace("\\\n", " ")
        creates = [line for line in script.splitlines() if "create secret" in line]
        assert creates, doc
        for line in creates:
            assert "-n reelfarm" in line or "--namespace reelfarm" in line, (doc, line)
        first_secret = script.index("create secret")
        assert "kubectl create namespace reelfarm" in script[:first_secret], doc
