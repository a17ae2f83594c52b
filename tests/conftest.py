"""Shared test settings: hypothesis profiles and a headless matplotlib."""

import os

import matplotlib
from hypothesis import HealthCheck, settings

matplotlib.use("Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# LRKIT_HYPOTHESIS_EXAMPLES=500 for a stress run; CI uses the default
settings.register_profile(
    "default",
    max_examples=int(os.environ.get("LRKIT_HYPOTHESIS_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("default")
