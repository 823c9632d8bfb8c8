"""The RL loop: curriculum -> fleet -> envs -> learner -> weight sync, one step at a time.

With `rl.max_staleness = 0` every step generates with the newest weights (synchronous, on-policy).
With k >= 1 the next step's rollouts are generated in a background thread while the learner trains on
the current ones (PipelineRL-style); rollouts more than k policy versions old are dropped and counted.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from posttrain.checkpoint import step_of
from posttrain.envs import Curriculum, EnvPool
from posttrain.rewards.shaping import RepetitionCanary
from posttrain.rl.batch import TrainBatch
from posttrain.rl.collect import ProblemSource, Sample, collect_rsa, collect_single, sample_metrics
from posttrain.rl.filters import informative_groups, overlong_mask
from posttrain.rl.learner import Learner
from posttrain.rollout.fleet import RolloutFleet
from posttrain.runner import RunContext

POLICY_DIR, LEARNER_FILE, LOOP_FILE = "policy", "learner.pt", "loop.json"
MAX_REFILLS = 4


@dataclass
class RLParts:
    fleet: RolloutFleet
    learner: Learner
    pool: EnvPool
    curriculum: Curriculum
    tokenizer: PreTrainedTokenizerBase


class RLLoop:
    def __init__(self, ctx: RunContext, parts: RLParts) -> None:
        self.ctx, self.parts = ctx, parts
        self.cfg = ctx.cfg
        self.source = ProblemSource(parts.curriculum, parts.pool)
        self.canary = RepetitionCanary(threshold=self.cfg.rewards.shaping.repetition_threshold)
        self.curriculum_lock = threading.Lock()
        self.step = 0

    # --- one step's data -----------------------------------------------------------------------
    def produce(self, key: int, prompts: int) -> tuple[list[Sample], dict[str, float]]:
        """Scored samples for `prompts` fresh problems; `key` seeds the sampling (step * 100 + refill)."""
        with self.curriculum_lock:
            problems = self.source.draw(prompts)
        fleet, pool = self.parts.fleet, self.parts.pool
        if self.cfg.rollout.strategy == "markovian_rsa":
            return collect_rsa(problems, self.cfg.rsa, self.cfg.rsa.train_rounds, fleet, key, pool, self.canary)
        return collect_single(problems, self.cfg.rl.group_size, fleet, key, pool, self.canary)

    def _usable(self, samples: list[Sample], metrics: dict[str, float]) -> list[Sample]:
        """Drop rollouts that are too stale, then groups that carry no learning signal."""
        version = self.parts.learner.step_count
        fresh = [s for s in samples if version - s.rollout.policy_version <= self.cfg.rl.max_staleness]
        metrics["stale_dropped"] = metrics.get("stale_dropped", 0) + len(samples) - len(fresh)
        if fresh:
            ages = [version - s.rollout.policy_version for s in fresh]
            metrics["staleness"] = sum(ages) / len(ages)
        if not self.cfg.rl.dynamic_sampling:
            return fresh
        kept = [fresh[i] for i in informative_groups([s.reward for s in fresh], [s.group for s in fresh])]
        dropped = len({s.group for s in fresh}) - len({s.group for s in kept})
        metrics["groups_dropped"] = metrics.get("groups_dropped", 0) + dropped
        return kept

    def gather(self, step: int, first: Future | None) -> tuple[list[Sample], list[Sample], dict[str, float]]:
        """(all scored samples, the trainable ones, timings), refilling dropped groups up to MAX_REFILLS times."""
        wanted = self.cfg.rl.prompts_per_step
        scored, usable, metrics = [], [], {}
        for attempt in range(MAX_REFILLS + 1):
            if attempt == 0 and first is not None:
                samples, timings = first.result()
            else:
                missing = wanted - _problems(usable)
                samples, timings = self.produce(step * 100 + attempt, missing)
            offset = attempt * 1_000_000  # group ids of refills never collide with earlier ones
            for s in samples:
                s.group += offset
            for key, value in timings.items():
                metrics[key] = metrics.get(key, 0.0) + value
            scored += samples
            usable += self._usable(samples, metrics)
            if _problems(usable) >= wanted:
                break
        with self.curriculum_lock:
            for s in scored:
                self.parts.curriculum.update(s.problem.env, s.problem.difficulty, s.correct)
        return scored, usable, metrics

    def batch(self, samples: list[Sample]) -> TrainBatch:
        rl = self.cfg.rl
        batch = TrainBatch.from_lists(
            [s.rollout.prompt_ids for s in samples],
            [s.rollout.completion_ids for s in samples],
            [s.rollout.logprobs for s in samples],
            [s.reward for s in samples],
            [s.group for s in samples],
            pad_token_id=self.parts.tokenizer.pad_token_id,
            advantage=rl.advantage,
            advantage_kwargs={"scale_std": rl.grpo_scale_std} if rl.advantage == "grpo" else None,
        )
        if rl.overlong_filter:
            batch.completion_mask = overlong_mask(batch.completion_mask, [s.truncated for s in samples])
        return batch

    # --- the loop ------------------------------------------------------------------------------
    def run(self, on_step: Callable[[int, dict[str, Any]], None] | None = None) -> None:
        start = self.restore() if self.ctx.resume_from else 0
        rl, max_steps = self.cfg.rl, self.cfg.trainer.max_steps
        if start:  # the fleet loaded the checkpoint's weights as version 0: stamp them with their real version
            self.parts.fleet.sync_weights(self.parts.learner.model.state_dict(), self.parts.learner.step_count)
        prefetch = ThreadPoolExecutor(1) if rl.max_staleness > 0 else None
        pending: Future | None = None
        try:
            for step in range(start + 1, max_steps + 1):
                began = time.perf_counter()
                scored, usable, metrics = self.gather(step, pending)
                pending = None
                if prefetch is not None and step < max_steps:  # generation of step+1 overlaps learning
                    pending = prefetch.submit(self.produce, (step + 1) * 100, rl.prompts_per_step)
                metrics.update(sample_metrics(scored, self.parts.curriculum))
                metrics["samples_trained"] = len(usable)
                for rsa_round, count in sorted(Counter(s.round for s in usable).items()):
                    metrics[f"samples_trained/round{rsa_round}"] = count
                tokens = sum(len(s.rollout.completion_ids) for s in scored)
                metrics["generate_tokens_per_s"] = tokens / max(metrics["time/generate"], 1e-9)
                metrics["time/learn"] = 0.0  # a step whose every group was dropped does not learn
                if usable:
                    learned = self.parts.learner.step(self.batch(usable))
                    metrics.update({f"learn/{k}": v for k, v in learned.items()})
                    metrics["time/learn"] = learned.get("train_seconds", 0.0)
                synced = time.perf_counter()
                if step % rl.sync_every == 0 or step == max_steps:
                    self.parts.fleet.sync_weights(self.parts.learner.model.state_dict(), self.parts.learner.step_count)
                metrics["time/sync"] = time.perf_counter() - synced
                metrics["time/step"] = time.perf_counter() - began
                self.step = step
                self.ctx.metrics.log(step, metrics)
                if on_step is not None:
                    on_step(step, metrics)
                if step % self.cfg.trainer.save_every == 0 or step == max_steps:
                    if pending is not None:  # the checkpoint must not race the curriculum's sampler
                        pending.result()
                    self.save(step)
        finally:
            if prefetch is not None:
                prefetch.shutdown(wait=True, cancel_futures=True)

    # --- checkpoints ---------------------------------------------------------------------------
    def save(self, step: int) -> Path:
        def write(directory: Path) -> None:
            self.parts.learner.model.save_pretrained(directory / POLICY_DIR)
            self.parts.tokenizer.save_pretrained(directory / POLICY_DIR)
            torch.save(self.parts.learner.state_dict(), directory / LEARNER_FILE)
            state = {
                "step": step,
                "curriculum": self.parts.curriculum.state_dict(),
                "python_rng": _jsonable_state(random.getstate()),
                "numpy_rng": _jsonable_state(np.random.get_state()),
            }
            (directory / LOOP_FILE).write_text(json.dumps(state))
            torch.save(torch.get_rng_state(), directory / "torch_rng.pt")

        return self.ctx.checkpoints.save(step, write)

    def restore(self) -> int:
        """Learner, curriculum and RNG state from `ctx.resume_from`; the weights were loaded by the stage."""
        directory = self.ctx.resume_from
        self.parts.learner.load_state_dict(torch.load(directory / LEARNER_FILE, weights_only=False))
        state = json.loads((directory / LOOP_FILE).read_text())
        self.parts.curriculum.load_state_dict(state["curriculum"])
        random.setstate(_tupled(state["python_rng"]))
        np.random.set_state(_tupled(state["numpy_rng"]))
        torch.set_rng_state(torch.load(directory / "torch_rng.pt"))
        return step_of(directory)


def _problems(samples: list[Sample]) -> int:
    """Distinct problems among `samples`; with Markovian RSA one problem has a group per trained round."""
    return len({(s.problem.env, s.problem.seed, s.problem.difficulty, s.problem.prompt) for s in samples})


def resume_weights(resume_from: Path | None) -> Path | None:
    """The policy directory a resumed run must load instead of `model.path`."""
    return resume_from / POLICY_DIR if resume_from is not None else None


def _jsonable_state(state: Any) -> Any:
    if isinstance(state, tuple | list):
        return [_jsonable_state(x) for x in state]
    if isinstance(state, np.ndarray):
        return state.tolist()
    return state


def _tupled(state: Any) -> Any:
    if isinstance(state, list):
        return tuple(_tupled(x) for x in state)
    return state
