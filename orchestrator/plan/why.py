"""Why a task renders: the differences between two key-input documents, in words.

A render key is the hash of a document (:func:`.keys.render_key_document`); a record keeps the
document its key was made from (``ActionRecord.inputs``). Comparing the document a task has now
with the one of the shot's previous render says what changed, field by field::

    prompt: "red coat" → "green coat"
    model revision a1b2 → c3d4
    steps: 30 → 40
    salt changed
    upstream mara-closeup changed

Pure functions: no store, no Ray. :mod:`orchestrator.run.why` finds the documents.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

NEVER_RENDERED = "never rendered"
RECORD_MISSING = "record missing (repaired)"
FORCED = "forced"
KEY_CHANGED = "new key"  # the key changed, and the previous render's inputs are not known

#: Longest quoted text shown whole; a longer one is cut around what changed.
MAX_TEXT = 72
_CONTEXT = 24

#: Parameters a backend repeats from the document's own fields (said once, there).
_MIRRORED_PARAMS = frozenset({"backend_version", "model", "revision"})


def _text(value: Any) -> str:
    """A value as a reason shows it: strings quoted, ``null`` as ``none``, JSON otherwise."""
    if value is None:
        return "none"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _short_text(old: str, new: str) -> tuple[str, str]:
    """Two strings cut to what differs (with some context) when either is long."""
    if max(len(old), len(new)) <= MAX_TEXT:
        return _text(old), _text(new)
    pre = 0
    while pre < min(len(old), len(new)) and old[pre] == new[pre]:
        pre += 1
    suf = 0
    while (suf < min(len(old), len(new)) - pre
           and old[len(old) - 1 - suf] == new[len(new) - 1 - suf]):
        suf += 1
    start = max(0, pre - _CONTEXT)

    def cut(s: str) -> str:
        end = min(len(s), max(len(s) - suf + _CONTEXT, start + 1))
        body = s[start:end]
        if end - start > MAX_TEXT:
            body = body[:MAX_TEXT]
            end = start + MAX_TEXT
        return ("…" if start else "") + _text(body) + ("…" if end < len(s) else "")

    return cut(old), cut(new)


def _rev(value: Any) -> str:
    """A model revision: a 40-hex commit is shortened to 12 characters, like git does."""
    if isinstance(value, str) and len(value) == 40 and all(c in "0123456789abcdef" for c in value):
        return value[:12]
    return "none" if value is None else str(value)


def _profile(p: Mapping[str, Any]) -> str:
    return f"{p.get('width')}x{p.get('height')}@{p.get('fps')}"


def own_changes(new: Mapping[str, Any], old: Mapping[str, Any], *,
                seed_follows_prompt: bool = False) -> list[str]:
    """What changed between two key documents, except the upstream key (see :func:`reason`).

    One phrase per changed field, in the document's order: schema, salt, backend, model,
    parameters, prompt, negative prompt, seed, frames, profile and its encode spec. With
    ``seed_follows_prompt`` (the shot sets no seed, so its seed is derived from its prompt),
    a new seed that comes with a new prompt is not said again."""
    out: list[str] = []

    def get(doc: Mapping[str, Any], *path: str) -> Any:
        for p in path:
            doc = doc.get(p) if isinstance(doc, Mapping) else None
        return doc

    if new.get("schema") != old.get("schema"):
        out.append(f"key schema {_text(old.get('schema'))} → {_text(new.get('schema'))}")
    if new.get("salt") != old.get("salt"):
        out.append("salt changed")
    nb, ob = get(new, "backend", "name"), get(old, "backend", "name")
    if nb != ob:
        out.append(f"backend {ob or 'none'} → {nb or 'none'}")
    elif get(new, "backend", "version") != get(old, "backend", "version"):
        out.append(f"backend {nb} version {get(old, 'backend', 'version')} → "
                   f"{get(new, 'backend', 'version')}")
    if get(new, "model", "id") != get(old, "model", "id"):
        out.append(f"model {_text(get(old, 'model', 'id'))} → {_text(get(new, 'model', 'id'))}")
    elif get(new, "model", "revision") != get(old, "model", "revision"):
        out.append(f"model revision {_rev(get(old, 'model', 'revision'))} → "
                   f"{_rev(get(new, 'model', 'revision'))}")
    np_, op = new.get("params") or {}, old.get("params") or {}
    if isinstance(np_, Mapping) and isinstance(op, Mapping):
        for name in sorted(set(np_) | set(op)):
            if name in _MIRRORED_PARAMS or np_.get(name) == op.get(name):
                continue
            out.append(f"{name}: {_text(op.get(name))} → {_text(np_.get(name))}")
    elif np_ != op:
        out.append("backend parameters changed")
    for field, label in (("text", "prompt"), ("negative", "negative prompt")):
        a, b = get(old, "prompt", field), get(new, "prompt", field)
        if a != b:
            if isinstance(a, str) and isinstance(b, str):
                a_s, b_s = _short_text(a, b)
            else:
                a_s, b_s = _text(a), _text(b)
            out.append(f"{label}: {a_s} → {b_s}")
    prompt_changed = get(new, "prompt", "text") != get(old, "prompt", "text")
    for field in ("seed", "frames"):
        if field == "seed" and seed_follows_prompt and prompt_changed:
            continue
        if new.get(field) != old.get(field):
            out.append(f"{field}: {_text(old.get(field))} → {_text(new.get(field))}")
    npf, opf = new.get("profile") or {}, old.get("profile") or {}
    if isinstance(npf, Mapping) and isinstance(opf, Mapping) and npf != opf:
        if _profile(npf) != _profile(opf):
            out.append(f"profile: {_profile(opf)} → {_profile(npf)}")
        else:
            out.extend(_encode_changes(npf.get("encode") or {}, opf.get("encode") or {}))
    return out


def _encode_changes(new: Mapping[str, Any], old: Mapping[str, Any]) -> list[str]:
    """Changes of the encode spec: the encoder build by name, other settings by field."""
    out = []
    nb, ob = new.get("encoder_build") or {}, old.get("encoder_build") or {}
    if nb != ob:
        parts = [f"{tool} {ob.get(tool) or 'none'} → {nb.get(tool) or 'none'}"
                 for tool in ("ffmpeg", "x264") if nb.get(tool) != ob.get(tool)]
        out.append("encoder build: " + (", ".join(parts) or "changed"))
    for name in sorted((set(new) | set(old)) - {"encoder_build"}):
        if new.get(name) != old.get(name):
            out.append(f"encode {name}: {_text(old.get(name))} → {_text(new.get(name))}")
    return out


def reason(new: Mapping[str, Any], old: Mapping[str, Any], *, upstream_shot: str | None,
           upstream_changes: list[str] | None = None, seed_follows_prompt: bool = False,
           ) -> tuple[str, list[str]]:
    """Why a task whose key document is ``new`` renders, when its previous render's was
    ``old``; returns ``(reason, own changes)``.

    The upstream key is named when it changed (``upstream mara-closeup changed``), unless the
    task's own changes are the very ones its upstream has (``upstream_changes``: a new salt or
    profile changes every key, and saying so once is enough). A change of continuity (cut to
    previous and back) is said as such. Nothing recognisable changed (a key document of
    another shape): :data:`KEY_CHANGED`."""
    own = own_changes(new, old, seed_follows_prompt=seed_follows_prompt)
    said = list(own)
    nu, ou = new.get("upstream"), old.get("upstream")
    if nu != ou:
        if ou is None:
            said.append(f"continuity: cut → after {upstream_shot or 'the previous shot'}")
        elif nu is None:
            said.append("continuity: previous → cut")
        elif not (own and upstream_changes is not None and own == upstream_changes):
            said.append(f"upstream {upstream_shot or 'shot'} changed")
    return ("; ".join(said) or KEY_CHANGED), own
