"""A few RL steps of `posttrain run stage=rlve` on a two-node Ray cluster started on this machine.

Run as a module by test_multinode_rl.py, so its cluster never meets a test session's local Ray. Each node
offers one `rollout_slot` and each of the two rollout workers needs one, so the fleet's placement group
can only be satisfied with one worker per node: the run succeeding means both nodes generated.
Prints one JSON line: the run's return code, its stderr tail and the Ray processes left over.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.rollout.multinode import SLOT, two_node_cluster


def main(run_root: str) -> int:
    os.environ["RAY_AUTH_MODE"] = "disabled"
    import ray

    with two_node_cluster("rln") as (address, _, result):
        result["slots"] = ray.cluster_resources().get(SLOT)
        ray.shutdown()
        args = ["stage=rlve", "model.path=zaya-tiny", f"run.root={run_root}", f"ray.address={address}"]
        args += ["rollout.num_workers=2", f"rollout.resources_per_worker.{SLOT}=1", "rollout.batch_size=4"]
        args += ["trainer.max_steps=2", "rl.prompts_per_step=4", "rl.group_size=4", "rollout.max_new_tokens=8"]
        args += ["eval.num_samples=4", "logging.progress=off"]
        run = subprocess.run(
            [sys.executable, "-m", "posttrain.cli", "run", *args],
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            capture_output=True,
            text=True,
            timeout=400,
        )
        result.update(returncode=run.returncode, stderr=run.stderr[-3000:])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
