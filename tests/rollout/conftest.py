"""One local Ray session for every rollout test (starting Ray costs seconds), and shared tiny models."""

from __future__ import annotations

import pytest

from posttrain.models import load_model
from posttrain.rollout.config import RayConfig
from posttrain.rollout.session import init_ray, shutdown_ray


@pytest.fixture(scope="session")
def ray_session():
    # Logical CPUs: two 1-CPU workers plus a replacement being placed while the dead one's bundle frees.
    owned = init_ray(RayConfig(num_cpus=4))
    yield
    if owned:
        shutdown_ray()


@pytest.fixture(scope="session")
def tiny():
    """zaya-tiny as every worker builds it (same seed), for teacher-forced oracles."""
    model, tokenizer = load_model("zaya-tiny", seed=0)
    return model.eval(), tokenizer
