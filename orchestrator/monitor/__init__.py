"""``reelfarm ui``: a web monitor over a store (runs, the story graph, shots, logs, masters) and
the reviews it records (``reelfarm reviews``)."""

from __future__ import annotations

from .reviews import Review, ReviewError, add_review, story_reviews, summary
from .server import is_loopback, make_app, serve

__all__ = ["Review", "ReviewError", "add_review", "is_loopback", "make_app", "serve",
           "story_reviews", "summary"]
