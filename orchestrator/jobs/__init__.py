"""Jobs on a running Ray cluster (:mod:`orchestrator.jobs.client`: the verbs of ``reelfarm
submit``/``jobs``/``status``/``logs``/``cancel``) and the nightly re-render
(:mod:`orchestrator.jobs.nightly`)."""
