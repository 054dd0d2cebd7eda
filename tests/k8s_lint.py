"""Offline checks for rendered ``k8s/`` manifests.

Two layers:

- :class:`CrdValidator` validates KubeRay objects against the ``openAPIV3Schema`` of the CRDs,
  made strict: every schema node that lists ``properties`` and neither sets
  ``additionalProperties`` nor ``x-kubernetes-preserve-unknown-fields`` denies unknown fields, as
  the API server's pruning would silently drop them.
- :func:`lint` checks what the schemas do not say: submission modes, TTL only with shutdown, GPU
  limits on GPU groups, a head without GPUs, autoscaling, token auth from a Secret, images pinned by
  tag, no plaintext secrets, resource requests on every container, references that resolve (a
  job's ``clusterSelector`` names a rendered RayCluster), and one active nightly scheduler.

Every check returns a list of problem strings (empty when clean), so a test can assert on both a
clean manifest and a broken one.
"""

from __future__ import annotations

import copy
import re
import shlex
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from k8s_render import iter_containers, split_image

# The CRDs are large; libyaml's safe loader reads them ten times faster where it is built in.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

CRD_FILES = {
    "RayCluster": "ray.io_rayclusters.yaml",
    "RayJob": "ray.io_rayjobs.yaml",
    "RayCronJob": "ray.io_raycronjobs.yaml",
}

# KubeRay v1.7 RayJob submission modes.
SUBMISSION_MODES = {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}

# Secrets the manifests read but never contain; k8s/README.md says how to create them.
EXTERNAL_SECRETS = {"reelfarm-s3", "reelfarm-ray-auth"}
RAY_AUTH_SECRET = "reelfarm-ray-auth"

SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL", re.I)
PLACEHOLDER = re.compile(r"^(<[^<>]+>|\$\{[A-Z0-9_]+\}|CHANGE[-_]?ME)$")
LEAKY_VALUES = [
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), "an AWS access key id"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@"), "a URL with a password"),
    (re.compile(r"(?i)aws_secret_access_key\s*[=:]\s*\S"), "an AWS secret access key"),
]
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
CRON_FIELD = re.compile(r"^[0-9*/,\-A-Za-z?]+$")

CORE_KINDS: dict[str, dict[str, Any]] = {
    "ServiceAccount": {
        "apiVersion": "v1",
        "fields": {"metadata", "automountServiceAccountToken", "imagePullSecrets", "secrets"},
    },
    "ConfigMap": {"apiVersion": "v1", "fields": {"metadata", "data", "binaryData", "immutable"}},
    "Secret": {
        "apiVersion": "v1",
        "fields": {"metadata", "data", "stringData", "type", "immutable"},
    },
    "Role": {"apiVersion": "rbac.authorization.k8s.io/v1", "fields": {"metadata", "rules"}},
    "RoleBinding": {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "fields": {"metadata", "roleRef", "subjects"},
    },
    "CronJob": {"apiVersion": "batch/v1", "fields": {"metadata", "spec"}},
}
CRONJOB_SPEC_FIELDS = {
    "schedule",
    "timeZone",
    "suspend",
    "concurrencyPolicy",
    "startingDeadlineSeconds",
    "successfulJobsHistoryLimit",
    "failedJobsHistoryLimit",
    "jobTemplate",
}
JOB_SPEC_FIELDS = {
    "backoffLimit",
    "activeDeadlineSeconds",
    "ttlSecondsAfterFinished",
    "template",
    "completions",
    "parallelism",
    "podFailurePolicy",
    "backoffLimitPerIndex",
    "completionMode",
    "suspend",
}


# --- CRD schemas -------------------------------------------------------------------------------


def strict_schema(schema: Any) -> Any:
    """A copy of an OpenAPI v3 CRD schema that denies unknown fields and allows ``nullable``."""
    schema = copy.deepcopy(schema)

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            if node.get("nullable") and isinstance(node.get("type"), str):
                node["type"] = [node["type"], "null"]
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    return schema


class CrdValidator:
    """Validates ``ray.io`` objects against the CRD schemas found in ``crd_dir``."""

    def __init__(self, crd_dir: Path):
        self.validators: dict[tuple[str, str], jsonschema.Draft7Validator] = {}
        for kind, filename in CRD_FILES.items():
            with (crd_dir / filename).open(encoding="utf-8") as fh:
                crd = yaml.load(fh, Loader=SAFE_LOADER)
            if crd["spec"]["names"]["kind"] != kind:
                raise ValueError(f"{filename} defines {crd['spec']['names']['kind']}, not {kind}")
            group = crd["spec"]["group"]
            for version in crd["spec"]["versions"]:
                if not version.get("served", False):
                    continue
                schema = strict_schema(version["schema"]["openAPIV3Schema"])
                api_version = f"{group}/{version['name']}"
                self.validators[(api_version, kind)] = jsonschema.Draft7Validator(schema)

    def kinds(self) -> set[str]:
        return {kind for _, kind in self.validators}

    def validate(self, obj: dict[str, Any]) -> list[str]:
        key = (obj.get("apiVersion", ""), obj.get("kind", ""))
        validator = self.validators.get(key)
        if validator is None:
            return [f"{_name(obj)}: no CRD schema serves {key[0]} {key[1]}"]
        problems = []
        for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            # "<object>: <path>: <schema keyword>: <detail>"; unknown fields are named here, the
            # other details are jsonschema's own words, for people to read.
            detail = error.message
            if error.validator == "additionalProperties" and isinstance(error.instance, dict):
                known = set(error.schema.get("properties") or {})
                detail = f"unknown fields {sorted(set(error.instance) - known)}"
            problems.append(f"{_name(obj)}: {where}: {error.validator}: {detail}")
        return problems


# --- helpers -----------------------------------------------------------------------------------


def _name(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind')}/{meta.get('name') or meta.get('generateName') or '?'}"


def cluster_specs(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, RayClusterSpec) pairs inside a RayCluster, RayJob or RayCronJob."""
    spec = obj.get("spec") or {}
    kind = obj.get("kind")
    if kind == "RayCluster":
        yield f"{_name(obj)} spec", spec
    elif kind == "RayJob" and spec.get("rayClusterSpec"):
        yield f"{_name(obj)} spec.rayClusterSpec", spec["rayClusterSpec"]
    elif kind == "RayCronJob":
        template = spec.get("jobTemplate") or {}
        if template.get("rayClusterSpec"):
            yield f"{_name(obj)} spec.jobTemplate.rayClusterSpec", template["rayClusterSpec"]


def job_specs(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, RayJobSpec) pairs of a RayJob or a RayCronJob's job template."""
    if obj.get("kind") == "RayJob":
        yield _name(obj), obj.get("spec") or {}
    elif obj.get("kind") == "RayCronJob":
        yield f"{_name(obj)} jobTemplate", (obj.get("spec") or {}).get("jobTemplate") or {}


def groups(cluster: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(name, group spec, is_head) for the head and every worker group."""
    yield "head", cluster.get("headGroupSpec") or {}, True
    for group in cluster.get("workerGroupSpecs") or []:
        yield str(group.get("groupName")), group, False


def _pod_spec(group: dict[str, Any]) -> dict[str, Any]:
    return (group.get("template") or {}).get("spec") or {}


def _gpu_count(resources: dict[str, Any], section: str) -> int:
    value = (resources.get(section) or {}).get("nvidia.com/gpu")
    if value is None:
        return 0
    try:
        return int(str(value))
    except ValueError:
        return -1


def embedded_objects(objects: Iterable[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Kubernetes objects carried as YAML inside ConfigMaps (the nightly CronJob's RayJob)."""
    for obj in objects:
        if obj.get("kind") != "ConfigMap":
            continue
        for key, value in (obj.get("data") or {}).items():
            if not key.endswith((".yaml", ".yml")):
                continue
            for doc in yaml.safe_load_all(value):
                if isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc:
                    yield f"{_name(obj)} data.{key}", doc


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


# --- semantic checks ---------------------------------------------------------------------------


def check_ray_jobs(obj: dict[str, Any]) -> list[str]:
    problems = []
    for where, spec in job_specs(obj):
        mode = spec.get("submissionMode", "K8sJobMode")
        if mode not in SUBMISSION_MODES:
            problems.append(
                f"{where}: submissionMode {mode!r} is not one of {sorted(SUBMISSION_MODES)}"
            )
        shutdown = spec.get("shutdownAfterJobFinishes", False)
        ttl = spec.get("ttlSecondsAfterFinished")
        if ttl is not None and not shutdown:
            problems.append(f"{where}: ttlSecondsAfterFinished needs shutdownAfterJobFinishes")
        if ttl is not None and ttl < 0:
            problems.append(f"{where}: ttlSecondsAfterFinished must not be negative")
        has_cluster = bool(spec.get("rayClusterSpec"))
        has_selector = bool(spec.get("clusterSelector"))
        if has_cluster == has_selector:
            problems.append(f"{where}: set exactly one of rayClusterSpec and clusterSelector")
        if has_selector and shutdown:
            problems.append(f"{where}: shutdownAfterJobFinishes with clusterSelector")
        if mode != "InteractiveMode" and not str(spec.get("entrypoint") or "").strip():
            problems.append(f"{where}: no entrypoint")
        if mode == "HTTPMode" and (spec.get("submitterPodTemplate") or spec.get("submitterConfig")):
            problems.append(f"{where}: HTTPMode has no submitter pod to configure")
        deadline = spec.get("activeDeadlineSeconds")
        if deadline is not None and deadline <= 0:
            problems.append(f"{where}: activeDeadlineSeconds must be positive")
        if spec.get("backoffLimit", 0) < 0:
            problems.append(f"{where}: backoffLimit must not be negative")
    return problems


def check_clusters(obj: dict[str, Any]) -> list[str]:
    problems = []
    for where, cluster in cluster_specs(obj):
        names = [name for name, _, head in groups(cluster) if not head]
        if len(names) != len(set(names)):
            problems.append(f"{where}: worker group names are not unique: {names}")
        head = cluster.get("headGroupSpec") or {}
        if str((head.get("rayStartParams") or {}).get("num-gpus")) != "0":
            problems.append(f'{where}: head rayStartParams must set num-gpus: "0"')
        for container in _pod_spec(head).get("containers") or []:
            resources = container.get("resources") or {}
            if _gpu_count(resources, "limits") or _gpu_count(resources, "requests"):
                problems.append(f"{where}: head container {container.get('name')} asks for GPUs")
        for name, group, is_head in groups(cluster):
            if is_head:
                continue
            lo, hi = group.get("minReplicas", 0), group.get("maxReplicas")
            replicas = group.get("replicas", lo)
            if hi is None or not (0 <= lo <= replicas <= hi):
                problems.append(
                    f"{where}: group {name}: need 0 <= minReplicas <= replicas <= maxReplicas"
                )
            problems.extend(_check_gpu_group(where, name, group))
        if not cluster.get("enableInTreeAutoscaling"):
            problems.append(f"{where}: enableInTreeAutoscaling is off (GPU nodes never scale)")
        else:
            options = cluster.get("autoscalerOptions") or {}
            idle = options.get("idleTimeoutSeconds")
            if not isinstance(idle, int) or idle <= 0:
                problems.append(f"{where}: autoscalerOptions.idleTimeoutSeconds must be set > 0")
            requests = (options.get("resources") or {}).get("requests") or {}
            if not {"cpu", "memory"} <= set(requests):
                problems.append(f"{where}: autoscaler sidecar has no cpu/memory requests")
        problems.extend(_check_auth(where, cluster))
    return problems


def _is_gpu_group(name: str, group: dict[str, Any]) -> bool:
    if "gpu" in name.lower():
        return True
    for container in _pod_spec(group).get("containers") or []:
        resources = container.get("resources") or {}
        if "nvidia.com/gpu" in (resources.get("limits") or {}) or "nvidia.com/gpu" in (
            resources.get("requests") or {}
        ):
            return True
    return False


def _check_gpu_group(where: str, name: str, group: dict[str, Any]) -> list[str]:
    if not _is_gpu_group(name, group):
        return []
    problems = []
    containers = _pod_spec(group).get("containers") or []
    ray = containers[0] if containers else {}
    resources = ray.get("resources") or {}
    limit = _gpu_count(resources, "limits")
    if limit < 1:
        problems.append(f"{where}: GPU group {name}: no nvidia.com/gpu limit on its Ray container")
    request = (resources.get("requests") or {}).get("nvidia.com/gpu")
    if request is not None and _gpu_count(resources, "requests") != limit:
        problems.append(f"{where}: GPU group {name}: nvidia.com/gpu request differs from limit")
    if group.get("minReplicas", 0) != 0:
        problems.append(f"{where}: GPU group {name}: minReplicas must be 0 to scale to zero")
    pod = _pod_spec(group)
    if not pod.get("nodeSelector") and not pod.get("affinity"):
        problems.append(f"{where}: GPU group {name}: no nodeSelector or affinity for GPU nodes")
    if not pod.get("tolerations"):
        problems.append(f"{where}: GPU group {name}: no tolerations for tainted GPU nodes")
    return problems


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e.get("name"): e for e in container.get("env") or []}


def _check_auth(where: str, cluster: dict[str, Any]) -> list[str]:
    problems = []
    auth = cluster.get("authOptions") or {}
    if auth.get("mode") != "token":
        problems.append(f"{where}: authOptions.mode must be token")
    if auth.get("secretName") != RAY_AUTH_SECRET:
        problems.append(f"{where}: authOptions.secretName must be {RAY_AUTH_SECRET}")
    for name, group, _ in groups(cluster):
        for container in (_pod_spec(group).get("containers") or [])[:1]:
            env = _env(container)
            mode = env.get("RAY_AUTH_MODE") or {}
            if mode.get("value") != "token":
                problems.append(f"{where}: group {name}: RAY_AUTH_MODE must be token")
            token = env.get("RAY_AUTH_TOKEN") or {}
            ref = (token.get("valueFrom") or {}).get("secretKeyRef") or {}
            if ref.get("name") != RAY_AUTH_SECRET or ref.get("key") != "auth_token":
                problems.append(
                    f"{where}: group {name}: RAY_AUTH_TOKEN must come from secret "
                    f"{RAY_AUTH_SECRET} key auth_token"
                )
    return problems


def _all_containers(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from iter_containers(obj)


def check_containers(obj: dict[str, Any]) -> list[str]:
    problems = []
    for container in _all_containers(obj):
        label = f"{_name(obj)} container {container.get('name')}"
        image = container.get("image")
        if not image:
            problems.append(f"{label}: no image")
        else:
            _, tag, digest = split_image(image)
            if digest is None and (tag is None or tag == "latest"):
                problems.append(f"{label}: image {image} is not pinned by a tag (or digest)")
        requests = (container.get("resources") or {}).get("requests") or {}
        if not {"cpu", "memory"} <= set(requests):
            problems.append(f"{label}: resources.requests must set cpu and memory")
        for env in container.get("env") or []:
            if SECRET_NAME.search(str(env.get("name"))) and "value" in env:
                problems.append(f"{label}: env {env.get('name')} is a literal; use a secretKeyRef")
    return problems


def check_secrets(objects: list[dict[str, Any]]) -> list[str]:
    problems = []
    for obj in objects:
        if obj.get("kind") == "Secret":
            for field in ("data", "stringData"):
                for key, value in (obj.get(field) or {}).items():
                    if not PLACEHOLDER.match(str(value)):
                        problems.append(
                            f"{_name(obj)}: {field}.{key} holds a value, not a placeholder"
                        )
        if obj.get("kind") == "ConfigMap":
            for key in obj.get("data") or {}:
                if SECRET_NAME.search(key):
                    problems.append(f"{_name(obj)}: data.{key} looks like a credential")
        for text in _strings(obj):
            for pattern, what in LEAKY_VALUES:
                if pattern.search(text):
                    problems.append(f"{_name(obj)}: contains {what}")
    return problems


# (referenced kind, field holding the reference) -> the key of the name in that field
REFERENCE_FIELDS = {
    ("ConfigMap", "configMapRef"): "name",
    ("ConfigMap", "configMapKeyRef"): "name",
    ("ConfigMap", "configMap"): "name",
    ("Secret", "secretRef"): "name",
    ("Secret", "secretKeyRef"): "name",
    ("Secret", "secret"): "secretName",
    ("Secret", "authOptions"): "secretName",
}


def _referenced(obj: dict[str, Any], kind: str) -> Iterator[str]:
    """Names of ConfigMaps or Secrets an object's pods refer to."""

    def visit(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                ref_key = (kind, key) if isinstance(value, dict) else None
                if ref_key in REFERENCE_FIELDS:
                    name = value.get(REFERENCE_FIELDS[ref_key])
                    if name:
                        yield name
                else:
                    yield from visit(value)
        elif isinstance(node, list):
            for value in node:
                yield from visit(value)

    yield from visit(obj)


def check_references(objects: list[dict[str, Any]]) -> list[str]:
    problems = []
    present = {(o.get("kind"), (o.get("metadata") or {}).get("name")) for o in objects}
    clusters = {name for kind, name in present if kind == "RayCluster"}
    for obj in objects:
        for name in _referenced(obj, "ConfigMap"):
            if ("ConfigMap", name) not in present:
                problems.append(f"{_name(obj)}: ConfigMap {name} is not in the render")
        for name in _referenced(obj, "Secret"):
            if ("Secret", name) not in present and name not in EXTERNAL_SECRETS:
                problems.append(f"{_name(obj)}: Secret {name} is neither rendered nor documented")
        for account in _service_accounts(obj):
            if ("ServiceAccount", account) not in present:
                problems.append(f"{_name(obj)}: ServiceAccount {account} is not in the render")
        if obj.get("kind") == "RoleBinding":
            ref = obj.get("roleRef") or {}
            if (ref.get("kind"), ref.get("name")) not in present:
                problems.append(f"{_name(obj)}: roleRef {ref.get('name')} is not in the render")
            namespace = (obj.get("metadata") or {}).get("namespace")
            for subject in obj.get("subjects") or []:
                if subject.get("kind") == "ServiceAccount":
                    if ("ServiceAccount", subject.get("name")) not in present:
                        problems.append(f"{_name(obj)}: subject {subject.get('name')} missing")
                    if namespace and subject.get("namespace") != namespace:
                        problems.append(f"{_name(obj)}: subject not in namespace {namespace}")
    everything = [(_name(o), o) for o in objects] + list(embedded_objects(objects))
    for where, obj in everything:
        for _, spec in job_specs(obj):
            selector = (spec.get("clusterSelector") or {}).get("ray.io/cluster")
            if selector is not None and selector not in clusters:
                problems.append(f"{where}: clusterSelector names no RayCluster: {selector}")
    return problems


def _service_accounts(obj: dict[str, Any]) -> Iterator[str]:
    def visit(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("serviceAccountName"), str):
                yield node["serviceAccountName"]
            for value in node.values():
                yield from visit(value)
        elif isinstance(node, list):
            for value in node:
                yield from visit(value)

    yield from visit(obj)


def check_core(obj: dict[str, Any]) -> list[str]:
    """Structure of the built-in kinds the manifests use (no API server schemas offline)."""
    kind = obj.get("kind")
    if kind not in CORE_KINDS:
        return []
    rules = CORE_KINDS[kind]
    problems = []
    if obj.get("apiVersion") != rules["apiVersion"]:
        problems.append(f"{_name(obj)}: apiVersion must be {rules['apiVersion']}")
    unknown = set(obj) - rules["fields"] - {"apiVersion", "kind"}
    if unknown:
        problems.append(f"{_name(obj)}: unknown fields {sorted(unknown)}")
    name = (obj.get("metadata") or {}).get("name", "")
    if not DNS1123.match(name) or len(name) > 253:
        problems.append(f"{_name(obj)}: metadata.name {name!r} is not a DNS-1123 name")
    for key, value in ((obj.get("metadata") or {}).get("labels") or {}).items():
        if not isinstance(value, str):
            problems.append(f"{_name(obj)}: label {key} must be a string")
    if kind == "Role":
        for rule in obj.get("rules") or []:
            if not rule.get("verbs") or "apiGroups" not in rule or not rule.get("resources"):
                problems.append(f"{_name(obj)}: a rule needs apiGroups, resources and verbs")
            if "*" in rule.get("verbs", []) or "*" in rule.get("resources", []):
                problems.append(f"{_name(obj)}: wildcard rule")
    if kind == "ConfigMap":
        for key, value in (obj.get("data") or {}).items():
            if not isinstance(value, str):
                problems.append(f"{_name(obj)}: data.{key} must be a string")
    if kind == "CronJob":
        problems.extend(_check_cronjob(obj))
    return problems


def _check_cronjob(obj: dict[str, Any]) -> list[str]:
    problems = []
    spec = obj.get("spec") or {}
    unknown = set(spec) - CRONJOB_SPEC_FIELDS
    if unknown:
        problems.append(f"{_name(obj)}: unknown spec fields {sorted(unknown)}")
    problems.extend(check_schedule(_name(obj), spec.get("schedule")))
    if spec.get("concurrencyPolicy", "Allow") not in ("Allow", "Forbid", "Replace"):
        problems.append(f"{_name(obj)}: bad concurrencyPolicy")
    job = (spec.get("jobTemplate") or {}).get("spec") or {}
    unknown = set(job) - JOB_SPEC_FIELDS
    if unknown:
        problems.append(f"{_name(obj)}: unknown job spec fields {sorted(unknown)}")
    pod = (job.get("template") or {}).get("spec") or {}
    if pod.get("restartPolicy") not in ("Never", "OnFailure"):
        problems.append(f"{_name(obj)}: a Job pod needs restartPolicy Never or OnFailure")
    if not pod.get("containers"):
        problems.append(f"{_name(obj)}: no containers")
    return problems


def check_schedule(where: str, schedule: Any) -> list[str]:
    fields = str(schedule or "").split()
    if len(fields) != 5 or not all(CRON_FIELD.match(f) for f in fields):
        return [f"{where}: schedule {schedule!r} is not a five-field cron expression"]
    return []


def check_nightly(objects: list[dict[str, Any]]) -> list[str]:
    """Exactly one nightly scheduler runs; both run ``reelfarm nightly``."""
    problems = []
    active = []
    for obj in objects:
        if obj.get("kind") == "RayCronJob":
            problems.extend(check_schedule(_name(obj), (obj.get("spec") or {}).get("schedule")))
            if not (obj.get("spec") or {}).get("suspend", False):
                active.append(_name(obj))
        is_nightly_cron = obj.get("kind") == "CronJob" and "nightly" in obj["metadata"]["name"]
        if is_nightly_cron and not (obj.get("spec") or {}).get("suspend", False):
            active.append(_name(obj))
    if len(active) != 1:
        problems.append(f"exactly one nightly scheduler must be active, found {active}")
    return problems


def entrypoint_argv(spec: dict[str, Any]) -> list[str]:
    return shlex.split(str(spec.get("entrypoint") or ""))


def check_entrypoints(objects: list[dict[str, Any]]) -> list[str]:
    """Entry points call the reelfarm CLI with S3 locations from the settings ConfigMap."""
    problems = []
    settings: set[str] = set()
    for obj in objects:
        if obj.get("kind") == "ConfigMap" and obj["metadata"]["name"] == "reelfarm-settings":
            settings = set(obj.get("data") or {})
    everything = list(objects) + [doc for _, doc in embedded_objects(objects)]
    for obj in everything:
        for where, spec in job_specs(obj):
            argv = entrypoint_argv(spec)
            if argv[:1] != ["reelfarm"] or len(argv) < 3 or argv[1] not in ("render", "nightly"):
                problems.append(f"{where}: entrypoint must run `reelfarm render|nightly`: {argv}")
                continue
            for flag in ("--store", "--out"):
                if flag not in argv:
                    problems.append(f"{where}: entrypoint has no {flag}")
            for var in re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", str(spec.get("entrypoint"))):
                if var not in settings:
                    problems.append(f"{where}: entrypoint uses ${var}, not in reelfarm-settings")
    return problems


def lint(objects: list[dict[str, Any]], validator: CrdValidator | None = None) -> list[str]:
    """Every check over a rendered overlay; with a validator, CRD schemas too."""
    problems: list[str] = []
    embedded = [doc for _, doc in embedded_objects(objects)]
    for obj in list(objects) + embedded:
        if validator is not None and obj.get("apiVersion", "").startswith("ray.io/"):
            problems.extend(validator.validate(obj))
        problems.extend(check_core(obj))
        problems.extend(check_ray_jobs(obj))
        problems.extend(check_clusters(obj))
        problems.extend(check_containers(obj))
    problems.extend(check_secrets(objects))
    problems.extend(check_references(objects))
    problems.extend(check_nightly(objects))
    problems.extend(check_entrypoints(objects))
    return problems
