"""Curricula: which env, seed and difficulty each problem gets, updated from the verdicts.

* `rlve` (arXiv 2511.07317): each env keeps an upper difficulty h (from 0) and samples d uniformly from
  (h − window, h] ∩ [0, h]. Only outcomes at d = h count; once `min_samples` of them are in, h rises by one
  if their accuracy is ≥ `threshold`, and the counters reset either way. h never falls.
* `target`: Thompson sampling. Each (env, d) has a Beta posterior over its pass rate; a draw is taken for
  every difficulty up to one past the hardest tried, each draw capped by the posterior means of easier difficulties
  (pass rates fall with difficulty), and the one closest to `target_rate` wins. Old outcomes are
  discounted by `target_decay` per update, so difficulty can fall as well as rise.
* `fixed`: every problem at `fixed_difficulty`.

All randomness (env choice, difficulty, problem seed) comes from the curriculum's own `random.Random`,
whose state is part of `state_dict()`, so a resumed run draws exactly what the uninterrupted one would.
"""

from __future__ import annotations

from random import Random
from typing import Any

from posttrain.envs.config import CurriculumConfig
from posttrain.errors import UserError


class Curriculum:
    kind = ""

    def __init__(
        self,
        envs: list[str],
        config: CurriculumConfig,
        *,
        weights: dict[str, float] | None = None,
        max_difficulties: dict[str, int | None] | None = None,
        seed: int = 0,
    ) -> None:
        if not envs:
            raise UserError("a curriculum needs at least one env")
        self.envs = list(dict.fromkeys(envs))
        self.config = config
        self.weights = {name: float((weights or {}).get(name, 1.0)) for name in self.envs}
        caps = max_difficulties or {}
        self.caps = {name: _min_cap(caps.get(name), config.max_difficulty) for name in self.envs}
        self.disabled: set[str] = set()
        self.rng = Random(seed)
        self.state: dict[str, dict[str, Any]] = {name: self._initial() for name in self.envs}

    # --- subclass hooks ---------------------------------------------------------------------------
    def _initial(self) -> dict[str, Any]:
        return {}

    def _difficulty(self, env: str) -> int:
        raise NotImplementedError

    def _record(self, env: str, difficulty: int, correct: bool) -> None:
        """Default: outcomes do not move anything."""

    def level(self, env: str) -> float:
        """One number per env for the metrics log (the current difficulty frontier)."""
        return float(self.config.fixed_difficulty)

    # --- public API -------------------------------------------------------------------------------
    def sample(self, n: int) -> list[tuple[str, int, int]]:
        """`n` (env, problem seed, difficulty) requests, env chosen by mixing weight among enabled envs."""
        active = [name for name in self.envs if name not in self.disabled and self.weights[name] > 0]
        if not active:
            raise RuntimeError("every env is disabled or has weight 0")
        chosen = self.rng.choices(active, weights=[self.weights[name] for name in active], k=n)
        return [(name, self.rng.getrandbits(32), self._difficulty(name)) for name in chosen]

    def update(self, env: str, difficulty: int, correct: bool) -> None:
        if env in self.state:
            self._record(env, int(difficulty), bool(correct))

    def disable(self, env: str) -> None:
        """Stop sampling an env (e.g. quarantined by the pool); its state is kept."""
        self.disabled.add(env)

    def stats(self) -> dict[str, float]:
        return {f"curriculum/{name}": self.level(name) for name in self.envs}

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = self.rng.getstate()
        return {
            "kind": self.kind,
            "rng": [version, list(internal), gauss],
            "envs": {name: _copy(state) for name, state in self.state.items()},
            "disabled": sorted(self.disabled),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != self.kind:
            raise UserError(f"curriculum state is for kind {state.get('kind')!r}, this run uses {self.kind!r}")
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        for name, env_state in state["envs"].items():
            if name in self.state:  # envs removed from the config are dropped; new ones start fresh
                self.state[name] = _copy(env_state)
        self.disabled = set(state["disabled"]) & set(self.envs)


class RlveCurriculum(Curriculum):
    kind = "rlve"

    def _initial(self) -> dict[str, Any]:
        return {"h": 0, "seen": 0, "correct": 0}

    def _difficulty(self, env: str) -> int:
        h = self.state[env]["h"]
        return self.rng.randint(max(0, h - self.config.window + 1), h)

    def _record(self, env: str, difficulty: int, correct: bool) -> None:
        state = self.state[env]
        if difficulty != state["h"]:
            return
        state["seen"] += 1
        state["correct"] += int(correct)
        if state["seen"] >= self.config.min_samples:
            cap = self.caps[env]
            if state["correct"] / state["seen"] >= self.config.threshold and (cap is None or state["h"] < cap):
                state["h"] += 1
            state["seen"] = state["correct"] = 0

    def level(self, env: str) -> float:
        return float(self.state[env]["h"])


FORGOTTEN = 0.01  # a discounted count this small carries no information; dropping it bounds the state


class TargetCurriculum(Curriculum):
    kind = "target"

    def _initial(self) -> dict[str, Any]:
        return {"wins": {}, "losses": {}}  # str(difficulty) -> discounted count (str keys survive JSON)

    def _candidates(self, env: str) -> range:
        tried = [int(d) for d in self.state[env]["wins"]] + [int(d) for d in self.state[env]["losses"]]
        top = max(tried, default=-1) + 1
        cap = self.caps[env]
        return range(0, (top if cap is None else min(top, cap)) + 1)

    def _difficulty(self, env: str) -> int:
        wins, losses = self.state[env]["wins"], self.state[env]["losses"]
        best, best_gap, ceiling = 0, float("inf"), 1.0
        for d in self._candidates(env):
            alpha, beta = 1.0 + wins.get(str(d), 0.0), 1.0 + losses.get(str(d), 0.0)
            # Pass rates fall with difficulty: capping each draw by the easier difficulties' posterior means
            # keeps a barely-tried hard difficulty (a wide posterior) from looking like a 50% problem.
            draw = min(ceiling, self.rng.betavariate(alpha, beta))
            ceiling = min(ceiling, alpha / (alpha + beta))
            if abs(draw - self.config.target_rate) < best_gap:
                best, best_gap = d, abs(draw - self.config.target_rate)
        return best

    def _record(self, env: str, difficulty: int, correct: bool) -> None:
        state = self.state[env]
        for table in (state["wins"], state["losses"]):
            for key in list(table):
                table[key] *= self.config.target_decay
                if table[key] < FORGOTTEN:
                    del table[key]
        table = state["wins"] if correct else state["losses"]
        table[str(difficulty)] = table.get(str(difficulty), 0.0) + 1.0

    def level(self, env: str) -> float:
        """Posterior-mean-weighted difficulty: where the env is currently being held."""
        wins, losses = self.state[env]["wins"], self.state[env]["losses"]
        # sorted, so the float sum is the same in every process (set order follows the hash seed)
        counts = {d: wins.get(d, 0.0) + losses.get(d, 0.0) for d in sorted(set(wins) | set(losses))}
        total = sum(counts.values())
        return sum(int(d) * c for d, c in counts.items()) / total if total else 0.0


class FixedCurriculum(Curriculum):
    kind = "fixed"

    def _difficulty(self, env: str) -> int:
        cap = self.caps[env]
        return self.config.fixed_difficulty if cap is None else min(self.config.fixed_difficulty, cap)


KINDS: dict[str, type[Curriculum]] = {c.kind: c for c in (RlveCurriculum, TargetCurriculum, FixedCurriculum)}


def make_curriculum(
    config: CurriculumConfig,
    envs: list[str],
    *,
    weights: dict[str, float] | None = None,
    max_difficulties: dict[str, int | None] | None = None,
    seed: int = 0,
) -> Curriculum:
    """The curriculum named by `config.kind` (already validated by `CurriculumConfig`)."""
    return KINDS[config.kind](envs, config, weights=weights, max_difficulties=max_difficulties, seed=seed)


def _min_cap(a: int | None, b: int | None) -> int | None:
    caps = [c for c in (a, b) if c is not None]
    return min(caps) if caps else None


def _copy(state: dict[str, Any]) -> dict[str, Any]:
    return {k: dict(v) if isinstance(v, dict) else v for k, v in state.items()}
