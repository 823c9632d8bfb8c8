"""Shared runs of `posttrain run stage=rlve` at toy size, through the real CLI in subprocesses.

One session fixture builds the SFT model *through* the build-on-demand path (a one-step `stage=warmup` with no
`model.path`, a fresh run.root and stage-scoped `sft.*` overrides), so the same run buys the SFT'd model every
other test starts from and the build-on-demand check; then it runs the uninterrupted rlve reference run (from
that SFT model) that the resume test compares to.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

from tests.conftest import cli_env

# Every test's RL run: 4 prompts x 4 samples of 8 tokens a step; 8 held-out prompts before/after, scored greedily
# and at T=1 with 4 samples each.
TINY = [
    "stage=rlve",
    "rl.prompts_per_step=4",
    "rl.group_size=4",
    "rollout.max_new_tokens=8",
    "eval.num_samples=8",
    "eval.temperatures=[1.0]",
    "eval.pass_k=4",
    "logging.progress=off",
]
SFT_SMALL = ["sft.trainer.max_steps=30", "sft.data.num_train=2000", "sft.eval.num_samples=8"]
# The reference run (and the killed one that must match it): a pass-rate curriculum, whose difficulty is
# a float that moves every step, so a lost or stale curriculum state shows in the metrics.
REFERENCE = [*TINY, "trainer.max_steps=5", "trainer.save_every=1", "trainer.keep_checkpoints=10"]
REFERENCE += ["curriculum.kind=target", "seed=3"]


def posttrain(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "posttrain.cli", "run", *args],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def popen(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "posttrain.cli", "run", *args],
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # SIGKILL of the group takes the run's Ray and worker processes down too
    )


@dataclass
class ReferenceRun:
    root: Path
    built: subprocess.CompletedProcess  # the one-step warmup run that built sft on demand
    result: subprocess.CompletedProcess  # the rlve reference run

    @property
    def dir(self) -> Path:
        return self.root / "rlve"

    @property
    def sft_final(self) -> Path:
        return self.root / "sft" / "final"


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> ReferenceRun:
    # Under pytest-xdist every worker asks for it: the first one builds it in the run's shared base directory and
    # the others wait on the lock, then reuse it (its commands' output is kept next to it).
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        return _build_reference(tmp_path_factory.mktemp("reference"))
    shared = tmp_path_factory.getbasetemp().parent  # this run's base, common to its workers
    with FileLock(str(shared / "reference.lock")):
        root = shared / "reference"
        if not (root / "reference.json").is_file():
            _build_reference(root)
    saved = json.loads((root / "reference.json").read_text())
    return ReferenceRun(root, *(subprocess.CompletedProcess(**saved[key]) for key in ("built", "result")))


def _build_reference(root: Path) -> ReferenceRun:
    root.mkdir(parents=True, exist_ok=True)
    warmup = ["stage=warmup", *TINY[1:], "trainer.max_steps=1", "eval.num_samples=4"]
    built = posttrain(*warmup, *SFT_SMALL, f"run.root={root}", timeout=900)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    result = posttrain(*REFERENCE, f"model.path={root / 'sft' / 'final'}", f"run.root={root}", timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    saved = {key: {"args": run.args, "returncode": run.returncode, "stdout": run.stdout, "stderr": run.stderr}
             for key, run in (("built", built), ("result", result))}  # fmt: skip
    (root / "reference.json").write_text(json.dumps(saved))
    return ReferenceRun(root, built, result)


@pytest.fixture(scope="session")
def sft_model(reference) -> str:
    return str(reference.sft_final)
