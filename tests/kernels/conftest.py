"""Kernel tests run in Triton's CPU interpreter.

Triton reads TRITON_INTERPRET when a kernel is decorated, i.e. when its module is imported, so it is set
as this file is collected, before the test modules beside it import a kernel module (one that an earlier
test imported without it is reloaded). After this folder's tests it is restored, so later tests see the
environment they would see without this folder.
"""

from __future__ import annotations

import importlib
import os
import sys

import pytest

_previous = os.environ.get("TRITON_INTERPRET")
os.environ["TRITON_INTERPRET"] = "1"
for _name in ("posttrain.kernels.linear_logprobs", "posttrain.kernels.moe"):
    if _name in sys.modules:
        importlib.reload(sys.modules[_name])


@pytest.fixture(scope="package", autouse=True)
def _interpreter_only_here():
    os.environ["TRITON_INTERPRET"] = "1"
    yield
    if _previous is None:
        os.environ.pop("TRITON_INTERPRET", None)
    else:
        os.environ["TRITON_INTERPRET"] = _previous
