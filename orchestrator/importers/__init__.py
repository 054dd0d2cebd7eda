"""Import stories written in Ink, Twine (Twee 3, Twine 2 HTML) and Yarn Spinner.

The public face of the package: :func:`import_file` reads one source file (and nothing else),
detects or takes its format, and returns an :class:`ImportResult` whose ``manifest`` is a valid
``reelfarm/v1`` story; :class:`ImportFailed` lists every reason a source cannot be imported.
The mapping is documented in ``docs/import.md``.
"""

from __future__ import annotations

import os

from orchestrator.spec.errors import ManifestInvalid, Problem

from ._graph import (
    MAX_SOURCE_BYTES,
    MAX_UNROLL,
    ImportDefaults,
    ImportFailed,
    ImportResult,
    Options,
    SourceGraph,
    build_manifest,
    load_defaults,
)

FORMATS = ("ink", "twee", "twine-html", "yarn")

__all__ = [
    "FORMATS",
    "MAX_SOURCE_BYTES",
    "MAX_UNROLL",
    "ImportDefaults",
    "ImportFailed",
    "ImportResult",
    "detect_format",
    "dump_manifest",
    "import_file",
    "import_text",
    "load_defaults",
    "read_limited",
]


def read_limited(name: str, what: str = "source", limit: int = MAX_SOURCE_BYTES) -> bytes:
    """Read one file, at most ``limit`` bytes; every failure is an :class:`ImportFailed`."""

    def fail(message: str) -> ImportFailed:
        return ImportFailed([Problem(name, None, None, "", message)])

    try:
        with open(name, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise fail("no such file") from None
    except IsADirectoryError:
        raise fail(f"is a directory, not a {what} file") from None
    except PermissionError:
        raise fail("permission denied") from None
    except OSError as exc:
        raise fail(f"cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise fail(f"the {what} is larger than {limit} bytes ({limit // (1024 * 1024)} MiB), "
                   "the limit")
    return data


def detect_format(name: str, text: str) -> str | None:
    """The format of a source from its extension, then its content; ``None`` when unsure."""
    ext = os.path.splitext(name)[1].lower()
    by_ext = {".twee": "twee", ".tw": "twee", ".tw3": "twee", ".yarn": "yarn", ".ink": None,
              ".html": "twine-html", ".htm": "twine-html"}
    if ext in by_ext and by_ext[ext]:
        return by_ext[ext]
    head = text.lstrip()[:4096]
    if head.startswith("{") and '"inkVersion"' in text[:200_000]:
        return "ink"
    if "<tw-storydata" in text:
        return "twine-html"
    if any(line.startswith("::") for line in head.splitlines()):
        return "twee"
    if any(line.strip().lower().startswith("title:") for line in head.splitlines()) and (
        "\n---" in text or text.startswith("---")
    ):
        return "yarn"
    return None


def _reader(fmt: str):
    if fmt == "ink":
        from . import ink as mod
    elif fmt == "twee":
        from . import twee as mod  # type: ignore[no-redef]
    elif fmt == "twine-html":
        from . import twine_html as mod  # type: ignore[no-redef]
    else:
        from . import yarn as mod  # type: ignore[no-redef]
    return mod.read


def import_text(
    name: str,
    data: bytes,
    fmt: str | None = None,
    *,
    unroll: int | None = None,
    all_options: bool = False,
    defaults: ImportDefaults | None = None,
) -> ImportResult:
    """Import ``data`` (the bytes of the file ``name``); see :func:`import_file`."""
    if len(data) > MAX_SOURCE_BYTES:
        raise ImportFailed([Problem(name, None, None, "",
                                    f"the source is larger than {MAX_SOURCE_BYTES} bytes")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ImportFailed([Problem(name, line, None, "",
                                    f"not UTF-8 text (byte 0x{data[exc.start]:02x})")]) from None
    text = text.replace("\r\n", "\n")
    if fmt is None:
        fmt = detect_format(name, text)
        if fmt is None and name.lower().endswith(".ink"):
            raise ImportFailed([Problem(name, None, None, "",
                                        "ink source: compile it to JSON first (inklecate, or "
                                        "npx inkjs-compiler FILE.ink -o FILE.ink.json)")])
        if fmt is None:
            raise ImportFailed([Problem(name, None, None, "",
                                        "cannot tell the format; name it with --from "
                                        + "|".join(FORMATS))])
    if fmt not in FORMATS:
        raise ImportFailed([Problem(name, None, None, "", f"unknown format {fmt!r}")])
    if unroll is not None and not 0 <= unroll <= MAX_UNROLL:
        raise ImportFailed([Problem(name, None, None, "",
                                    f"--unroll must be 0..{MAX_UNROLL}")])
    try:
        graph: SourceGraph = _reader(fmt)(name, text)
    except RecursionError:
        raise ImportFailed([Problem(name, None, None, "", "nested too deeply")]) from None
    result = build_manifest(
        graph, Options(unroll=unroll, all_options=all_options,
                       defaults=defaults or ImportDefaults())
    )
    _check(name, result)
    return result


def import_file(
    path: str,
    fmt: str | None = None,
    *,
    unroll: int | None = None,
    all_options: bool = False,
    defaults: ImportDefaults | None = None,
) -> ImportResult:
    """Import the source at ``path``: read only that file, run nothing from it.

    Raises :class:`ImportFailed` with every reason (file:line where the source has lines) when
    the source cannot be imported.
    """
    return import_text(path, read_limited(path), fmt, unroll=unroll, all_options=all_options,
                       defaults=defaults)


def dump_manifest(result: ImportResult) -> str:
    """The manifest as YAML: PyYAML's safe dumper (libyaml's emitter when PyYAML has it, the
    same output ten times faster), keys in the manifest's own order."""
    import yaml

    if not result.text:
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        result.text = yaml.dump(result.manifest, Dumper=dumper, sort_keys=False,
                                allow_unicode=True, width=100)
    return result.text


def _check(name: str, result: ImportResult) -> None:
    """Load the manifest as ``reelfarm validate`` would; a failure is an import problem."""
    from orchestrator.spec.loading import load_manifest

    text = dump_manifest(result)
    try:
        load_manifest(f"{name} (imported)", text.encode("utf-8"))
    except ManifestInvalid as exc:
        raise ImportFailed(exc.problems) from None
