"""Log-probs equal the naive full-logits computation, chunked or not, with or without shared prefixes; the memory
budget bounds the LM-head output, only scored positions reach the head, and a shared prefix runs once."""

from __future__ import annotations

import pytest
import torch

from posttrain.models import load_model
from posttrain.models.router_balancing import find_routers
from posttrain.rl.batch import TrainBatch
from posttrain.rl.logprobs import chunk_tokens, token_logprobs


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


def head_rows(model):
    """Rows of every LM-head call, in call order (forward, then checkpointed recomputes during backward)."""
    rows: list[int] = []
    handle = model.get_output_embeddings().register_forward_hook(lambda m, i, out: rows.append(out.shape[0]))
    return rows, handle


def test_chunks_bound_the_largest_lm_head_output(model_and_batch):
    model, ids, attention = model_and_batch
    rows, handle = head_rows(model)
    try:
        logps, _ = token_logprobs(model, ids, attention, chunk_size=8)
        logps.sum().backward()  # the checkpointed chunks are recomputed one at a time in backward
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    scored = 36 + 24 + 36  # real next tokens of the three rows (row 1 has 25 real tokens)
    chunks = [8] * (scored // 8)  # 96 = 12 chunks of 8
    assert rows == chunks + chunks


def test_the_memory_budget_decides_whether_to_chunk(model_and_batch):
    model, ids, attention = model_and_batch
    vocab = model.config.vocab_size
    assert chunk_tokens(96, vocab, budget_mb=1.0) == 96  # 96 x V fp32 logits are far below 1 MiB
    assert chunk_tokens(96, vocab, budget_mb=40 * 4 * vocab / 2**20) == 40
    assert chunk_tokens(96, vocab, budget_mb=1e-9) == 1
    for budget, expected in ((1.0, [96]), (40 * 4 * vocab / 2**20, [40, 40, 16, 16, 40, 40])):
        rows, handle = head_rows(model)
        try:
            token_logprobs(model, ids, attention, logits_budget_mb=budget)[0].sum().backward()
        finally:
            handle.remove()
            model.zero_grad(set_to_none=True)
        # within the budget one call whose logits backward keeps; else chunks, recomputed last-first in backward
        assert rows == expected


def test_only_scored_positions_reach_the_lm_head(model_and_batch):
    model, ids, attention = model_and_batch
    score = torch.zeros_like(ids, dtype=torch.float)
    score[:, 30:] = 1
    rows, handle = head_rows(model)
    try:
        with torch.no_grad():
            got, _ = token_logprobs(model, ids, attention, score_mask=score)
            full, _ = token_logprobs(model, ids, attention)
    finally:
        handle.remove()
    assert rows == [7 + 0 + 7, 96]  # row 1 ends at 25 tokens: nothing of it is scored
    torch.testing.assert_close(got[:, 30:], full[:, 30:] * attention[:, 30:])
    assert torch.count_nonzero(got[:, :30]) == 0 and torch.count_nonzero(got[1]) == 0


def grouped_batch(tokenizer, seed: int = 0) -> tuple[TrainBatch, torch.Tensor]:
    """Three prompts (6, 9 and 4 tokens) x four completions of 2, 5, 8 and 11 tokens, and per-row temperatures."""
    gen = torch.Generator().manual_seed(seed)
    prompts, completions = [], []
    for length in (6, 9, 4):
        prompt = torch.randint(5, len(tokenizer), (length,), generator=gen).tolist()
        for k in range(4):
            prompts.append(prompt)
            completions.append(torch.randint(5, len(tokenizer), (2 + 3 * k,), generator=gen).tolist())
    batch = TrainBatch.from_lists(
        prompts, completions, [[0.0] * len(c) for c in completions], [0.0] * 12, [0] * 12,
        pad_token_id=tokenizer.pad_token_id, advantage=None,
    )  # fmt: skip
    return batch, torch.rand(12, generator=gen) + 0.5


def tokens_through_the_body(model) -> tuple[list[tuple[int, int]], object]:
    shapes: list[tuple[int, int]] = []
    embed = model.get_input_embeddings()
    return shapes, embed.register_forward_hook(lambda m, i, out: shapes.append(tuple(out.shape[:2])))


@pytest.mark.parametrize("preset", ["zaya-tiny", "llama-tiny"])
def test_shared_prefixes_run_once_and_change_nothing(preset):
    """Each prompt's context (all but its last token) runs once, its cache expanded to the four rows, which then
    run their own tokens; values, entropies and gradients equal one padded pass's."""
    model, tokenizer = load_model(preset, seed=1)
    batch, temperatures = grouped_batch(tokenizer)
    weights = torch.randn(batch.input_ids.shape, generator=torch.Generator().manual_seed(1))
    results = {}
    for share in (False, True):
        shapes, handle = tokens_through_the_body(model)
        try:
            logps, entropy = token_logprobs(
                model, batch.input_ids, batch.attention_mask, temperature=temperatures,
                score_mask=batch.completion_mask, with_entropy=True, share_prefixes=share,
            )  # fmt: skip
            (logps * weights).sum().backward()
        finally:
            handle.remove()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        model.zero_grad(set_to_none=True)
        results[share] = (logps.detach(), entropy, grads, shapes)
    plain, shared = results[False], results[True]
    assert plain[3] == [(12, 20)]  # one pass over the padded batch (longest row: 9 + 11 tokens)
    # contexts of 5, 8 and 3 tokens, left-padded to 8; then each row's last prompt token and all but its
    # last completion token, right-padded to 1 + 10 = 11
    assert shared[3] == [(3, 8), (12, 11)]
    torch.testing.assert_close(shared[0], plain[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(shared[1], plain[1], atol=1e-6, rtol=0)
    assert len(shared[2]) == len(plain[2])
    for got, expected in zip(shared[2], plain[2], strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_rows_that_share_nothing_take_one_pass_trimmed_after_the_last_scored_token():
    model, tokenizer = load_model("zaya-tiny", seed=1)
    batch, _ = grouped_batch(tokenizer)
    distinct = batch.select([0, 4, 8])  # one row per prompt: nothing to share
    shapes, handle = tokens_through_the_body(model)
    try:
        with torch.no_grad():
            got, _ = token_logprobs(
                model, distinct.input_ids, distinct.attention_mask, score_mask=distinct.completion_mask,
                share_prefixes=True,
            )  # fmt: skip
            plain, _ = token_logprobs(model, distinct.input_ids, distinct.attention_mask)
    finally:
        handle.remove()
    assert shapes[0] == (3, 10)  # rows of 8, 11 and 6 tokens: the last token predicts nothing
    mask = distinct.completion_mask > 0
    torch.testing.assert_close(got[mask], plain[mask], atol=1e-6, rtol=0)


def test_shared_prefixes_replay_routing_and_split_where_it_differs():
    """Replayed routing reaches both the shared context and the rows on top; contexts whose recorded routing
    differs are not shared."""
    model, tokenizer = load_model("zaya-tiny", seed=1)
    for router in find_routers(model):  # token-dependent routing, with some skips
        router.router_mlp.out_proj.weight.data *= 300
        router.balancing_biases[-1] = 0.05
    batch, _ = grouped_batch(tokenizer)
    layers = len(find_routers(model))
    routing = torch.randint(
        0, model.config.num_experts + 1, (*batch.input_ids.shape, layers), generator=torch.Generator().manual_seed(2)
    )
    for row in range(12):  # each prompt's rows agree on its context's routing ...
        routing[row, :9] = routing[row - row % 4, :9]
    routing[5, 2] = (routing[5, 2] + 1) % (model.config.num_experts + 1)  # ... except row 5 (second prompt)
    shapes, handle = tokens_through_the_body(model)
    try:
        with torch.no_grad():
            got, _ = token_logprobs(
                model, batch.input_ids, batch.attention_mask, score_mask=batch.completion_mask,
                routing=routing, share_prefixes=True,
            )  # fmt: skip
            plain, _ = token_logprobs(
                model, batch.input_ids, batch.attention_mask, score_mask=batch.completion_mask, routing=routing
            )
            live, _ = token_logprobs(model, batch.input_ids, batch.attention_mask, score_mask=batch.completion_mask)
    finally:
        handle.remove()
    assert shapes[:2] == [(4, 8), (12, 11)]  # row 5 has a context of its own
    mask = batch.completion_mask > 0
    torch.testing.assert_close(got[mask], plain[mask], atol=1e-6, rtol=0)
    assert not torch.allclose(got[mask], live[mask], atol=1e-3)  # the replayed routing mattered
