"""The ``reelfarm`` command."""

from __future__ import annotations

from .story import main

__all__ = ["main"]
