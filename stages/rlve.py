"""Stage 3, RLVE: RL on verifiable environments whose difficulty follows the model (arXiv 2511.07317).

The RL composition (posttrain.rl.stage) with its defaults in configs/stages/rlve.yaml: problems from a
curriculum over posttrain.envs (the RLVE rule: each env's upper difficulty h rises once >= 128 samples at
d = h reach 0.9), scored by the envs' own verifiers.
"""

from __future__ import annotations

from posttrain.rl.stage import RLStage


class RLVE(RLStage):
    name = "rlve"
