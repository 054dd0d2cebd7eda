"""Cache keys: input-addressed, like Nix derivations and Bazel's action cache.

A render key is ``sha256(canonical JSON)`` of a document with these fields:

========================  =======================================================
``schema``                :data:`KEY_SCHEMA`; bump to disown every key at once
``salt``                  the store-level salt (``config.json``), to disown a bad batch
``backend``               name and version of the backend
``model``                 model and revision (``null`` when the backend loads none)
``params``                every backend parameter that changes pixels
``prompt``                prompt and negative prompt
``seed``                  the shot's seed
``frames``                frame count
``profile``               width, height, fps and the encode spec
``upstream``              render key of the conditioning task, or ``null``
========================  =======================================================

Canonical JSON: keys sorted, no whitespace, UTF-8, strings NFC-normalised, floats via
:func:`repr` (so ``5.0`` and ``5`` differ only if their types differ). Shot and segment ids are
not part of the key: renaming a shot does not re-render it (a backend that burns ids into its
pixels, such as previz's slate, names them in its own ``params``).
"""

from __future__ import annotations

import hashlib
import math
import unicodedata
from typing import Any

KEY_SCHEMA = 1


def _canon(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"non-finite float in a cache key: {value!r}")
        return repr(value)
    if isinstance(value, str):
        return _canon_str(value)
    if isinstance(value, dict):
        items = sorted((unicodedata.normalize("NFC", str(k)), v) for k, v in value.items())
        return "{" + ",".join(f"{_canon_str(k)}:{_canon(v)}" for k, v in items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_canon(v) for v in value) + "]"
    raise TypeError(f"cannot put {type(value).__name__} in a cache key")


def _canon_str(s: str) -> str:
    s = unicodedata.normalize("NFC", s)
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def canonical_json(value: Any) -> bytes:
    """The canonical encoding every key is hashed from."""
    return _canon(value).encode("utf-8")


def digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()


def derive_seed(base_seed: int, prompt: str) -> int:
    """A shot's seed when it sets none: a stable hash of the story seed and the shot's prompt.

    Derived from content rather than the shot id, so renaming a shot keeps its pixels.
    """
    h = hashlib.sha256(canonical_json(["seed", base_seed, prompt])).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


def render_key_document(
    *,
    salt: str,
    backend: str,
    backend_version: str,
    model: str | None,
    revision: str | None,
    params: dict[str, Any],
    prompt: str,
    negative_prompt: str,
    seed: int,
    frames: int,
    profile: dict[str, Any],
    upstream: str | None,
) -> dict[str, Any]:
    return {
        "schema": KEY_SCHEMA,
        "salt": salt,
        "backend": {"name": backend, "version": backend_version},
        "model": {"id": model, "revision": revision},
        "params": params,
        "prompt": {"text": prompt, "negative": negative_prompt},
        "seed": seed,
        "frames": frames,
        "profile": profile,
        "upstream": upstream,
    }


def render_key(**fields: Any) -> str:
    """The render key of one task; see :func:`render_key_document` for the fields."""
    return digest(render_key_document(**fields))


ASSEMBLY_VERSION = 1


def master_key(clip_digests: list[str], profile: dict[str, Any]) -> str:
    """Key of a branch master: its ordered clips and the assembly version."""
    return digest({"assembly": ASSEMBLY_VERSION, "clips": clip_digests, "profile": profile})
