"""The plan: a story expanded into render tasks and branches, with their cache keys.

The plan models are re-exported here (every renderer actor unpickles a :class:`RenderTask`);
expansion (:mod:`orchestrator.plan.expand`) and keys (:mod:`orchestrator.plan.keys`) load on
their own import.
"""

from __future__ import annotations

from .models import Branch, RenderPlan, RenderTask

__all__ = ["Branch", "RenderPlan", "RenderTask"]
