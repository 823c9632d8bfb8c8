"""rollout.engine=vllm where it cannot run (no vLLM, no GPU: this machine), and its pure output mapping.

vLLM itself cannot be installed or run here, so the engine's generation and weight loading are untested (said
in docs/rollout.md). What is tested: the one-line refusal before any work, and the conversion of vLLM's
documented output objects (stand-ins with the documented fields) into Completions and routing rows.
"""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest

from posttrain.errors import UserError
from posttrain.rollout.engine import ENGINES, build_engine
from posttrain.rollout.vllm_engine import VLLMEngine, completion_routing


def test_vllm_is_registered_but_refused_without_vllm_or_a_gpu(monkeypatch):
    assert ENGINES["vllm"] is VLLMEngine
    assert importlib.util.find_spec("vllm") is None  # this machine; the messages below depend on it
    assert VLLMEngine.unavailable("cpu") == (
        "needs a GPU (device resolves to cpu) and vLLM, which is not installed (pip install 'posttrain[gpu]')"
    )
    assert VLLMEngine.unavailable("cuda") == "needs vLLM, which is not installed (pip install 'posttrain[gpu]')"
    with pytest.raises(UserError, match=r"^rollout\.engine=vllm needs a GPU"):
        build_engine("vllm", "zaya-tiny", device="cpu")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name == "vllm" else real_find_spec(name))
    assert VLLMEngine.unavailable("cpu") == "needs a GPU (device resolves to cpu)"
    assert VLLMEngine.unavailable("cuda") is None


@pytest.mark.parametrize("command", [["run", "stage=rlve"], ["rsa", "prompt=hi"]])
def test_rollout_engine_vllm_exits_2_with_one_line_before_any_work(cli, tmp_path, command):
    result = cli(*command, "rollout.engine=vllm", "device=cpu", f"run.root={tmp_path / 'runs'}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: rollout.engine=vllm needs a GPU (device resolves to cpu) and vLLM, which is not installed "
        "(pip install 'posttrain[gpu]')"
    )
    assert list(tmp_path.iterdir()) == []


def logprob(value):
    return SimpleNamespace(logprob=value)


def vllm_output(token_ids, finish_reason, stop_reason, prompt=(1, 2, 3), routed=None, prompt_routed=None):
    """A RequestOutput as vLLM documents it: `outputs[0]` with token ids, one {token: Logprob} per token."""
    sample = SimpleNamespace(
        token_ids=token_ids, text="t", finish_reason=finish_reason, stop_reason=stop_reason,
        logprobs=[{t: logprob(-0.5 * (i + 1)), 99: logprob(-9.0)} for i, t in enumerate(token_ids)],
        routed_experts=routed,
    )  # fmt: skip
    return SimpleNamespace(outputs=[sample], prompt_token_ids=list(prompt), prompt_routed_experts=prompt_routed)


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason", "expected"),
    [("stop", None, "eos"), ("stop", "</answer>", "stop"), ("length", None, "length")],
)
def test_completions_carry_the_sampled_tokens_logprobs_and_finish_reason(finish_reason, stop_reason, expected):
    engine = VLLMEngine(llm=None, tokenizer=None, routing=False)
    completion = engine._completion(vllm_output([7, 8, 2], finish_reason, stop_reason))
    assert completion.token_ids == [7, 8, 2]
    assert completion.logprobs == [-0.5, -1.0, -1.5]  # the sampled token's entry, never the alternative's
    assert completion.finish_reason == expected


def test_completion_routing_is_the_forward_that_produced_each_token():
    # 3 prompt tokens, 2 completion tokens, 2 MoE layers, top-1. vLLM reports the 3 prompt positions and the
    # first completion token's (the last sampled token never runs through the model). Completion token 0 was
    # produced by the forward at the prompt's last position, token 1 by the one at completion token 0.
    prompt_routed = [[[0], [1]], [[2], [3]], [[4], [0]]]
    routed = [[[1], [1]]]
    engine = VLLMEngine(llm=None, tokenizer=None, routing=True)
    completion = engine._completion(vllm_output([7, 8], "length", None, routed=routed, prompt_routed=prompt_routed))
    assert completion.routing.dtype == np.int16
    assert completion.routing.tolist() == [[4, 0], [1, 1]]
    # a position vLLM did not report routes live (-1); no routing reported at all gives None
    short = completion_routing(vllm_output([7, 8], "length", None, routed=[], prompt_routed=prompt_routed), 2)
    assert short.tolist() == [[4, 0], [-1, -1]]
    assert completion_routing(vllm_output([7, 8], "length", None), completion_length=2) is None


def test_vllm_routing_lands_where_the_learner_replays_it():
    from posttrain.rl.router_replay import batch_routing

    prompt_routed = [[[0], [1]], [[2], [3]], [[4], [0]]]
    engine = VLLMEngine(llm=None, tokenizer=None, routing=True)
    output = vllm_output([7, 8], "length", None, routed=[[[1], [1]]], prompt_routed=prompt_routed)
    completion = engine._completion(output)
    # right-padded row of width 6: prompt at 0-2, completion at 3-4; the forwards at 2 and 3 produced tokens 7, 8
    routing = batch_routing([3], [completion.routing], width=6)
    assert routing[0].tolist() == [[-1, -1], [-1, -1], [4, 0], [1, 1], [-1, -1], [-1, -1]]
