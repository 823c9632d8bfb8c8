"""Chunked log-probs equal the naive full-logits computation, and chunking bounds the LM-head output."""

from __future__ import annotations

import pytest
import torch

from posttrain.models import load_model
from posttrain.rl.logprobs import token_logprobs


@pytest.fixture(scope="module", params=["zaya-tiny", "llama-tiny"])
def model_and_batch(request):
    model, tokenizer = load_model(request.param, seed=1)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, len(tokenizer), (3, 37), generator=gen)
    attention = torch.ones_like(ids)
    attention[1, 25:] = 0  # right padding
    ids[1, 25:] = tokenizer.pad_token_id
    return model, ids, attention


def naive(model, ids, attention, temperature):
    logits = model(input_ids=ids, attention_mask=attention).logits.float() / temperature
    logp = torch.log_softmax(logits, -1)
    picked = logp[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
    entropy = -(logp.exp() * logp).sum(-1)[:, :-1]
    return picked, entropy


@pytest.mark.parametrize("chunk", [1, 5, 64])
def test_chunked_equals_naive(model_and_batch, chunk):
    model, ids, attention = model_and_batch
    with torch.no_grad():
        got, entropy = token_logprobs(model, ids, attention, temperature=0.7, chunk_size=chunk, with_entropy=True)
        expected, expected_entropy = naive(model, ids, attention, 0.7)
    assert torch.equal(got[:, 0], torch.zeros(3))
    real = attention[:, 1:].bool()
    torch.testing.assert_close(got[:, 1:][real], expected[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(entropy[:, 1:][real], expected_entropy[real], atol=1e-5, rtol=0)


def test_gradient_equals_naive_gradient(model_and_batch):
    model, ids, attention = model_and_batch
    mask = attention[:, 1:].float()
    model.zero_grad(set_to_none=True)
    (naive(model, ids, attention, 1.0)[0] * mask).sum().backward()
    expected = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    (token_logprobs(model, ids, attention, chunk_size=6)[0][:, 1:] * mask).sum().backward()
    got = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-4)


def test_chunking_bounds_the_largest_lm_head_output(model_and_batch):
    model, ids, attention = model_and_batch
    shapes: list[tuple[int, ...]] = []
    handle = model.get_output_embeddings().register_forward_hook(lambda m, i, out: shapes.append(tuple(out.shape)))
    try:
        logps, _ = token_logprobs(model, ids, attention, chunk_size=8)
        logps.sum().backward()  # the checkpointed chunks are recomputed one at a time in backward
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    vocab = model.config.vocab_size
    assert shapes, "the LM head never ran"
    assert max(s[0] * s[1] * s[2] for s in shapes) <= 3 * 8 * vocab
    assert max(s[1] for s in shapes) == 8
    assert len(shapes) == 2 * -(-(ids.shape[1] - 1) // 8)  # forward + recompute, ceil((L-1)/8) chunks each


def test_score_mask_skips_unscored_chunks(model_and_batch):
    model, ids, attention = model_and_batch
    score = torch.zeros_like(ids, dtype=torch.float)
    score[:, 30:] = 1
    calls: list[int] = []
    handle = model.get_output_embeddings().register_forward_hook(lambda m, i, out: calls.append(out.shape[1]))
    try:
        with torch.no_grad():
            got, _ = token_logprobs(model, ids, attention, chunk_size=10, score_mask=score)
            full, _ = token_logprobs(model, ids, attention, chunk_size=10)
    finally:
        handle.remove()
    # masked run: only the chunks predicting tokens 21..30 and 31..36; full run: all four chunks
    assert calls == [10, 6, 10, 10, 10, 6]
    torch.testing.assert_close(got[:, 30:], full[:, 30:])
    assert torch.count_nonzero(got[:, :21]) == 0
