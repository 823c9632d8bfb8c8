"""The hf engine: behaviour log-probs equal a teacher-forced pass, greedy is argmax, cuts are exact."""

from __future__ import annotations

import pytest
import torch

from posttrain.rollout.engine import ENGINES, ContextOverflowError, Engine, HFEngine, build_engine, register_engine
from posttrain.rollout.types import SamplingParams
from tests.rollout.oracles import teacher_forced_logprobs


@pytest.fixture(scope="module")
def engine(tiny):
    model, tokenizer = tiny
    return HFEngine(model, tokenizer, device="cpu")


def encode(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_behaviour_logprobs_match_a_teacher_forced_pass_in_a_padded_batch(engine, tiny):
    model, tokenizer = tiny
    prompts = [encode(tokenizer, "What is 12+34?"), encode(tokenizer, "hi"), encode(tokenizer, "<think>7*8=")]
    # top-k/top-p shape the sampling only; the log-probs are of the full softmax(logits / T).
    params = SamplingParams(max_new_tokens=12, temperature=0.7, top_k=5, top_p=0.9)
    completions = engine.generate(prompts, params, seeds=[1, 2, 3])
    assert len(completions) == 3
    for prompt, completion in zip(prompts, completions, strict=True):
        assert len(completion.logprobs) == len(completion.token_ids) >= 1
        expected = teacher_forced_logprobs(model, prompt, completion.token_ids, temperature=0.7)
        assert torch.allclose(torch.tensor(completion.logprobs), expected, atol=1e-4)
        assert completion.finish_reason in ("eos", "length")
        assert completion.finish_reason == "eos" or len(completion.token_ids) == 12


def test_greedy_is_the_argmax_of_the_model_and_reproducible(engine, tiny):
    model, tokenizer = tiny
    prompt = encode(tokenizer, "What is 2+3?")
    first, second = (engine.generate([prompt], SamplingParams(max_new_tokens=6, temperature=0))[0] for _ in range(2))
    assert first.token_ids == second.token_ids
    ids = list(prompt)
    for token in first.token_ids:
        with torch.no_grad():
            assert model(torch.tensor([ids])).logits[0, -1].argmax().item() == token
        ids.append(token)


def test_seeded_calls_repeat_and_leave_the_global_rng_alone(engine, tiny):
    prompt = encode(tiny[1], "x")
    torch.manual_seed(123)
    before = torch.get_rng_state()
    runs = [engine.generate([prompt, prompt], SamplingParams(max_new_tokens=5), seeds=[7, 8]) for _ in range(2)]
    assert [c.token_ids for c in runs[0]] == [c.token_ids for c in runs[1]]
    assert torch.equal(torch.get_rng_state(), before)


def test_a_sample_depends_on_its_seed_not_on_its_batch_or_chunking(engine, tiny):
    """A group of 8 drawn in one call, in chunks of 4 and one by one: the same 8 samples, and 8 distinct streams."""
    prompt = encode(tiny[1], "What is 1+1?")
    params = SamplingParams(max_new_tokens=10, temperature=1.0)
    seeds = list(range(100, 108))
    whole = [c.token_ids for c in engine.generate([prompt] * 8, params, seeds)]
    chunks = [c.token_ids for k in (0, 4) for c in engine.generate([prompt] * 4, params, seeds[k : k + 4])]
    single = [engine.generate([prompt], params, [s])[0].token_ids for s in seeds]
    assert whole == chunks == single
    assert len({tuple(ids) for ids in whole}) == 8


def test_sampled_first_tokens_follow_the_truncated_tempered_softmax(engine, tiny):
    """Frequencies of 3000 seeded first draws against the distribution computed here from the logits."""
    model, tokenizer = tiny
    prompt = encode(tokenizer, "<think>7*8=")
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([prompt])).logits[0, -1].double() / 2.0, -1)
    ordered, order = probs.sort(descending=True)
    keep = order[:6]  # top_k=6 ...
    mass = ordered[:6] / ordered[:6].sum()
    nucleus = keep[: int((mass.cumsum(0) - mass < 0.8).sum())]  # ... then top_p=0.8 of what remains
    expected = torch.zeros_like(probs)
    expected[nucleus] = probs[nucleus] / probs[nucleus].sum()
    params = SamplingParams(max_new_tokens=1, temperature=2.0, top_k=6, top_p=0.8)
    draws = engine.generate([prompt] * 3000, params, seeds=list(range(3000)))
    counts = torch.bincount(torch.tensor([c.token_ids[0] for c in draws]), minlength=len(probs)).double()
    assert set(torch.nonzero(counts).flatten().tolist()) <= set(nucleus.tolist())
    assert torch.allclose(counts / 3000, expected, atol=0.03)


def test_cut_at_first_eos_or_stop_string_and_account_the_longest_sequence(engine, tiny):
    tokenizer = tiny[1]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    a, b = encode(tokenizer, "ab")
    cut = engine._completion([a, b, eos, pad, pad], [-1.0, -2.0, -3.0, 0.0, 0.0], SamplingParams())
    assert (cut.token_ids, cut.logprobs, cut.finish_reason, cut.text) == ([a, b, eos], [-1.0, -2.0, -3.0], "eos", "ab")
    ids = encode(tokenizer, "12</answer>34")
    stopped = engine._completion(ids, [0.0] * len(ids), SamplingParams(stop=("</answer>",)))
    assert (stopped.text, stopped.finish_reason) == ("12</answer>", "stop")

    engine.reset_accounting()
    prompts = [encode(tokenizer, "a" * 9), encode(tokenizer, "b")]
    completions = engine.generate(prompts, SamplingParams(max_new_tokens=7, stop=("e",)))
    for completion in completions:
        if completion.finish_reason == "stop":
            assert completion.text.endswith("e") and "e" not in completion.text[:-1]
    assert engine.max_context_seen == 9 + max(len(c.token_ids) for c in completions)


def test_a_prompt_longer_than_the_context_is_an_error_not_a_truncation(engine):
    limit = engine.context_limit
    with pytest.raises(ContextOverflowError, match=f"context of {limit}"):
        engine.generate([[5] * limit], SamplingParams(max_new_tokens=1))


def test_engines_are_a_registry_a_new_engine_plugs_in():
    assert ENGINES["hf"] is HFEngine

    @register_engine("constant")
    class Constant(Engine):
        @classmethod
        def load(cls, model_path, *, seed, dtype, device):
            return cls()

        def generate(self, prompts, params, seeds=None):
            return []

        def load_state_dict(self, state):
            pass

        @property
        def context_limit(self):
            return None

    try:
        assert isinstance(build_engine("constant", "anything"), Constant)
    finally:
        del ENGINES["constant"]
