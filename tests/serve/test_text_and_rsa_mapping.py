"""Hand-worked cases for the pure parts: per-token pieces, stop strings, reasoning spans, RSA key mapping."""

from __future__ import annotations

import pytest

from posttrain.models import build_char_tokenizer
from posttrain.rollout.config import RSAConfig
from posttrain.rollout.types import Rollout
from posttrain.serve import rsa
from posttrain.serve.errors import APIError
from posttrain.serve.schemas import ChatCompletionRequest
from posttrain.serve.text import ReasoningSplit, finish, token_pieces

TOKENIZER = build_char_tokenizer()


def ids(text: str) -> list[int]:
    return TOKENIZER(text, add_special_tokens=False)["input_ids"]


def rollout(text: str, reason: str = "length", eos: bool = False) -> Rollout:
    completion = ids(text) + ([TOKENIZER.eos_token_id] if eos else [])
    logprobs = [-float(i) for i in range(len(completion))]
    return Rollout("r", 0, [1], completion, logprobs, text, reason, 0, "w")


def test_token_pieces_are_one_per_token_and_skip_special_tokens():
    tokens = [*ids("a<think>b"), TOKENIZER.eos_token_id]
    assert token_pieces(TOKENIZER, tokens) == ["a", "<think>", "b", ""]


def test_stop_string_is_cut_with_the_tokens_that_start_inside_it():
    # "12 STOP 34": the engine stops after the stop string; OpenAI's text ends before it.
    generated = finish(rollout("12 STOP", "stop"), TOKENIZER, ("STOP",))
    assert generated.text == "12 "
    assert generated.token_ids == ids("12 ")
    assert generated.logprobs == [0.0, -1.0, -2.0]
    assert generated.generated_tokens == 7  # usage still counts what the engine produced
    assert generated.finish_reason == "stop"


def test_eos_maps_to_stop_and_is_kept_as_a_token_with_an_empty_piece():
    generated = finish(rollout("ok", "eos", eos=True), TOKENIZER, ())
    assert (generated.text, generated.finish_reason, len(generated.token_ids)) == ("ok", "stop", 3)


@pytest.mark.parametrize(
    ("text", "reasoning", "content"),
    [
        ("<think>step one</think>42", "step one", "42"),
        ("step one</think> 42", "step one", " 42"),  # templates that open <think> in the prompt
        ("no tags, just 42", None, "no tags, just 42"),
        ("a</think>b</think>c", "a", "b</think>c"),  # the first close ends the reasoning
        ("x<think>y</think>z", "x<think>y", "z"),  # no text is dropped, only a leading <think>
    ],
)
def test_reasoning_before_think_close_is_split_off(text, reasoning, content):
    message = ReasoningSplit.of(text).message(text)
    assert (message["reasoning_content"], message["content"]) == (reasoning, content)


def test_stream_deltas_of_any_cut_reassemble_reasoning_and_content():
    text = "<think>abc</think>xyz"
    split = ReasoningSplit.of(text)
    deltas = [split.delta(text, i, i + 2) for i in range(0, len(text), 2)]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "abc"
    assert "".join(d.get("content", "") for d in deltas) == "xyz"


def chat(**extra) -> ChatCompletionRequest:
    return ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "2+2?"}], **extra)


BASE = RSAConfig(N=4, C=2, T=2, beta=32, tau=16)


def test_zyphra_flat_keys_map_onto_our_fields():
    body = chat(
        rsa_n=8, rsa_k=3, rsa_t=5, tail_window_len=6, short_resp_len=12,
        final_temperature=0.2, final_top_p=0.5, final_top_k=7, rsa_final_n=2, return_aggregation_prompt=True,
    )  # fmt: skip
    plan = rsa.plan(body, BASE, default_on=False, max_chains=64)
    cfg = plan.cfg
    assert (cfg.N, cfg.C, cfg.T, cfg.tau, cfg.beta) == (8, 3, 5, 6, 12)
    assert (cfg.final_temperature, cfg.final_top_p, cfg.final_top_k) == (0.2, 0.5, 7)
    assert (plan.choices, plan.metadata, plan.aggregation_prompt) == (2, True, True)


def test_rsa_object_overrides_the_config_and_max_tokens_becomes_beta():
    plan = rsa.plan(chat(rsa={"N": 6, "T": 1}, max_tokens=10), BASE, default_on=False, max_chains=64)
    assert (plan.cfg.N, plan.cfg.C, plan.cfg.T, plan.cfg.beta, plan.cfg.tau) == (6, 2, 1, 10, 10)


@pytest.mark.parametrize(
    ("extra", "default_on", "runs"),
    [({}, False, False), ({}, True, True), ({"rsa": False}, True, False), ({"rsa": True}, False, True),
     ({"rsa_t": 0}, False, False)],  # Zyphra's proxy passes rsa_t=0 through
)  # fmt: skip
def test_when_rsa_runs(extra, default_on, runs):
    assert (rsa.plan(chat(**extra), BASE, default_on=default_on, max_chains=64) is not None) == runs


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"rsa": {"N": 2, "C": 3}}, "rsa.C"),
        ({"rsa_n": 2, "rsa_k": 3}, "rsa_k"),  # named as the client wrote it
        ({"rsa": {"beta": 4, "tau": 8}}, "rsa.tau"),
        ({"rsa": {"N": 65}}, "rsa.N"),  # above serve.max_rsa_chains
        ({"rsa": {"N": 2.5}}, "rsa.N"),
        ({"rsa": {"Nn": 2}}, "rsa.Nn"),
        ({"rsa": True, "rsa_n": 2}, "rsa"),
        ({"rsa_summarize": True}, "rsa_summarize"),
        ({"rsa": True, "stream": True}, "stream"),
        ({"rsa": True, "logprobs": True}, "logprobs"),
        ({"rsa": {"N": 2}, "n": 3}, "n"),
    ],
)
def test_bad_rsa_settings_name_the_key_at_fault(extra, param):
    with pytest.raises(APIError) as error:
        rsa.plan(chat(**extra), BASE, default_on=False, max_chains=64)
    assert (error.value.status, error.value.param) == (400, param)
