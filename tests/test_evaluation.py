"""Decoding for held-out evaluation: greedy, and sampled pass@1 that is reproducible and side-effect free."""

import pytest
import torch

from posttrain.evaluation import generate_completions
from posttrain.models import load_model

PROMPTS = [[{"role": "user", "content": f"{a}+{b}=?"}] for a, b in ((1, 2), (7, 5), (3, 9))]


@pytest.fixture(scope="module")
def model_and_tokenizer():
    return load_model("zaya-tiny", seed=0)


def test_samples_are_prompt_major_and_match_greedy_at_a_vanishing_temperature(model_and_tokenizer):
    model, tok = model_and_tokenizer
    greedy = generate_completions(model, tok, PROMPTS, max_new_tokens=6, batch_size=2)
    sampled = generate_completions(model, tok, PROMPTS, max_new_tokens=6, batch_size=2, temperature=1e-6, samples=3)
    assert len(greedy) == 3 and len(sampled) == 9
    assert sampled == [g for g in greedy for _ in range(3)]


def test_sampling_is_seeded_and_leaves_the_callers_rng_alone(model_and_tokenizer):
    model, tok = model_and_tokenizer
    kwargs = {"max_new_tokens": 8, "batch_size": 3, "temperature": 1.0, "samples": 4}
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = generate_completions(model, tok, PROMPTS, seed=5, **kwargs)
    assert torch.equal(torch.get_rng_state(), state)
    assert generate_completions(model, tok, PROMPTS, seed=5, **kwargs) == first
    # an untrained model at T=1 samples many different strings; another seed gives other ones
    assert len(set(first)) > 4 and generate_completions(model, tok, PROMPTS, seed=6, **kwargs) != first


def test_greedy_decoding_refuses_several_samples(model_and_tokenizer):
    model, tok = model_and_tokenizer
    with pytest.raises(ValueError, match="temperature > 0"):
        generate_completions(model, tok, PROMPTS, max_new_tokens=4, batch_size=3, samples=2)
