"""The RL tests run tiny models, where torch's intra-op threads only contend with each other (and with
other test processes on a 2-core machine): one thread is ~100x faster there than two on a busy box."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
