"""Stage 4, math and code RL with test-time-compute prompts, in two phases (ZAYA1: 384 then 464 steps).

`mathcode_phase1` is math-heavy and `mathcode_phase2` code-heavy; each is the RL composition
(posttrain.rl.stage) with its own config file (configs/stages/mathcode_phase{1,2}.yaml) and its own final/.
`stage=mathcode` runs both in order, phase 2 starting from phase 1's final/; either runs alone. Math problems
are graded by `math_equal` (envs, reasoning-gym, any dataset with an `answer` column); every program is run by
`run_code` in the sandbox (the `pyfunc` env, HumanEval-style and stdin/stdout datasets through the `code`
reward). Aggregation prompts take their candidates from the policy or from an earlier checkpoint (ttc.source).
"""

from __future__ import annotations

from posttrain.rl.stage import RLStage


class MathCodePhase1(RLStage):
    name = "mathcode_phase1"


class MathCodePhase2(RLStage):
    name = "mathcode_phase2"
