"""A rollout worker: one copy of the policy behind an engine, stamping rollouts with its policy version.

The class is plain Python: the fleet wraps it with `ray.remote`, and tests or a single-process run use
it directly as the `generate` callable of Markovian RSA.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import ray
import torch
import transformers

from posttrain.rollout.chat import encode_messages
from posttrain.rollout.engine import build_engine
from posttrain.rollout.types import Request, Rollout, SamplingParams, TokenScores
from posttrain.rollout.weight_sync import PackedWeights


class RolloutWorker:
    def __init__(
        self,
        worker_id: str,
        model_path: str,
        *,
        engine: str = "hf",
        seed: int = 0,
        dtype: str = "float32",
        device: str = "auto",
        num_threads: int | None = None,
    ) -> None:
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        transformers.utils.logging.disable_progress_bar()  # worker logs reach the driver's terminal
        self.worker_id = worker_id
        self.engine = build_engine(engine, model_path, seed=seed, dtype=dtype, device=device)
        self.version = 0

    def info(self) -> dict[str, Any]:
        """Where this worker runs (the multi-node test checks placement with it)."""
        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
        return {"worker_id": self.worker_id, "pid": os.getpid(), "node_id": node, "version": self.version}

    def load_weights(self, state: Mapping[str, torch.Tensor] | PackedWeights, version: int) -> int:
        self.engine.load_state_dict(state.state_dict() if isinstance(state, PackedWeights) else state)
        self.version = version
        return version

    def receive_weights(self, spec: Any, rank: int, manifest: Any, version: int) -> int:
        """`rollout.weight_sync=collective`: take part in the fleet's broadcast (`GroupSpec`, this worker's rank,
        the `Manifest` of what is sent) and load what arrives, stamped `version`."""
        from posttrain.rollout.weight_sync import CollectiveReceiver

        if not hasattr(self, "_receiver"):  # the group outlives one sync: joined once per generation
            self._receiver = CollectiveReceiver()
        return self.load_weights(self._receiver.receive(spec, rank, manifest), version)

    def max_context_seen(self, reset: bool = False) -> int:
        seen = self.engine.max_context_seen
        if reset:
            self.engine.reset_accounting()
        return seen

    def generate(self, requests: Sequence[Request]) -> list[Rollout]:
        """Rollouts in request order; requests with equal sampling params share one engine call, each drawing from
        its own seeded stream."""
        encoded: dict[str, list[int]] = {}  # a group's requests share their messages: render the chat once

        def prompt_of(request: Request) -> list[int]:
            if request.prompt_ids is not None:
                return list(request.prompt_ids)
            key = repr(request.messages)
            if key not in encoded:
                encoded[key] = encode_messages(self.engine.tokenizer, request.messages)
            return list(encoded[key])

        prompts = [prompt_of(r) for r in requests]
        by_params: dict[SamplingParams, list[int]] = {}
        for index, request in enumerate(requests):
            by_params.setdefault(request.params, []).append(index)
        rollouts: list[Rollout | None] = [None] * len(requests)
        for params, indices in by_params.items():
            seeds = [requests[i].seed for i in indices]
            completions = self.engine.generate([prompts[i] for i in indices], params, seeds)
            for i, completion in zip(indices, completions, strict=True):
                rollouts[i] = Rollout(
                    request_id=requests[i].id,
                    group=requests[i].group,
                    prompt_ids=prompts[i],
                    completion_ids=completion.token_ids,
                    logprobs=completion.logprobs,
                    text=completion.text,
                    finish_reason=completion.finish_reason,
                    policy_version=self.version,
                    worker_id=self.worker_id,
                    params=params,
                    routing=completion.routing,
                )
        return rollouts

    def score(
        self, sequences: Sequence[Sequence[int]], *, temperature: float = 1.0, top_logprobs: int = 0
    ) -> list[TokenScores]:
        """Teacher-forced log-probs of whole sequences (see `Engine.score`)."""
        return self.engine.score(sequences, temperature=temperature, top_logprobs=top_logprobs)
