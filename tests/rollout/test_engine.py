"""The hf engine: behaviour log-probs equal a teacher-forced pass, greedy is argmax, cuts are exact, a group
shares one prefill, finished rows leave the batch, and ZAYA routing is recorded as a full forward routes."""

from __future__ import annotations

import pytest
import torch

from posttrain.models import load_model
from posttrain.models.router_balancing import find_routers
from posttrain.rl.router_replay import record_routing
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
        torch.testing.assert_close(torch.tensor(completion.logprobs), expected, atol=1e-6, rtol=0)
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


def forward_rows(model) -> tuple[list[int], object]:
    """Rows of every forward of `model` (the prefill first, then one per decoding step)."""
    rows: list[int] = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: rows.append(kw["input_ids"].shape[0]), with_kwargs=True)
    return rows, hook


def test_a_group_shares_one_prefill_and_samples_as_if_prefilled_alone(engine, tiny):
    """Four samples each of two prompts: one prefill row per prompt, the cache (ZAYA's CCA conv and value
    states included) expanded to the eight rows; every sample equals the one drawn with its own prefill."""
    model, tokenizer = tiny
    prompts = [encode(tokenizer, "What is 12+34?"), encode(tokenizer, "<think>7*8=")]
    batch = [prompts[k % 2] for k in range(8)]
    params = SamplingParams(max_new_tokens=9, temperature=0.8)
    seeds = list(range(40, 48))
    rows, hook = forward_rows(model)
    try:
        grouped = engine.generate(batch, params, seeds)
    finally:
        hook.remove()
    assert rows[0] == 2 and rows[1] == 8
    for prompt, seed, sample in zip(batch, seeds, grouped, strict=True):
        alone = engine.generate([prompt], params, [seed])[0]
        assert sample.token_ids == alone.token_ids
        torch.testing.assert_close(torch.tensor(sample.logprobs), torch.tensor(alone.logprobs), atol=1e-6, rtol=0)
        assert (sample.routing == alone.routing).all()


def test_finished_rows_leave_the_batch(engine, tiny):
    """Each decoding step runs only the rows still generating: after draw t, the rows whose completion is longer
    than t + 1 tokens (a stop string or EOS ends the others)."""
    tokenizer = tiny[1]
    prompts = [encode(tokenizer, f"What is {i}+{2 * i}?") for i in range(12)]
    params = SamplingParams(max_new_tokens=16, temperature=1.5, stop=("e", "3"))
    rows, hook = forward_rows(engine.model)
    try:
        completions = engine.generate(prompts, params, list(range(12)))
    finally:
        hook.remove()
    lengths = [len(c.token_ids) for c in completions]
    assert min(lengths) < 16 and {c.finish_reason for c in completions} >= {"stop"}
    live = [sum(n > t + 1 for n in lengths) for t in range(15)]
    assert rows == [12, *[count for count in live if count]]
    for completion in completions:
        if completion.finish_reason == "stop":
            assert completion.text[-1] in "e3" and not set(completion.text[:-1]) & set("e3")


@pytest.fixture(scope="module")
def routed():
    """zaya-tiny whose routers depend strongly on the token, with some skips."""
    model, tokenizer = load_model("zaya-tiny", seed=0)
    for router in find_routers(model):
        router.router_mlp.out_proj.weight.data *= 300
        router.balancing_biases[-1] = 0.05
    return model.eval(), tokenizer


def test_routing_is_recorded_as_a_full_forward_routes(routed):
    """completion.routing[i] is the classes every layer chose at the input before token i: what a full
    teacher-forced forward over prompt + completion routes at positions P - 1 ... P + n - 2."""
    model, tokenizer = routed
    engine = HFEngine(model, tokenizer, device="cpu")
    prompts = [encode(tokenizer, "What is 12+34?"), encode(tokenizer, "hi there")]
    completions = engine.generate(prompts * 2, SamplingParams(max_new_tokens=10), seeds=[1, 2, 3, 4])
    layers = len(find_routers(model))
    skips = 0
    for prompt, completion in zip(prompts * 2, completions, strict=True):
        ids = torch.tensor([prompt + completion.token_ids])
        with torch.no_grad(), record_routing(model, tuple(ids.shape)) as full:
            model(input_ids=ids)
        assert completion.routing.shape == (len(completion.token_ids), layers)
        expected = full[0, len(prompt) - 1 : len(prompt) - 1 + len(completion.token_ids)]
        assert torch.equal(torch.from_numpy(completion.routing).long(), expected)
        skips += int((expected == model.config.num_experts).sum())
    assert skips > 0  # the skip class is recorded too


def test_a_model_without_routers_records_no_routing():
    model, tokenizer = load_model("llama-tiny", seed=0)
    completion = HFEngine(model, tokenizer, device="cpu").generate([[5, 6, 7]], SamplingParams(max_new_tokens=3))[0]
    assert completion.routing is None
