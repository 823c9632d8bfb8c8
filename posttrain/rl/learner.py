"""The learner: turns one rollout batch (a TrainBatch of plain tensors) into policy updates.

`step(batch)`:
  1. anchor log-probs: the fleet's behaviour log-probs μ (`rl.old_logprobs=behaviour`, the default: DPPO's
     trust region is measured against the rollout policy), or recomputed with the current weights before any
     update. With `recompute` and one optimizer step per batch nothing is recomputed: the training forward
     runs on the pre-update weights, so its own detached log-probs are the anchors, as in TRL. Every sample
     is scored at the temperature it was drawn with (`batch.temperatures`). When a KL term is on, reference
     log-probs come from the frozen reference (with LoRA: the same model with its adapters disabled, no copy);
     with `rl.kl_in_reward` the KL is subtracted from the rewards, then the advantages are computed;
  2. `rl.ppo_epochs` passes over the batch, each split into `rl.minibatches` optimizer steps, each
     minibatch into `rl.grad_accum` micro-batches whose losses use the minibatch's denominators, so
     accumulation does not change the gradient;
  3. after every optimizer step: grad-norm clipping before it, ZAYA router bias balancing after it;
  4. one scheduler step per `step()` call (the schedule counts rollout batches, not minibatches).
With `batch.routing` (ZAYA) and `rl.router_replay`, every forward reuses the rollout's expert choices.
Model weights are saved by the caller (save_pretrained); `state_dict()` holds everything else.
`rl.learner_workers > 1` runs replicas of this class in Ray actors (posttrain.rl.distributed); the
data-parallel seams at the bottom of the class are where a replica differs from a single process.
`rl.precision=bf16` runs the forward under bf16 autocast with fp32 islands (posttrain.rl.precision).
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import nullcontext

import torch
from transformers import PreTrainedModel

from posttrain.devices import resolve_device
from posttrain.models.router_balancing import RouterBalancer, find_routers
from posttrain.rl.advantages import compute_advantages
from posttrain.rl.batch import TrainBatch
from posttrain.rl.config import RLConfig
from posttrain.rl.logprobs import token_logprobs
from posttrain.rl.losses import LossParams, compute_policy_loss, kl_estimate, kl_penalized_rewards, masked_mean
from posttrain.rl.optim import build_optimizers, build_schedulers, states_fit


class Learner:
    packs_forwards = True  # training forwards in length buckets with shared contexts (posttrain.rl.packing)

    def __init__(
        self,
        model: PreTrainedModel,
        cfg: RLConfig,
        *,
        ref_model: PreTrainedModel | None = None,
        total_steps: int = 1,
        device: str = "auto",
        seed: int = 0,
        kernels: str = "torch",
    ):
        """`kernels`: a resolved backend (posttrain.devices.resolve_kernels); 'triton' runs the LM head and ZAYA's
        experts through posttrain.kernels."""
        self.uses_reference = cfg.kl_coef > 0 or cfg.kl_metric
        if self.uses_reference and ref_model is None and not hasattr(model, "disable_adapter"):
            raise ValueError("a KL term or metric needs a reference model (or a LoRA model, whose base is it)")
        self.cfg = cfg
        self.device = torch.device(resolve_device(device))
        self.model = model.to(self.device)
        self.kernels = kernels
        if kernels == "triton":
            from posttrain.kernels.moe import use_triton_experts

            use_triton_experts(self.model)
        self.ref_model = ref_model.to(self.device).eval().requires_grad_(False) if ref_model is not None else None
        if cfg.precision == "bf16":
            from posttrain.rl.precision import check_precision, use_bf16_autocast

            check_precision(cfg.precision, self.device.type)
            for policy in filter(None, (self.model, self.ref_model)):
                use_bf16_autocast(policy, self.device.type)
        self.total_steps = total_steps
        self.optimizers = build_optimizers(self.model, cfg)
        self.schedulers = build_schedulers(self.optimizers, cfg, total_steps)
        use_balancer = cfg.router_balancing and bool(find_routers(self.model))
        self.balancer = RouterBalancer(self.model, lr=cfg.router_balancing_lr) if use_balancer else None
        self.params = LossParams(cfg.epsilon_low, cfg.epsilon_high, cfg.dppo_delta, cispo_cap=cfg.cispo_cap)
        self.seed = seed
        self.step_count = 0
        self._single_update = cfg.ppo_epochs == 1 and cfg.minibatches == 1

    def _logprobs(self, model: PreTrainedModel, batch: TrainBatch, *, entropy: bool = False, counted: bool = False):
        """`counted`: router balancing counts this forward's tokens, so it runs as one plain [B, L] pass."""
        replay = self.cfg.router_replay and batch.routing is not None and bool(find_routers(model))
        return token_logprobs(
            model,
            batch.input_ids,
            batch.attention_mask,
            temperature=batch.scoring_temperatures(),
            score_mask=batch.completion_mask,
            with_entropy=entropy,
            kernels=self.kernels,
            logits_budget_mb=self.cfg.logits_budget_mb,
            routing=batch.routing if replay else None,
            pack=self.packs_forwards and not counted,
        )

    @torch.no_grad()
    def _reference_logprobs(self, batch: TrainBatch) -> torch.Tensor:
        if self.ref_model is not None:
            return self.batch_logprobs(self.ref_model, batch)
        self.model.eval()
        with self.model.disable_adapter():  # LoRA: the base model is the reference
            return self.batch_logprobs(self.model, batch)

    @torch.no_grad()
    def prepare(self, batch: TrainBatch, metrics: dict[str, float] | None = None) -> TrainBatch:
        """The batch on the learner's device with its anchors, reference log-probs, KL reward penalty and
        advantages filled in, as `step` trains on it (what is missing is computed before any update)."""
        batch = batch.to(self.device)
        metrics = {} if metrics is None else metrics
        if batch.old_logprobs is None:
            if self.cfg.old_logprobs == "behaviour":
                batch.old_logprobs = batch.behaviour_logprobs
            elif not self._single_update:  # else _micro_loss anchors on its own forward
                self.model.eval()
                batch.old_logprobs = self.batch_logprobs(self.model, batch)
        if self.uses_reference and batch.ref_logprobs is None:
            batch.ref_logprobs = self._reference_logprobs(batch)
        if batch.advantages is None:
            if batch.rewards is None:
                raise ValueError("a batch without advantages needs rewards")
            rewards = batch.rewards
            if self.cfg.kl_in_reward:
                rewards = kl_penalized_rewards(
                    rewards.to(self.device),
                    batch.behaviour_logprobs,  # the policy that drew the tokens
                    batch.ref_logprobs,
                    batch.completion_mask,
                    self.cfg.kl_coef,
                    self.cfg.kl_estimator,
                )
                metrics["reward_after_kl"] = float(rewards.mean())
            kwargs = {"scale_std": self.cfg.grpo_scale_std} if self.cfg.advantage == "grpo" else {}
            batch.advantages = compute_advantages(self.cfg.advantage, rewards.cpu(), batch.group_ids.cpu(), **kwargs)
            batch.advantages = batch.advantages.to(self.device)
        if batch.ref_logprobs is not None:  # KL(μ‖π_ref): how far the sampling policy moved from the start
            kl = kl_estimate(batch.behaviour_logprobs, batch.ref_logprobs, "k3")
            metrics["kl_start"] = masked_mean(kl, batch.completion_mask)
        return batch

    def _micro_loss(self, micro: TrainBatch, num_seqs: int, num_tokens: float, norm_length: int):
        logps, entropy = self._logprobs(self.model, micro, entropy=True, counted=self.balancer is not None)
        return compute_policy_loss(
            self.cfg.loss,
            logps,
            micro.old_logprobs if micro.old_logprobs is not None else logps.detach(),
            micro.token_advantages(),
            micro.completion_mask,
            params=self.params,
            aggregation=self.cfg.aggregation,
            num_seqs=num_seqs,
            num_tokens=num_tokens,
            norm_length=norm_length,
            behaviour_logprobs=micro.behaviour_logprobs,
            tis_cap=self.cfg.tis_cap if self.cfg.old_logprobs == "recompute" else 0.0,
            ref_logprobs=micro.ref_logprobs,
            kl_coef=0.0 if self.cfg.kl_in_reward else self.cfg.kl_coef,
            kl_estimator=self.cfg.kl_estimator,
            entropy=entropy,
        )

    def _optimizer_step(self, minibatch: TrainBatch, norm_length: int, sums: dict[str, float]) -> dict[str, float]:
        num_seqs, num_tokens = minibatch.size, float(minibatch.completion_mask.sum())
        local = self.local_part(minibatch)  # the denominators above stay the whole minibatch's
        total_loss = 0.0
        micros = local.split(min(self.cfg.grad_accum, local.size)) if local.size else []
        for _ in range(self.idle_passes(minibatch, len(micros))):
            self._micro_loss(minibatch.select([0]), num_seqs, num_tokens, norm_length)[0].mul(0.0).backward()
        for micro in micros:
            collect = self.balancer.collect(micro.attention_mask) if self.balancer else nullcontext()
            with collect:
                loss, metrics = self._micro_loss(micro, num_seqs, num_tokens, norm_length)
            loss.backward()
            total_loss += float(loss.detach())
            weight = float(micro.completion_mask.sum())
            for key, value in metrics.items():
                sums[key] += value * weight
            sums["_weight"] += weight
        params = [p for group in self.optimizers for g in group.param_groups for p in g["params"]]
        self.sum_gradients(params)
        limit = self.cfg.max_grad_norm if self.cfg.max_grad_norm > 0 else float("inf")
        grad_norm = self.clip_gradients(params, limit)
        for optimizer in self.optimizers:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        out = {"loss": total_loss, "grad_norm": grad_norm}
        if self.balancer is not None:
            self.sum_across_replicas(self.balancer.counts)
            out.update(self.balancer.step())
        return out

    def step(self, batch: TrainBatch) -> dict[str, float]:
        """Update the policy on one rollout batch; returns metrics averaged over its optimizer steps."""
        prepared: dict[str, float] = {}
        batch = self.prepare(batch, prepared)
        width = int(batch.completion_mask.sum(-1).max()) if batch.size else 0
        norm_length = self.cfg.loss_norm_length or width
        self.model.train()
        start = time.perf_counter()
        sums: dict[str, float] = defaultdict(float)
        per_step: dict[str, list[float]] = defaultdict(list)
        for epoch in range(self.cfg.ppo_epochs):
            # seeded by (seed, step, epoch), so a resumed run shuffles exactly as the uninterrupted one would
            gen = torch.Generator().manual_seed(hash((self.seed, self.step_count, epoch)) & 0x7FFFFFFF)
            order = torch.randperm(batch.size, generator=gen) if self.cfg.shuffle else torch.arange(batch.size)
            shuffled = batch.select(order)
            for minibatch in shuffled.split(min(self.cfg.minibatches, batch.size)):
                for key, value in self._optimizer_step(minibatch, norm_length, sums).items():
                    per_step[key].append(value)
        seconds = time.perf_counter() - start
        lr = self.schedulers[0].get_last_lr()[0]
        for scheduler in self.schedulers:
            scheduler.step()
        self.step_count += 1
        sums, per_step["loss"] = self.combine_replica_metrics(sums, per_step["loss"])
        weight = sums.pop("_weight")
        metrics = {key: value / max(weight, 1.0) for key, value in sums.items()}
        metrics.update({key: sum(values) / len(values) for key, values in per_step.items()})
        trained = float(batch.attention_mask.sum()) * self.cfg.ppo_epochs
        metrics.update(
            lr=lr,
            optimizer_steps=float(len(per_step["loss"])),
            train_seconds=seconds,
            train_tokens_per_s=trained / max(seconds, 1e-9),
            advantage_mean=float(batch.advantages.float().mean()),
        )
        metrics.update(prepared)
        return metrics

    # --- data-parallel seams: the identity in one process; posttrain.rl.distributed's replicas override them ----
    def batch_logprobs(self, model: PreTrainedModel, batch: TrainBatch) -> torch.Tensor:
        """[B, L] log-probs of the whole batch (anchors, reference) without gradients."""
        return self._logprobs(model, batch)[0]

    def local_part(self, minibatch: TrainBatch) -> TrainBatch:
        """The rows of `minibatch` this process computes gradients for: all of them here."""
        return minibatch

    def idle_passes(self, minibatch: TrainBatch, micro_batches: int) -> int:
        """Zero-loss forward/backward passes to run besides this process's `micro_batches`: none here. Sharded
        replicas all-gather weights in every pass, so each must run as many as the busiest."""
        return 0

    def sum_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Make the gradients the sum over learner replicas: they already are, with one."""

    def clip_gradients(self, params: list[torch.nn.Parameter], limit: float) -> float:
        """Scale the gradients to a total norm of at most `limit`; returns the norm before scaling."""
        return float(torch.nn.utils.clip_grad_norm_(params, limit))

    def sum_across_replicas(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` over learner replicas in place: with one, it already is."""
        return tensor

    def combine_replica_metrics(
        self, sums: dict[str, float], losses: list[float]
    ) -> tuple[dict[str, float], list[float]]:
        """Token-weighted metric sums and per-optimizer-step losses summed over replicas."""
        return sums, losses

    def shutdown(self) -> None:
        """Nothing to free: the model lives in this process (a DistributedLearner stops its actors)."""

    def state_dict(self) -> dict:
        return {
            "step": self.step_count,
            "optimizers": [opt.state_dict() for opt in self.optimizers],
            "schedulers": [sched.state_dict() for sched in self.schedulers],
            "balancer": self.balancer.state_dict() if self.balancer is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        if not states_fit(state["optimizers"], self.optimizers):
            raise ValueError("checkpoint was saved with a different optimizer setup (rl.optimizer, rl.param_groups)")
        self.step_count = int(state["step"])
        for opt, saved in zip(self.optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(saved)
        for sched, saved in zip(self.schedulers, state["schedulers"], strict=True):
            sched.load_state_dict(saved)
        if self.balancer is not None and state["balancer"] is not None:
            self.balancer.load_state_dict(state["balancer"])
