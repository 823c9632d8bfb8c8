"""The RL loop: problem source -> fleet -> scorer -> learner -> weight sync, one step at a time.

Every RL stage is this loop with different parts: where problems come from (`posttrain.rl.sources`), how
completions are scored (`posttrain.rl.scoring`), how problems are asked (`posttrain.rl.collect`).

With `rl.max_staleness = 0` every step generates with the newest weights (synchronous, on-policy).
With k >= 1 the next step's rollouts are generated in a background thread while the learner trains on
the current ones (PipelineRL-style); the config check makes sure no rollout can be older than k.
Before learning, a step drops samples the scorer failed on (never the model's fault), too-stale rollouts,
groups the pass-rate filter calls solved, and groups with no reward spread; it refills up to MAX_REFILLS times.
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

from posttrain.checkpoint import jsonable, step_of, tupled
from posttrain.models.lora import plain_state_dict
from posttrain.rl.batch import TrainBatch
from posttrain.rl.collect import Collector, Sample, sample_metrics
from posttrain.rl.filters import informative_groups, overlong_mask
from posttrain.rl.learner import Learner
from posttrain.rl.router_replay import batch_routing
from posttrain.rl.sources import ProblemSource
from posttrain.rollout.backend import Fleet
from posttrain.run_context import RunContext

POLICY_DIR, LEARNER_FILE, LOOP_FILE = "policy", "learner.pt", "loop.json"
MAX_REFILLS = 4


@dataclass
class RLParts:
    fleet: Fleet
    learner: Learner
    source: ProblemSource
    collector: Collector
    tokenizer: PreTrainedTokenizerBase


class RLLoop:
    def __init__(self, ctx: RunContext, parts: RLParts) -> None:
        self.ctx, self.parts = ctx, parts
        self.cfg = ctx.cfg
        self.source_lock = threading.Lock()  # the prefetch thread draws while the main thread gives feedback
        self.step = 0

    # --- one step's data -----------------------------------------------------------------------
    def produce(self, step: int, attempt: int, prompts: int) -> tuple[list[Sample], dict[str, float]]:
        """Scored samples for `prompts` fresh problems."""
        with self.source_lock:
            problems = self.parts.source.draw(prompts)
        if not problems:
            raise RuntimeError("the problem sources are exhausted (every row was filtered out)")
        return self.parts.collector.collect(problems, step, attempt)

    def _usable(self, samples: list[Sample], metrics: dict[str, float]) -> list[Sample]:
        """Drop what must not train: scorer failures, untrained rounds, stale rollouts, solved and flat groups."""
        rl = self.cfg.rl
        failed = [s for s in samples if s.error is not None]
        metrics["scorer_errors_dropped"] = metrics.get("scorer_errors_dropped", 0) + len(failed)
        version = self.parts.learner.step_count
        candidates = [s for s in samples if s.error is None and s.trained]
        fresh = [s for s in candidates if version - s.rollout.policy_version <= rl.max_staleness]
        metrics["stale_dropped"] = metrics.get("stale_dropped", 0) + len(candidates) - len(fresh)
        if fresh:
            ages = [version - s.rollout.policy_version for s in fresh]
            metrics["staleness"] = sum(ages) / len(ages)
        threshold = self.cfg.problems.pass_rate_filter
        if threshold > 0:
            fresh = self._filter_solved(fresh, threshold, metrics)
        if not rl.dynamic_sampling:
            return fresh
        kept = [fresh[i] for i in informative_groups([s.reward for s in fresh], [s.group for s in fresh])]
        dropped = len({s.group for s in fresh}) - len({s.group for s in kept})
        metrics["groups_dropped"] = metrics.get("groups_dropped", 0) + dropped
        return kept

    def _filter_solved(self, samples: list[Sample], threshold: float, metrics: dict[str, float]) -> list[Sample]:
        """Groups whose pass rate (their own samples: a k = group-size estimate) is above `threshold` are dropped,
        and their problem is never drawn again (ZAYA1's warmup filter at 0.75)."""
        by_group: dict[int, list[Sample]] = {}
        for s in samples:
            by_group.setdefault(s.group, []).append(s)
        solved = {g for g, group in by_group.items() if sum(s.correct for s in group) / len(group) > threshold}
        with self.source_lock:
            for group in solved:
                self.parts.source.exclude(by_group[group][0].problem)
        metrics["pass_rate_filtered"] = metrics.get("pass_rate_filtered", 0) + len(solved)
        return [s for s in samples if s.group not in solved]

    def gather(self, step: int, first: Future | None) -> tuple[list[Sample], list[Sample], dict[str, float]]:
        """(all scored samples, the trainable ones, metrics), refilling dropped groups up to MAX_REFILLS times."""
        wanted = self.cfg.rl.prompts_per_step
        scored, usable, metrics = [], [], {}
        scorer_metrics: dict[str, list[tuple[float, int]]] = {}  # (value, samples scored) per attempt
        for attempt in range(MAX_REFILLS + 1):
            if attempt == 0 and first is not None:
                samples, timings = first.result()
            else:
                samples, timings = self.produce(step, attempt, wanted - _problems(usable))
            offset = attempt * 1_000_000  # group ids of refills never collide with earlier ones
            for s in samples:
                s.group += offset
            for key, value in timings.items():  # times add up over refills; the scorer's means are pooled
                if key.startswith("time/"):
                    metrics[key] = metrics.get(key, 0.0) + value
                else:
                    scorer_metrics.setdefault(key, []).append((value, len(samples)))
            scored += samples
            usable += self._usable(samples, metrics)
            if _problems(usable) >= wanted:
                break
        for key, values in scorer_metrics.items():
            metrics[key] = sum(v * n for v, n in values) / max(sum(n for _, n in values), 1)
        with self.source_lock:
            for s in scored:
                if s.error is None and not (s.kind == "ttc" and s.round == 0):  # candidates may be another model's
                    self.parts.source.feedback(s.problem, s.correct)
        return scored, usable, metrics

    def batch(self, samples: list[Sample], step: int = 0) -> TrainBatch:
        rewards = [s.reward for s in samples]
        if self.cfg.rl.reward_control == "shuffle":  # the control arm: the same updates, with the signal destroyed
            random.Random(f"{self.cfg.seed}:{step}:shuffle").shuffle(rewards)
        batch = TrainBatch.from_lists(
            [s.rollout.prompt_ids for s in samples],
            [s.rollout.completion_ids for s in samples],
            [s.rollout.logprobs for s in samples],
            rewards,
            [s.group for s in samples],
            pad_token_id=self.parts.tokenizer.pad_token_id,
            advantage=None,  # the learner computes them (after a KL reward penalty, when one is on)
            temperatures=[s.rollout.params.scoring_temperature for s in samples],
        )
        if self.cfg.rl.overlong_filter:
            batch.completion_mask = overlong_mask(batch.completion_mask, [s.truncated for s in samples])
        if self.cfg.rl.router_replay:
            prompts = [len(s.rollout.prompt_ids) for s in samples]
            batch.routing = batch_routing(prompts, [s.rollout.routing for s in samples], batch.input_ids.shape[1])
        return batch

    # --- the loop ------------------------------------------------------------------------------
    def run(self, on_step: Callable[[int, dict[str, Any]], None] | None = None) -> None:
        start = self.restore() if self.ctx.resume_from else 0
        rl, max_steps = self.cfg.rl, self.cfg.trainer.max_steps
        if start:  # the fleet loaded the checkpoint's weights as version 0: stamp them with their real version
            self.sync()
        prefetch = ThreadPoolExecutor(1) if rl.max_staleness > 0 else None
        pending: Future | None = None
        try:
            for step in range(start + 1, max_steps + 1):
                began = time.perf_counter()
                scored, usable, metrics = self.gather(step, pending)
                pending = None
                if prefetch is not None and step < max_steps:  # generation of step+1 overlaps learning
                    pending = prefetch.submit(self.produce, step + 1, 0, rl.prompts_per_step)
                metrics.update(sample_metrics(scored, self.parts.source.stats))
                metrics["samples_trained"] = len(usable)
                trained_rounds = Counter(s.round for s in usable)
                for rsa_round in sorted({s.round for s in scored if s.trained}):  # 0 when every group was dropped
                    metrics[f"samples_trained/round{rsa_round}"] = trained_rounds[rsa_round]
                tokens = sum(len(s.rollout.completion_ids) for s in scored)
                metrics["generate_tokens_per_s"] = tokens / max(metrics["time/generate"], 1e-9)
                metrics["time/learn"] = 0.0  # a step whose every group was dropped does not learn
                if usable:
                    learned = self.parts.learner.step(self.batch(usable, step))
                    metrics.update({f"learn/{k}": v for k, v in learned.items()})
                    metrics["time/learn"] = learned.get("train_seconds", 0.0)
                synced = time.perf_counter()
                if step % rl.sync_every == 0 or step == max_steps:
                    self.sync()
                metrics["time/sync"] = time.perf_counter() - synced
                metrics["time/step"] = time.perf_counter() - began
                self.step = step
                self.ctx.metrics.log(step, metrics)
                if on_step is not None:
                    on_step(step, metrics)
                if step % self.cfg.trainer.save_every == 0 or step == max_steps:
                    if pending is not None:  # the checkpoint must not race the prefetch thread's draw
                        pending.result()
                    self.save(step)
        finally:
            if prefetch is not None:
                prefetch.shutdown(wait=True, cancel_futures=True)

    def sync(self) -> None:
        """Serve the learner's weights (LoRA deltas folded in) to the fleet, stamped with its step count."""
        self.parts.fleet.sync_weights(plain_state_dict(self.parts.learner.model), self.parts.learner.step_count)

    # --- checkpoints ---------------------------------------------------------------------------
    def save(self, step: int) -> Path:
        def write(directory: Path) -> None:
            self.parts.learner.model.save_pretrained(directory / POLICY_DIR)
            self.parts.tokenizer.save_pretrained(directory / POLICY_DIR)
            torch.save(self.parts.learner.state_dict(), directory / LEARNER_FILE)
            state = {
                "step": step,
                "source": self.parts.source.state_dict(),
                "python_rng": jsonable(random.getstate()),
                "numpy_rng": jsonable(np.random.get_state()),
            }
            (directory / LOOP_FILE).write_text(json.dumps(state))
            torch.save(torch.get_rng_state(), directory / "torch_rng.pt")

        return self.ctx.checkpoints.save(step, write)

    def restore(self) -> int:
        """Learner, source and RNG state from `ctx.resume_from`; the weights were loaded by the stage."""
        directory = self.ctx.resume_from
        self.parts.learner.load_state_dict(torch.load(directory / LEARNER_FILE, weights_only=False))
        state = json.loads((directory / LOOP_FILE).read_text())
        self.parts.source.load_state_dict(state["source"])
        random.setstate(tupled(state["python_rng"]))
        np.random.set_state(tupled(state["numpy_rng"]))
        torch.set_rng_state(torch.load(directory / "torch_rng.pt"))
        return step_of(directory)


def _problems(samples: list[Sample]) -> int:
    """Distinct problems among `samples`; with Markovian RSA one problem has a group per trained round."""
    return len({(s.problem.env, s.problem.seed, s.problem.difficulty, s.problem.prompt) for s in samples})


def resume_weights(resume_from: Path | None) -> Path | None:
    """The policy directory a resumed run must load instead of `model.path`."""
    return resume_from / POLICY_DIR if resume_from is not None else None
