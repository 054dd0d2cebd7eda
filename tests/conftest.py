"""Shared fixtures. Fixture modules live beside this file as ``fixtures_*.py``."""

from __future__ import annotations

import os

# Tests never reach a model hub: everything they load is built locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from fixtures_autoscaling import *  # noqa: E402,F401,F403
from fixtures_delivery import *  # noqa: E402,F401,F403
from fixtures_ray import *  # noqa: E402,F401,F403
from fixtures_rayhead import *  # noqa: F401,F403
from fixtures_s3 import *  # noqa: F401,F403
