"""`rollout.engine=vllm`: generation with vLLM's offline `LLM` on one GPU per worker (`pip install 'posttrain[gpu]'`).

UNTESTED: written against vLLM's documented API (>= 0.11) on a machine with neither vLLM nor a GPU; only the
refusal path (`unavailable`) runs in the test suite. What it relies on:

- `SamplingParams(seed=..., logprobs=0)`: one seeded stream per request, and the log-prob of the sampled token
  alone. The engine is built with `logprobs_mode="processed_logprobs"`, so that log-prob is taken after the
  temperature, as `hf` records it. vLLM computes it after top-k/top-p as well; trained samples never truncate
  (the RL stages refuse it), and a truncated draw's log-prob is that of the renormalised distribution.
  Greedy draws report temperature-1 log-probs, as `hf` does.
- Weights in place: `worker_extension_cls` adds `load_posttrain_weights` to vLLM's GPU worker, which hands
  the HF-named tensors to the model's own `load_weights` (it maps them onto vLLM's fused layout). The engine
  core runs in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`), so `collective_rpc` passes the tensors
  without serialising them. The prefix cache is reset after every load: its KV was computed by the old weights.
- Routing: with `enable_return_routed_experts=True` vLLM returns, per completion, the experts each MoE layer
  chose for every token (`prompt_routed_experts`, `routed_experts`; vLLM >= 0.21 with its V2 model runner).
  When this vLLM build or the model does not support it, the engine starts without it and records no routing.
  ZAYA needs Zyphra's vLLM build (upstream vLLM has no ZayaForCausalLM at the time of writing); whether that
  build reports ZAYA's compute-free skip class as expert id E is not known here.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from posttrain.devices import resolve_device
from posttrain.errors import UserError
from posttrain.rollout.engine import Engine, register_engine
from posttrain.rollout.types import Completion, SamplingParams

log = logging.getLogger(__name__)
INSTALL = "pip install 'posttrain[gpu]'"


class WeightLoader:
    """Mixed into vLLM's GPU worker (`worker_extension_cls`): loads HF-named tensors into the running model."""

    def load_posttrain_weights(self, state: Mapping[str, torch.Tensor]) -> None:
        self.model_runner.model.load_weights(weights=list(state.items()))


@register_engine("vllm")
class VLLMEngine(Engine):
    """vLLM's `LLM`, tensor parallel 1, on the GPU this process was given."""

    def __init__(self, llm: Any, tokenizer: PreTrainedTokenizerBase, routing: bool, keep: Any = None) -> None:
        super().__init__()
        self.llm, self.tokenizer, self.routing = llm, tokenizer, routing
        self._keep = keep  # a preset's temporary HF directory, alive as long as the engine

    @classmethod
    def unavailable(cls, device: str) -> str | None:
        missing = []
        if device != "cuda":
            missing.append(f"a GPU (device resolves to {device})")
        if importlib.util.find_spec("vllm") is None:
            missing.append(f"vLLM, which is not installed ({INSTALL})")
        return "needs " + " and ".join(missing) if missing else None

    @classmethod
    def load(cls, model_path: str, *, seed: int, dtype: str, device: str) -> VLLMEngine:
        problem = cls.unavailable(resolve_device(device))
        if problem is not None:
            raise UserError(f"rollout.engine=vllm {problem}")
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        from posttrain.models import load_model, load_tokenizer
        from posttrain.models.presets import PRESETS

        keep = None
        if model_path in PRESETS:  # vLLM reads HF directories: write the preset's seeded weights to one
            keep = tempfile.TemporaryDirectory(prefix="posttrain-vllm-")
            model, tokenizer = load_model(model_path, seed=seed)
            model.save_pretrained(keep.name)
            tokenizer.save_pretrained(keep.name)
            model_path = keep.name
        kwargs = {
            "model": model_path,
            "dtype": dtype,
            "seed": seed,
            "tensor_parallel_size": 1,
            "logprobs_mode": "processed_logprobs",
            "worker_extension_cls": f"{__name__}.WeightLoader",
        }
        try:
            llm, routing = LLM(**kwargs, enable_return_routed_experts=True), True
        except (TypeError, ValueError) as exc:  # an older vLLM, a dense model, or a runner without routing capture
            log.warning("vLLM engine records no MoE routing: %s", exc)
            llm, routing = LLM(**kwargs), False
        return cls(llm, load_tokenizer(model_path), routing, keep)

    @property
    def context_limit(self) -> int | None:
        return self.llm.llm_engine.model_config.max_model_len

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.llm.collective_rpc("load_posttrain_weights", args=(dict(state),))
        self.llm.reset_prefix_cache()

    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, seeds: Sequence[int | None] | None = None
    ) -> list[Completion]:
        from vllm import SamplingParams as VLLMSamplingParams
        from vllm.inputs import TokensPrompt

        if not prompts:
            return []
        lengths, seeds = self.checked_request(prompts, seeds)
        limit = self.context_limit
        requests = []
        for length, seed in zip(lengths, seeds, strict=True):
            budget = params.max_new_tokens if limit is None else min(params.max_new_tokens, limit - length)
            requests.append(VLLMSamplingParams(
                n=1, temperature=params.temperature, top_p=params.top_p, seed=seed, max_tokens=budget, logprobs=0,
                stop=list(params.stop) or None, include_stop_str_in_output=True,
                **({"top_k": params.top_k} if params.top_k > 0 else {}),
            ))  # fmt: skip
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=list(p)) for p in prompts], sampling_params=requests, use_tqdm=False
        )
        completions = [self._completion(output) for output in outputs]
        seen = max(length + len(c.token_ids) for length, c in zip(lengths, completions, strict=True))
        self.max_context_seen = max(self.max_context_seen, seen)
        return completions

    def _completion(self, output: Any) -> Completion:
        sample = output.outputs[0]
        ids = list(sample.token_ids)
        logprobs = [float(step[token].logprob) for token, step in zip(ids, sample.logprobs, strict=True)]
        if sample.finish_reason == "length":
            reason = "length"
        else:  # vLLM says "stop" for both; stop_reason holds the stop string, None for EOS
            reason = "stop" if isinstance(sample.stop_reason, str) else "eos"
        routing = completion_routing(output, len(ids)) if self.routing else None
        return Completion(token_ids=ids, text=sample.text, logprobs=logprobs, finish_reason=reason, routing=routing)


def completion_routing(output: Any, completion_length: int) -> np.ndarray | None:
    """`Completion.routing` from vLLM's `prompt_routed_experts` and `routed_experts`: row i is the top-1 class
    each MoE layer chose in the forward that produced completion token i, i.e. at the position before it (the
    prompt's last token for i = 0). vLLM reports every position it ran; the last sampled token never runs, so
    a position it did not report is -1, "route live", as in the learner's replay layout."""
    sample = output.outputs[0]
    prompt = getattr(output, "prompt_routed_experts", None)
    generated = getattr(sample, "routed_experts", None)
    if prompt is None or generated is None:
        return None
    rows = [[int(layer[0]) for layer in token] for part in (prompt, generated) for token in _nested_list(part)]
    layers = len(rows[0]) if rows else 0
    first = len(output.prompt_token_ids) - 1  # the forward that produced completion token 0
    produced = rows[first : first + completion_length]
    produced += [[-1] * layers] * (completion_length - len(produced))
    return np.array(produced, dtype=np.int16).reshape(completion_length, layers)


def _nested_list(array: Any) -> list:
    return array.tolist() if hasattr(array, "tolist") else list(array)
