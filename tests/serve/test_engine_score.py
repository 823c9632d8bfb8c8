"""`Engine.score` (prompt log-likelihoods for the server) and `rsa.final_top_k`, against independent oracles."""

from __future__ import annotations

import pytest
import torch

from posttrain.rollout.config import RSAConfig
from posttrain.rollout.engine import ContextOverflowError, Engine, HFEngine
from posttrain.rollout.markovian_rsa import round_params
from posttrain.rollout.types import SamplingParams
from tests.serve.conftest import forward_logprobs


@pytest.fixture(scope="module")
def engine():
    return HFEngine.load("zaya-tiny", seed=0, dtype="float32", device="cpu")


def test_scores_of_a_ragged_batch_match_one_forward_pass_per_sequence(engine, tiny):
    model, _ = tiny
    sequences = [[5, 40, 41, 42, 43, 44, 45], [9, 10], [60]]
    scores = engine.score(sequences, top_logprobs=3)
    for sequence, scored in zip(sequences, scores, strict=True):
        table = forward_logprobs(model, sequence)  # alone: no padding at all
        expected = [table[t - 1, sequence[t]].item() for t in range(1, len(sequence))]
        assert scored.logprobs == pytest.approx(expected, abs=1e-5)
        assert len(scored.top) == len(sequence) - 1
        for t, alternatives in enumerate(scored.top):
            best = table[t].topk(3)
            assert [i for i, _ in alternatives] == best.indices.tolist()
            assert [v for _, v in alternatives] == pytest.approx(best.values.tolist(), abs=1e-5)


def test_scores_at_a_temperature_and_a_sequence_filling_the_whole_context(engine, tiny):
    model, _ = tiny
    limit = engine.context_limit
    sequence = [40 + i % 50 for i in range(limit)]  # exactly the context: fits (nothing is generated)
    (scored,) = engine.score([sequence[:8]], temperature=2.0)
    with torch.no_grad():
        logits = model(torch.tensor([sequence[:8]])).logits[0].float() / 2.0
    table = torch.log_softmax(logits, dim=-1)
    assert scored.logprobs == pytest.approx([table[t - 1, sequence[t]].item() for t in range(1, 8)], abs=1e-5)
    assert len(engine.score([sequence])[0].logprobs) == limit - 1
    with pytest.raises(ContextOverflowError):
        engine.score([[*sequence, 5]])


def test_engines_without_scoring_say_so():
    class Minimal(Engine):
        name = "minimal"
        load = generate = load_state_dict = None
        context_limit = None

    with pytest.raises(NotImplementedError, match="cannot score"):
        Minimal().score([[1, 2]])


def test_final_top_k_applies_to_the_last_round_only():
    sampling = SamplingParams(temperature=1.0, top_k=50)
    cfg = RSAConfig(N=2, C=1, T=2, beta=8, tau=4, final_top_k=5)
    assert [round_params(t, cfg, sampling).top_k for t in range(3)] == [50, 50, 5]
    unset = RSAConfig(N=2, C=1, T=2, beta=8, tau=4)
    assert [round_params(t, unset, sampling).top_k for t in range(3)] == [50, 50, 50]
