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
the scheduler and the jobs client at start-up.

The package is laid out as the data flows (see the README's module table): ``spec`` (the
manifest), ``plan`` (expansion, keys), ``run`` (the driver on Ray), ``store`` (stores, outputs,
cache upkeep), ``jobs`` (cluster submission, nightly) and ``cli``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .jobs.client import (
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
    from .plan.expand import PlanError, expand
    from .plan.models import Branch, RenderPlan, RenderTask
    from .run.driver import SchedulerOptions, Unplaceable
    from .run.render import RenderOptions, RenderResult, render_story
    from .spec.errors import ManifestInvalid, Problem
    from .spec.loading import Manifest, load_manifest
    from .spec.manifest import Story
    from .store import Store, open_store

_HOME = {
    "ManifestInvalid": "spec.errors", "Problem": "spec.errors",
    "PlanError": "plan.expand", "expand": "plan.expand",
    "JobAuthError": "jobs.client", "JobError": "jobs.client", "JobExists": "jobs.client",
    "JobInfo": "jobs.client", "JobNotFound": "jobs.client", "JobStatus": "jobs.client",
    "JobUnreachable": "jobs.client", "cancel": "jobs.client", "job_logs": "jobs.client",
    "job_status": "jobs.client", "list_jobs": "jobs.client", "submit": "jobs.client",
    "wait_job": "jobs.client",
    "Manifest": "spec.loading", "load_manifest": "spec.loading",
    "Story": "spec.manifest",
    "Branch": "plan.models", "RenderPlan": "plan.models", "RenderTask": "plan.models",
    "RenderOptions": "run.render", "RenderResult": "run.render", "render_story": "run.render",
    "SchedulerOptions": "run.driver", "Unplaceable": "run.driver",
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
