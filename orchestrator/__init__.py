"""reelfarm's control plane: manifest → plan → schedule → assemble.

The public Python API for pipelines::

    from orchestrator import load_manifest, expand, render_story, RenderOptions

    manifest = load_manifest("manifests/heist.yaml")       # raises ManifestInvalid
    plan = expand(manifest.story)                          # raises PlanError
    result = render_story(manifest.story, RenderOptions(store="s3://studio/reelfarm"))
    print(result.exit_code, [b["master"] for b in result.branches])

Everything else is implementation and may change.
"""

from .errors import ManifestInvalid, Problem
from .expand import PlanError, expand
from .loading import Manifest, load_manifest
from .manifest import Story
from .plan import Branch, RenderPlan, RenderTask
from .render import RenderOptions, RenderResult, render_story
from .schedule import SchedulerOptions, Unplaceable
from .store import Store, open_store

__all__ = [
    "Branch",
    "Manifest",
    "ManifestInvalid",
    "PlanError",
    "Problem",
    "RenderOptions",
    "RenderPlan",
    "RenderResult",
    "RenderTask",
    "SchedulerOptions",
    "Story",
    "Store",
    "Unplaceable",
    "expand",
    "load_manifest",
    "open_store",
    "render_story",
]
