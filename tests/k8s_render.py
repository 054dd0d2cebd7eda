"""A small kustomize renderer for the subset of kustomize that ``k8s/`` uses.

The test suite has no ``kustomize`` or ``kubectl`` binary, so it renders the overlays with this
module and validates what comes out. It implements, with kustomize's semantics:

- ``resources`` (files, and directories holding a ``kustomization.yaml``), rendered depth first;
- ``components`` (directories holding a ``kind: Component`` kustomization): applied after the
  resources, each adding its own resources and generators and patching everything so far;
- ``namespace`` (namespaced kinds only; ServiceAccount subjects of (Cluster)RoleBindings that are
  in ``default`` or unset move with it, as in kustomize's default ``defaultOnly`` mode);
- ``labels`` (``pairs``; metadata labels, plus selectors / pod templates when asked) and
  ``commonLabels`` / ``commonAnnotations`` on metadata;
- ``images`` (``name``, ``newName``, ``newTag``, ``digest``) in every ``containers`` and
  ``initContainers`` list of every object, custom resources included;
- ``patches`` (inline or ``path``; a YAML list is JSON6902, a mapping is a strategic merge patch),
  ``patchesStrategicMerge`` and ``patchesJson6902``, with ``target`` selectors;
- ``configMapGenerator`` (``literals``, ``files``, ``envs``, ``behavior``) when
  ``generatorOptions.disableNameSuffixHash`` is true.

Strategic merge patches merge mappings and replace lists, which is what kustomize does for custom
resources (it has no merge keys for their lists); a patch that would merge a list of a built-in
kind is refused rather than rendered differently. Any other kustomization field is an error, so
a manifest change that needs more of kustomize fails loudly here instead of rendering wrong.

Usable from the shell for a cluster without kustomize::

    python tests/k8s_render.py k8s/overlays/cpu-demo | kubectl apply -f -
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")

SUPPORTED_FIELDS = {
    "apiVersion",
    "kind",
    "resources",
    "components",
    "namespace",
    "labels",
    "commonLabels",
    "commonAnnotations",
    "images",
    "patches",
    "patchesStrategicMerge",
    "patchesJson6902",
    "configMapGenerator",
    "generatorOptions",
}

CLUSTER_SCOPED_KINDS = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
}

# Built-in kinds whose lists kustomize merges by key in a strategic merge patch.
BUILTIN_API_GROUPS = {"v1", "apps/v1", "batch/v1", "rbac.authorization.k8s.io/v1"}


class KustomizeError(Exception):
    """The kustomization uses something this renderer does not do, or does it wrong."""


def _load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d is not None]
    for doc in docs:
        if not isinstance(doc, dict):
            raise KustomizeError(f"{path}: every document must be a mapping")
    return docs


def _find_kustomization(directory: Path) -> Path:
    for name in KUSTOMIZATION_FILES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    raise KustomizeError(f"{directory}: no kustomization.yaml")


def object_id(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    name = meta.get("name") or meta.get("generateName") or ""
    return (obj.get("kind", ""), name, meta.get("namespace", ""))


def render(directory: str | Path) -> list[dict[str, Any]]:
    """Render the kustomization in ``directory`` to a list of objects."""
    return _render(Path(directory).resolve(), stack=())


def _render(
    directory: Path,
    stack: tuple[Path, ...],
    inherited: list[dict[str, Any]] | None = None,
    *,
    component: bool = False,
) -> list[dict[str, Any]]:
    if directory in stack:
        raise KustomizeError(f"resource cycle through {directory}")
    kfile = _find_kustomization(directory)
    with kfile.open(encoding="utf-8") as fh:
        kust = yaml.safe_load(fh) or {}
    unknown = set(kust) - SUPPORTED_FIELDS
    if unknown:
        raise KustomizeError(f"{kfile}: fields not supported by k8s_render: {sorted(unknown)}")

    is_component = kust.get("kind") == "Component"
    if is_component != component:
        role = "a component" if component else "a resource or target"
        raise KustomizeError(f"{kfile}: kind {kust.get('kind')!r} cannot be used as {role}")

    objects: list[dict[str, Any]] = list(inherited or [])
    for entry in kust.get("resources") or []:
        target = (directory / entry).resolve()
        if target.is_dir():
            objects.extend(_render(target, stack + (directory,)))
        elif target.is_file():
            objects.extend(_load_yaml_documents(target))
        else:
            raise KustomizeError(f"{kfile}: resource {entry!r} not found")
    for entry in kust.get("components") or []:
        target = (directory / entry).resolve()
        if not target.is_dir():
            raise KustomizeError(f"{kfile}: component {entry!r} not found")
        objects = _render(target, stack + (directory,), objects, component=True)

    objects = _apply_config_map_generators(kust, directory, objects)
    _check_unique(objects, kfile)

    for patch_entry in kust.get("patchesStrategicMerge") or []:
        _apply_patch_entry({"path": patch_entry}, directory, objects)
    for patch_entry in kust.get("patchesJson6902") or []:
        _apply_patch_entry(patch_entry, directory, objects)
    for patch_entry in kust.get("patches") or []:
        _apply_patch_entry(patch_entry, directory, objects)

    if "namespace" in kust:
        _set_namespace(objects, kust["namespace"])
    for label_entry in kust.get("labels") or []:
        _add_labels(
            objects,
            label_entry.get("pairs") or {},
            selectors=bool(label_entry.get("includeSelectors", False)),
            templates=bool(label_entry.get("includeTemplates", False)),
        )
    if kust.get("commonLabels"):
        # kustomize also writes commonLabels into selectors; nothing here uses selectors, so
        # refuse instead of guessing.
        if any(_has_selector(o) for o in objects):
            raise KustomizeError(f"{kfile}: commonLabels with selectors is not supported")
        _add_labels(objects, kust["commonLabels"], selectors=False, templates=True)
    for obj in objects:
        if kust.get("commonAnnotations"):
            meta = obj.setdefault("metadata", {})
            meta.setdefault("annotations", {}).update(kust["commonAnnotations"])
    for image in kust.get("images") or []:
        _set_image(objects, image)
    return objects


def _check_unique(objects: list[dict[str, Any]], kfile: Path) -> None:
    seen: set[tuple[str, str, str]] = set()
    for obj in objects:
        oid = object_id(obj)
        if oid in seen:
            raise KustomizeError(f"{kfile}: duplicate object {oid}")
        seen.add(oid)


# --- configMapGenerator ------------------------------------------------------------------------


def _parse_env_file(path: Path) -> dict[str, str]:
    data: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise KustomizeError(f"{path}: line without '=': {line!r}")
        data[key.strip()] = value
    return data


def _generator_data(gen: dict[str, Any], directory: Path) -> dict[str, str]:
    data: dict[str, str] = {}
    for literal in gen.get("literals") or []:
        key, sep, value = str(literal).partition("=")
        if not sep:
            raise KustomizeError(f"configMapGenerator {gen.get('name')}: bad literal {literal!r}")
        data[key] = value
    for env_file in gen.get("envs") or []:
        data.update(_parse_env_file(directory / env_file))
    for entry in gen.get("files") or []:
        key, sep, rel = str(entry).partition("=")
        if not sep:
            key, rel = Path(entry).name, entry
        source = directory / rel
        if not source.is_file():
            raise KustomizeError(f"configMapGenerator {gen.get('name')}: no file {rel}")
        data[key] = source.read_text(encoding="utf-8")
    return data


def _apply_config_map_generators(
    kust: dict[str, Any], directory: Path, objects: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    generators = kust.get("configMapGenerator") or []
    if not generators:
        return objects
    options = kust.get("generatorOptions") or {}
    if not options.get("disableNameSuffixHash", False):
        raise KustomizeError(
            "configMapGenerator needs generatorOptions.disableNameSuffixHash: true in k8s_render"
        )
    for gen in generators:
        unknown = set(gen) - {"name", "behavior", "literals", "files", "envs", "options"}
        if unknown:
            raise KustomizeError(f"configMapGenerator fields not supported: {sorted(unknown)}")
        name = gen["name"]
        behavior = gen.get("behavior", "create")
        data = _generator_data(gen, directory)
        existing = [
            o for o in objects if o.get("kind") == "ConfigMap" and o["metadata"]["name"] == name
        ]
        if behavior == "create":
            if existing:
                raise KustomizeError(f"configMapGenerator {name}: already exists (use merge)")
            meta: dict[str, Any] = {"name": name}
            gen_options = gen.get("options") or {}
            for field in ("labels", "annotations"):
                if field in gen_options or field in options:
                    meta[field] = {**(options.get(field) or {}), **(gen_options.get(field) or {})}
            config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}
            objects.append(config_map)
        elif behavior in ("merge", "replace"):
            if not existing:
                raise KustomizeError(f"configMapGenerator {name}: {behavior} of a missing map")
            target = existing[0]
            if behavior == "replace":
                target["data"] = data
            else:
                target.setdefault("data", {}).update(data)
        else:
            raise KustomizeError(f"configMapGenerator {name}: unknown behavior {behavior!r}")
    return objects


# --- patches -----------------------------------------------------------------------------------


def _matches(obj: dict[str, Any], target: dict[str, Any]) -> bool:
    api_version = obj.get("apiVersion", "")
    group, _, version = api_version.rpartition("/")
    meta = obj.get("metadata") or {}
    checks = {
        "group": group,
        "version": version,
        "kind": obj.get("kind", ""),
        "name": meta.get("name", ""),
        "namespace": meta.get("namespace", ""),
    }
    for field, actual in checks.items():
        wanted = target.get(field)
        if wanted is not None and not re.fullmatch(str(wanted), actual):
            return False
    selector = target.get("labelSelector")
    if selector:
        labels = meta.get("labels") or {}
        for clause in str(selector).split(","):
            key, _, value = clause.partition("=")
            if labels.get(key.strip()) != value.strip():
                return False
    unknown = set(target) - set(checks) - {"labelSelector"}
    if unknown:
        raise KustomizeError(f"patch target fields not supported: {sorted(unknown)}")
    return True


def _apply_patch_entry(entry: dict[str, Any], directory: Path, objects: list[dict[str, Any]]):
    if "path" in entry:
        text = (directory / entry["path"]).read_text(encoding="utf-8")
    elif "patch" in entry:
        text = entry["patch"]
    else:
        raise KustomizeError(f"patch without path or patch: {entry}")
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    if len(docs) == 1 and isinstance(docs[0], list):
        target = entry.get("target")
        if not target:
            raise KustomizeError("a JSON6902 patch needs a target")
        hits = [o for o in objects if _matches(o, target)]
        if not hits:
            raise KustomizeError(f"JSON6902 patch target matched nothing: {target}")
        for obj in hits:
            apply_json6902(obj, docs[0])
        return
    for doc in docs:
        if not isinstance(doc, dict):
            raise KustomizeError("a strategic merge patch must be a mapping")
        target = entry.get("target")
        if target:
            hits = [o for o in objects if _matches(o, target)]
        else:
            meta = doc.get("metadata") or {}
            hits = [
                o
                for o in objects
                if o.get("kind") == doc.get("kind")
                and o["metadata"].get("name") == meta.get("name")
            ]
        if not hits:
            raise KustomizeError(f"strategic merge patch matched nothing: {object_id(doc)}")
        for obj in hits:
            builtin = obj.get("apiVersion") in BUILTIN_API_GROUPS
            merged = strategic_merge(obj, doc, builtin=builtin, path="")
            obj.clear()
            obj.update(merged)


def strategic_merge(base: Any, patch: Any, *, builtin: bool, path: str) -> Any:
    """Merge ``patch`` into ``base``: mappings merge, ``null`` deletes, lists replace."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = strategic_merge(out[key], value, builtin=builtin, path=f"{path}/{key}")
            else:
                out[key] = copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list) and builtin:
        raise KustomizeError(
            f"strategic merge of list {path} of a built-in kind needs merge keys; use JSON6902"
        )
    return copy.deepcopy(patch)


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer must start with '/': {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str], path: str) -> Any:
    node = doc
    for part in parts:
        if isinstance(node, dict):
            if part not in node:
                raise KustomizeError(f"JSON6902 path {path}: no {part!r}")
            node = node[part]
        elif isinstance(node, list):
            index = _index(node, part, path, allow_end=False)
            node = node[index]
        else:
            raise KustomizeError(f"JSON6902 path {path}: {part!r} under a scalar")
    return node


def _index(node: list[Any], part: str, path: str, *, allow_end: bool) -> int:
    if part == "-" and allow_end:
        return len(node)
    if not part.isdigit():
        raise KustomizeError(f"JSON6902 path {path}: {part!r} is not a list index")
    index = int(part)
    limit = len(node) + (1 if allow_end else 0)
    if index >= limit:
        raise KustomizeError(f"JSON6902 path {path}: index {index} out of range")
    return index


def apply_json6902(obj: dict[str, Any], ops: Iterable[dict[str, Any]]) -> None:
    """Apply RFC 6902 operations to ``obj`` in place."""
    for op in ops:
        kind = op.get("op")
        path = op.get("path", "")
        parts = _pointer(path)
        if kind == "test":
            actual = _walk(obj, parts, path)
            if actual != op.get("value"):
                raise KustomizeError(f"JSON6902 test failed at {path}: {actual!r}")
            continue
        if kind in ("copy", "move"):
            source_parts = _pointer(op["from"])
            value = copy.deepcopy(_walk(obj, source_parts, op["from"]))
            if kind == "move":
                apply_json6902(obj, [{"op": "remove", "path": op["from"]}])
            apply_json6902(obj, [{"op": "add", "path": path, "value": value}])
            continue
        if not parts:
            raise KustomizeError("JSON6902 operations on the whole document are not supported")
        parent = _walk(obj, parts[:-1], path)
        last = parts[-1]
        if kind == "add":
            value = copy.deepcopy(op["value"])
            if isinstance(parent, list):
                parent.insert(_index(parent, last, path, allow_end=True), value)
            else:
                parent[last] = value
        elif kind == "remove":
            if isinstance(parent, list):
                del parent[_index(parent, last, path, allow_end=False)]
            elif last in parent:
                del parent[last]
            else:
                raise KustomizeError(f"JSON6902 remove {path}: nothing there")
        elif kind == "replace":
            value = copy.deepcopy(op["value"])
            if isinstance(parent, list):
                parent[_index(parent, last, path, allow_end=False)] = value
            elif last in parent:
                parent[last] = value
            else:
                raise KustomizeError(f"JSON6902 replace {path}: nothing there")
        else:
            raise KustomizeError(f"JSON6902 op {kind!r} not supported")


# --- namespace, labels, images -----------------------------------------------------------------


def _set_namespace(objects: list[dict[str, Any]], namespace: str) -> None:
    for obj in objects:
        if obj.get("kind") not in CLUSTER_SCOPED_KINDS:
            obj.setdefault("metadata", {})["namespace"] = namespace
        if obj.get("kind") in ("RoleBinding", "ClusterRoleBinding"):
            for subject in obj.get("subjects") or []:
                if subject.get("kind") == "ServiceAccount" and subject.get("namespace") in (
                    None,
                    "",
                    "default",
                ):
                    subject["namespace"] = namespace


def _has_selector(obj: dict[str, Any]) -> bool:
    spec = obj.get("spec") or {}
    return "selector" in spec


def _pod_templates(obj: dict[str, Any]) -> Iterable[dict[str, Any]]:
    spec = obj.get("spec") or {}
    if "template" in spec:
        yield spec["template"]
    job_template = spec.get("jobTemplate") or {}
    template = (job_template.get("spec") or {}).get("template")
    if template:
        yield template


def _add_labels(
    objects: list[dict[str, Any]], pairs: dict[str, str], *, selectors: bool, templates: bool
) -> None:
    if selectors:
        raise KustomizeError("labels with includeSelectors: true is not supported")
    for obj in objects:
        meta = obj.setdefault("metadata", {})
        meta.setdefault("labels", {}).update(pairs)
        if templates:
            for template in _pod_templates(obj):
                template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """``name[:tag][@digest]`` -> (name, tag, digest); a registry port is not a tag."""
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
    tag = None
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        image, tag = image[:colon], image[colon + 1 :]
    return image, tag, digest


def iter_containers(node: Any) -> Iterable[dict[str, Any]]:
    """Every mapping in a ``containers`` or ``initContainers`` list anywhere under ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                for item in value:
                    if isinstance(item, dict):
                        yield item
                        yield from iter_containers(item)
            else:
                yield from iter_containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from iter_containers(item)


def _set_image(objects: list[dict[str, Any]], entry: dict[str, Any]) -> None:
    for obj in objects:
        for container in iter_containers(obj):
            image = container.get("image")
            if not isinstance(image, str):
                continue
            name, tag, digest = split_image(image)
            if name != entry["name"]:
                continue
            new_name = entry.get("newName", name)
            if "digest" in entry:
                container["image"] = f"{new_name}@{entry['digest']}"
                continue
            new_tag = entry.get("newTag", tag)
            out = new_name
            if new_tag:
                out += f":{new_tag}"
            if digest and "newTag" not in entry:
                out += f"@{digest}"
            container["image"] = out


def dump(objects: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False, width=100)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python tests/k8s_render.py DIRECTORY", file=sys.stderr)
        return 2
    try:
        sys.stdout.write(dump(render(args[0])))
    except (KustomizeError, yaml.YAMLError, OSError) as exc:
        print(f"k8s_render: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
