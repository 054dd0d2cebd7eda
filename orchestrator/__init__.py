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
"""

from .errors import ManifestInvalid, Problem
from .expand import PlanError, expand
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
