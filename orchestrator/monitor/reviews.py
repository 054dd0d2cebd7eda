"""Reviews of shots, kept in the store beside the run records.

One document per shot, ``reviews/<story>/<shot>.json``, holding the shot's review history oldest
first. Each review names the take it judged: the render keys of the shot's tasks in the run it
was made on (``keys``; ``key`` is the shot's own task, or its first variant). A shot rendered
again under other keys shows that its latest review was for an older take.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..store import Store
from ..store.base import SHA256_RE, utcnow
from . import ids

_LOCK = threading.Lock()  # one writer at a time in this process: read, append, write


class Review(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    verdict: str = Field(pattern=r"^(approved|changes)$")
    note: str = Field("", max_length=ids.MAX_NOTE)
    who: str = Field(min_length=1, max_length=ids.MAX_WHO)
    when: str
    run_id: str
    key: str = Field(pattern=SHA256_RE.pattern)
    keys: list[str]


class ReviewError(ValueError):
    """A review that cannot be made (no such run, or the shot is not in it)."""


def review_path(story: str, shot: str) -> str:
    return f"reviews/{ids.story_id(story)}/{ids.shot_id(shot)}.json"


def shot_keys(run: dict[str, Any], shot: str) -> list[str]:
    """The render keys of ``shot``'s tasks in a run record: the shot's own task first."""
    tasks = [t for t in run.get("tasks") or [] if isinstance(t, dict) and t.get("shot") == shot]
    tasks.sort(key=lambda t: (t.get("id") != shot, str(t.get("id"))))
    return [t["key"] for t in tasks if isinstance(t.get("key"), str)]


def history(store: Store, story: str, shot: str) -> list[Review]:
    raw = store.get_doc(review_path(story, shot))
    if not raw:
        return []
    try:
        doc = json.loads(raw)
        return [Review.model_validate(r) for r in doc.get("reviews", [])]
    except (ValueError, AttributeError, TypeError, ValidationError):
        return []  # a damaged document reads as no reviews; the next review replaces it


def add_review(store: Store, story: str, run_id: str, shot: str, verdict: str, note: str,
               who: str) -> Review:
    """Record a review of ``shot`` as rendered in run ``run_id``."""
    ids.story_id(story)
    ids.run_id(run_id)
    ids.shot_id(shot)
    if verdict not in ids.VERDICTS:
        raise ReviewError(f"a verdict is one of {', '.join(ids.VERDICTS)}")
    if len(note) > ids.MAX_NOTE:
        raise ReviewError(f"a note is at most {ids.MAX_NOTE} characters")
    if verdict == "changes" and not note.strip():
        raise ReviewError("say what needs changing in the note")
    run = store.get_run(story, run_id)
    if run is None:
        raise ReviewError(f"no run {run_id} of {story}")
    keys = shot_keys(run, shot)
    if not keys:
        raise ReviewError(f"run {run_id} of {story} has no shot {shot}")
    review = Review(verdict=verdict, note=note.strip(), who=ids.who(who), when=utcnow(),
                    run_id=run_id, key=keys[0], keys=keys)
    with _LOCK:
        past = history(store, story, shot)
        doc = {"story": story, "shot": shot,
               "reviews": [r.model_dump() for r in [*past, review]]}
        store.put_doc(review_path(story, shot), json.dumps(doc, indent=2).encode())
    return review


def story_reviews(store: Store, story: str) -> dict[str, list[Review]]:
    """Every reviewed shot of ``story`` → its history, oldest first."""
    prefix = f"reviews/{ids.story_id(story)}/"
    out = {}
    for rel in store.list_docs(prefix):
        name = rel[len(prefix):].removesuffix(".json")
        if not rel.endswith(".json") or not ids.SHOT_RE.match(name):
            continue
        h = history(store, story, name)
        if h:
            out[name] = h
    return out


def summary(reviews: dict[str, list[Review]], run: dict[str, Any] | None
            ) -> dict[str, dict[str, Any]]:
    """Each shot's latest review, and whether it judged the take ``run`` has (``current``:
    ``None`` when the run does not have the shot)."""
    out = {}
    for shot, hist in reviews.items():
        last = hist[-1]
        keys = shot_keys(run, shot) if run else []
        out[shot] = {**last.model_dump(), "shot": shot,
                     "current": (sorted(keys) == sorted(last.keys)) if keys else None,
                     "history": [r.model_dump() for r in hist]}
    return out
