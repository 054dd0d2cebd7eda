"""``python -m orchestrator.cli``."""

from .story import main

main()
