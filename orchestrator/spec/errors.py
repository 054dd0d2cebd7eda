"""Problems found in a manifest, reported to people as ``FILE:LINE:COL: field.path: message``.

A :class:`Problem` is one finding; :class:`ManifestInvalid` carries every problem found in one
manifest, so that a writer fixes them all in one pass instead of one per run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Loc = tuple[str | int, ...]
"""A field path as a tuple: ``("spec", "segments", 3, "next")``."""


def format_path(loc: Sequence[str | int]) -> str:
    """``("spec", "segments", 3, "choice", "options", 1, "next")`` → the dotted form.

    >>> format_path(("spec", "segments", 3, "choice", "options", 1, "next"))
    'spec.segments[3].choice.options[1].next'
    >>> format_path(())
    ''
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest.

    ``line`` and ``col`` are 1-based and ``None`` when unknown (a file that could not be read,
    a problem with the document as a whole). ``path`` is the dotted field path, empty for the
    document itself.
    """

    file: str
    line: int | None
    col: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.col is not None:
                where += f":{self.col}"
        if self.path:
            return f"{where}: {self.path}: {self.message}"
        return f"{where}: {self.message}"


class ManifestInvalid(Exception):
    """A manifest could not be accepted; ``problems`` lists every reason, in file order."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        if not self.problems:
            raise ValueError("ManifestInvalid needs at least one problem")
        super().__init__("\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)
