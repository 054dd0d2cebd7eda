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

Canonical JSON (:func:`canonical_json`, the standard ``json`` encoder): keys sorted, no
whitespace, UTF-8, strings NFC-normalised, floats via :func:`repr` (so ``5.0`` and ``5`` differ
only if their types differ). The profile's encode spec names the encoder build (ffmpeg and
x264) that makes the clip's bytes, so nodes with different builds never share a key. Shot and
segment ids are not part of the key: renaming a shot does not re-render it (a backend that
burns ids into its pixels, such as previz's slate, names them in its own ``params``).
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from typing import Any

#: 2: canonical JSON by the standard encoder (short escapes such as ``\\n``), and the encoder
#: build (ffmpeg and x264) in the profile's encode spec.
KEY_SCHEMA = 2


def _nfc(value: Any) -> Any:
    """``value`` with every string (keys too) NFC-normalised; refuses what JSON cannot hold."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"cache key documents have string keys, not {k!r}")
            out[unicodedata.normalize("NFC", k)] = _nfc(v)
        return out
    if isinstance(value, (list, tuple)):
        return [_nfc(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    raise TypeError(f"cannot put {type(value).__name__} in a cache key")


_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def _check_keys(value: Any) -> None:
    """Refuses a mapping key that is not a string (``json`` would turn ``1`` into ``"1"``, so
    two different documents would share a key)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for k in item:
                if not isinstance(k, str):
                    raise TypeError(f"cache key documents have string keys, not {k!r}")
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def _encode(value: Any) -> str:
    """Canonical text of ``value``, its mapping keys not checked."""
    try:
        text = _ENCODER.encode(value)
        if not text.isascii():  # ASCII text is already NFC; only the rest is normalised
            text = _ENCODER.encode(_nfc(value))
    except ValueError as e:  # NaN or infinity (or a value that contains itself)
        raise ValueError(f"cannot put this value in a cache key: {e}") from e
    return text


def canonical_text(value: Any) -> str:
    """:func:`canonical_json` as text."""
    text = _encode(value)  # first: the encoder refuses a value that contains itself
    _check_keys(value)
    return text


def canonical_json(value: Any) -> bytes:
    """The canonical encoding every key is hashed from.

    The standard encoder with sorted keys, no whitespace and UTF-8 text (not ``\\u`` escapes);
    strings NFC-normalised first. Floats are written by ``float.__repr__`` (what ``json`` uses),
    so ``5.0`` and ``5`` differ; NaN and infinities are refused, and so are mapping keys that
    are not strings. The C encoder runs once on the value as given; only when its output has a
    non-ASCII character (so a string might not be NFC) are the strings normalised and the value
    encoded again.
    """
    return canonical_text(value).encode("utf-8")


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


class KeyMaker:
    """:func:`render_key` for the many tasks of one plan, with the fields every task shares
    (``salt`` and ``profile``) encoded once.

    The text hashed is byte for byte that of :func:`render_key_document`: the document's keys
    sorted, the shared fields spliced in at their sorted places between the encoded parts.
    """

    def __init__(self, *, salt: str, profile: dict[str, Any]) -> None:
        self._salt = canonical_text(salt)
        self._profile = canonical_text(profile)

    def key(
        self,
        *,
        backend: str,
        backend_version: str,
        model: str | None,
        revision: str | None,
        params: dict[str, Any],
        prompt: str,
        negative_prompt: str,
        seed: int,
        frames: int,
        upstream: str | None,
    ) -> str:
        # Sorted order: backend, frames, model, params, profile, prompt, salt, schema, seed,
        # upstream.
        head = _encode(
            {
                "backend": {"name": backend, "version": backend_version},
                "frames": frames,
                "model": {"id": model, "revision": revision},
                "params": params,
            }
        )
        _check_keys(params)  # the other fields are this method's own string-keyed mappings
        middle = _encode({"prompt": {"text": prompt, "negative": negative_prompt}})
        tail = _encode({"schema": KEY_SCHEMA, "seed": seed, "upstream": upstream})
        text = (
            f'{head[:-1]},"profile":{self._profile},{middle[1:-1]},'
            f'"salt":{self._salt},{tail[1:]}'
        )
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


#: 2: clips handed to ffmpeg's mp4 muxer as one NUT stream, not read by its concat demuxer (the
#: master's ``btrt`` box then gives its average bit rate as the maximum, not the first clip's).
ASSEMBLY_VERSION = 2


def master_key(
    clip_digests: list[str], profile: dict[str, Any], encoder: dict[str, str] | None = None
) -> str:
    """Key of a branch master: its ordered clips, the assembly version and the ffmpeg build
    that joins them (``encoder``: its ``ffmpeg`` and ``x264`` fields; the muxer's bytes are the
    build's, like the clips')."""
    doc: dict[str, Any] = {"assembly": ASSEMBLY_VERSION, "clips": clip_digests, "profile": profile}
    if encoder is not None:
        doc["encoder"] = {"ffmpeg": encoder["ffmpeg"], "x264": encoder["x264"]}
    return digest(doc)
