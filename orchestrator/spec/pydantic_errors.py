"""pydantic's validation errors, rewritten as one short sentence per field for people.

pydantic's own text is several lines per error and speaks of "Input should be ..."; a writer
needs the field path and what the field accepts: ``spec.segments[0].id: must match
[a-z0-9][a-z0-9_-]{0,63} (got '../../etc')``.

Locations are cleaned as well: pydantic puts the name of a union member into the location
(``spec.masters.list[list[constrained-str]][0][1]``); those names are dropped, and of a union's
members only the one that matches the shape of the value written is reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from .errors import Loc

_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "none_required": "null",
}

_COMPARISONS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}

_VALUE_ERROR_PREFIXES = ("Value error, ", "Assertion failed, ")


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def message_for(error: Mapping[str, Any]) -> str:
    """One short sentence for one entry of ``ValidationError.errors()``."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "extra_forbidden":
        return f"unknown field {error['loc'][-1]!r}" if error["loc"] else "unknown field"
    if kind == "missing":
        return "required field missing"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", "")).removeprefix("^").removesuffix("$")
        return f"must match {pattern} (got {_short(value)})"
    if kind in _COMPARISONS:
        key, sign = _COMPARISONS[kind]
        return f"must be {sign} {_number(ctx.get(key))} (got {_short(value)})"
    if kind == "multiple_of":
        return f"must be a multiple of {_number(ctx.get('multiple_of'))} (got {_short(value)})"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')} (got {_short(value)})"
    if kind == "string_too_short":
        if ctx.get("min_length") == 1:
            return "must not be empty"
        return f"must be at least {ctx.get('min_length')} characters"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "too_short":
        least = ctx.get("min_length")
        return f"must have at least {least} item{'s' if least != 1 else ''}"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} items"
    if kind == "string_type" and isinstance(value, int | float | bool):
        return f"must be a string (got {_short(value)}; put it in quotes)"
    if kind in _TYPE_NAMES:
        return f"must be {_TYPE_NAMES[kind]} (got {_type_word(value)})"
    message = str(error.get("msg", kind))
    for prefix in _VALUE_ERROR_PREFIXES:
        message = message.removeprefix(prefix)
    return message


def _type_word(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__


def _clean_loc(loc: tuple[str | int, ...], data: Any) -> tuple[Loc, int | None]:
    """Drop union member names from ``loc``; also return where the (last) union sits."""
    out: list[str | int] = []
    union_at: int | None = None
    node: Any = data
    for part in loc:
        if part == "[key]":
            continue  # the error is about the key of the mapping entry just named
        if isinstance(part, str) and not isinstance(node, Mapping):
            union_at = len(out)  # a union member's name, not a field
            continue
        out.append(part)
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out), union_at


def describe(error: ValidationError, data: Any) -> list[tuple[Loc, str]]:
    """Each of ``error``'s findings as ``(field path, message)``, in pydantic's order.

    ``data`` is the document that was validated: it tells union member names from fields.
    """
    entries: list[tuple[Loc, int | None, str, dict[str, Any]]] = []
    for err in error.errors(include_url=False):
        loc, union_at = _clean_loc(tuple(err["loc"]), data)
        refine = (err.get("ctx") or {}).get("at")
        if isinstance(refine, tuple):
            loc = loc + refine
        branch = err["loc"][union_at] if union_at is not None else None
        entries.append((loc, union_at, str(branch), dict(err)))

    # For a union, keep only the member the value matched: the one with errors inside the value.
    # When every member failed at the value itself, say once what the value may be.
    unions: dict[Loc, list[tuple[Loc, str, dict[str, Any]]]] = {}
    for loc, union_at, branch, err in entries:
        if union_at is not None:
            unions.setdefault(loc[:union_at], []).append((loc, branch, err))

    out: list[tuple[Loc, str]] = []
    done: set[Loc] = set()
    for loc, union_at, _branch, err in entries:
        if union_at is None:
            out.append((loc, message_for(err)))
            continue
        at = loc[:union_at]
        if at in done:
            continue
        done.add(at)
        members = unions[at]
        deep = [(m_loc, m_err) for m_loc, _b, m_err in members if len(m_loc) > len(at)]
        if deep:
            out.extend((m_loc, message_for(m_err)) for m_loc, m_err in deep)
            continue
        options = []
        for _m_loc, _b, m_err in members:
            text = message_for(m_err).removeprefix("must be ").split(" (got ")[0]
            if text not in options:
                options.append(text)
        got = _type_word(members[0][2].get("input"))
        if isinstance(members[0][2].get("input"), str):
            got = _short(members[0][2]["input"])
        out.append((at, f"must be {', or '.join(options)} (got {got})"))
    return out
