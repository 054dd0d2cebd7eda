"""reelfarm's control plane: manifest → plan → schedule → assemble.

The public Python API for pipelines::

    from orchestrator import load_manifest, expand, render_story, RenderOptions

    manifest = load_manifest("manifests/heist.yaml")       # raises ManifestInvalid
    plan = expand(manifest.story)                          # raises PlanError
    result = render_story(manifest.story, RenderOptions(store="s3://studio/reelfarm"))
    print(result.exit_code, [b["master"] for b in result.branches])

Jobs on a running Ray cluster, the verbs of ``reelfarm submit``/``jobs``/``status``/``logs``/
``cancel`` (see :mod:`orchestrator.jobs` and docs/submit.md)::

    from orchestrator import submit, wait_job

    job = submit("manifests/heist.yaml", address="http://ray-head:8265",
                 store="s3://studio/reelfarm", out="s3://studio/renders/heist/")
    status = wait_job(job.job_id, address="http://ray-head:8265")
    print(status.state, status.totals)

Everything else is implementation and may change.

Most names load on first use, not at ``import orchestrator``: every renderer actor imports
``orchestrator.store`` and ``orchestrator.plan``, and should not pay for the manifest loader,
the scheduler and the jobs client at start-up. ``expand`` is imported at once: it shares its
name with its module, which would otherwise replace it here when first imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .expand import PlanError, expand

if TYPE_CHECKING:
    from .errors import ManifestInvalid, Problem
    from .jobs import (
        JobAuthError,
        JobError,
        JobExists,
        JobInfo,
        JobNotFound,
        JobStatus,
        JobUnreachable,
        cancel,
        job_logs,
        job_status,
        list_jobs,
        submit,
        wait_job,
    )
    from .loading import Manifest, load_manifest
    from .manifest import Story
    from .plan import Branch, RenderPlan, RenderTask
    from .render import RenderOptions, RenderResult, render_story
    from .schedule import SchedulerOptions, Unplaceable
    from .store import Store, open_store

_HOME = {
    "ManifestInvalid": "errors", "Problem": "errors",
    "PlanError": "expand", "expand": "expand",  # imported above
    "JobAuthError": "jobs", "JobError": "jobs", "JobExists": "jobs", "JobInfo": "jobs",
    "JobNotFound": "jobs", "JobStatus": "jobs", "JobUnreachable": "jobs", "cancel": "jobs",
    "job_logs": "jobs", "job_status": "jobs", "list_jobs": "jobs", "submit": "jobs",
    "wait_job": "jobs",
    "Manifest": "loading", "load_manifest": "loading",
    "Story": "manifest",
    "Branch": "plan", "RenderPlan": "plan", "RenderTask": "plan",
    "RenderOptions": "render", "RenderResult": "render", "render_story": "render",
    "SchedulerOptions": "schedule", "Unplaceable": "schedule",
    "Store": "store", "open_store": "store",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value  # once loaded, a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "Branch",
    "JobAuthError",
    "JobError",
    "JobExists",
    "JobInfo",
    "JobNotFound",
    "JobStatus",
    "JobUnreachable",
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
    "cancel",
    "expand",
    "job_logs",
    "job_status",
    "list_jobs",
    "load_manifest",
    "open_store",
    "render_story",
    "submit",
    "wait_job",
]
