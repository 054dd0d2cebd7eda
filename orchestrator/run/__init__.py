"""A render on Ray: the driver loop, its state machine, dispatch policy and worker pool,
progress and assembly, and :func:`orchestrator.run.render.render_story` that runs them."""
