"""Stage 2, reasoning warmup: RL on math and logic problems, with early test-time-compute prompts.

The RL composition (posttrain.rl.stage) with its defaults in configs/stages/warmup.yaml, after the ZAYA1
report: a mix of math and logic/puzzle problems (builtin envs, reasoning-gym datasets as `rg:<name>`, and any
prompt+answer dataset in problems.datasets, graded by `math_equal`); problems the policy already solves more
than 75% of the time are dropped and never drawn again (problems.pass_rate_filter); a share of the prompts are
aggregation prompts over the policy's own candidates (ttc.*), so the model meets the TTC format early.
"""

from __future__ import annotations

from posttrain.rl.stage import RLStage


class Warmup(RLStage):
    name = "warmup"
