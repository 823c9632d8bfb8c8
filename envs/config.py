"""Config sections `envs` and `curriculum` (OmegaConf structured-config compatible dataclasses)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from posttrain.errors import require

CURRICULUM_KINDS = ("rlve", "target", "fixed")


@dataclass
class EnvsConfig:
    """Which envs to train on and how they are run.

    `names` takes registered names, `rlve:<Identifier>`, `rg:<dataset>`, `module:Class`,
    `path/to/file.py:Class`, and the shorthands `builtin`, `rlve` and `rg` (every env of that source
    except those listed as broken upstream).
    """

    names: list[str] = field(default_factory=lambda: ["builtin"])
    weights: dict[str, float] = field(default_factory=dict)  # env name -> mixing weight (default 1.0)
    workers: int = 2  # pool processes for generation and verification
    generate_timeout_s: float = 30.0  # hard, per call: the worker is killed when it overruns
    verify_timeout_s: float = 10.0
    quarantine_after: int = 5  # env failures (crash, hang, garbage) before an env is dropped from the run
    max_completion_chars: int = 1_000_000  # longer completions score as format failures without being parsed

    def __post_init__(self) -> None:
        require(bool(self.names), "envs.names must name at least one env")
        require(self.workers >= 1, "envs.workers must be >= 1")
        require(self.generate_timeout_s > 0 and self.verify_timeout_s > 0, "envs timeouts must be > 0")
        require(self.quarantine_after >= 1, "envs.quarantine_after must be >= 1")
        require(all(w >= 0 for w in self.weights.values()), "envs.weights must be >= 0")


@dataclass
class CurriculumConfig:
    """How difficulty follows the model. `kind`: rlve (arXiv 2511.07317), target (pass-rate), fixed."""

    kind: str = "rlve"
    window: int = 4  # rlve: sample d uniformly from (h - window, h]
    threshold: float = 0.9  # rlve: accuracy at d = h needed to raise h
    min_samples: int = 128  # rlve: samples at d = h before h may move
    target_rate: float = 0.5  # target: pass rate to hold each env at
    target_decay: float = 0.995  # target: per-update discount of old outcomes, so the posteriors track learning
    fixed_difficulty: int = 0  # fixed: the difficulty of every problem
    max_difficulty: int | None = None  # cap for every env (None: each env's own range)

    def __post_init__(self) -> None:
        close = difflib.get_close_matches(self.kind, CURRICULUM_KINDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (choose from {', '.join(CURRICULUM_KINDS)})"
        require(self.kind in CURRICULUM_KINDS, f"unknown curriculum.kind {self.kind!r}{hint}")
        require(self.window >= 1, "curriculum.window must be >= 1")
        require(0.0 < self.threshold <= 1.0, "curriculum.threshold must be in (0, 1]")
        require(self.min_samples >= 1, "curriculum.min_samples must be >= 1")
        require(0.0 < self.target_rate < 1.0, "curriculum.target_rate must be in (0, 1)")
        require(0.0 < self.target_decay <= 1.0, "curriculum.target_decay must be in (0, 1]")
        require(self.fixed_difficulty >= 0, "curriculum.fixed_difficulty must be >= 0")
        require(self.max_difficulty is None or self.max_difficulty >= 0, "curriculum.max_difficulty must be >= 0")
