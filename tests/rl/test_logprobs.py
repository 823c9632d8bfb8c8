"""Log-probs equal the naive full-logits computation, chunked or not, packed or not; the memory budget bounds the
LM-head output, only scored positions reach the head, a shared context runs once, and length buckets pad less."""

from __future__ import annotations

import pytest
import torch

from posttrain.models import load_model
from posttrain.models.router_balancing import find_routers
from posttrain.rl import packing
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


def rl_batch(tokenizer, prompt_lengths, completion_lengths, seed: int = 0) -> TrainBatch:
    """Row i: prompt i // len(completion_lengths) (of prompt_lengths[...] tokens) + a completion of
    completion_lengths[i % len(completion_lengths)] tokens; random ids."""
    gen = torch.Generator().manual_seed(seed)
    prompts, completions = [], []
    for length in prompt_lengths:
        prompt = torch.randint(5, len(tokenizer), (length,), generator=gen).tolist()
        for n in completion_lengths:
            prompts.append(prompt)
            completions.append(torch.randint(5, len(tokenizer), (n,), generator=gen).tolist())
    rows = len(prompts)
    return TrainBatch.from_lists(
        prompts, completions, [[0.0] * len(c) for c in completions], [0.0] * rows, [0] * rows,
        pad_token_id=tokenizer.pad_token_id, advantage=None,
    )  # fmt: skip


def body_shapes(model) -> tuple[list[tuple[int, int]], object]:
    """[rows, tokens] of every forward of the model's body (read at its embeddings)."""
    shapes: list[tuple[int, int]] = []
    embed = model.get_input_embeddings()
    return shapes, embed.register_forward_hook(lambda m, i, out: shapes.append(tuple(out.shape[:2])))


def packed_and_plain(model, batch, *, temperature=1.0, routing=None, backward=False):
    """{pack: (log-probs, entropies, parameter grads, body shapes)} for pack in (False, True)."""
    weights = torch.randn(batch.input_ids.shape, generator=torch.Generator().manual_seed(1))
    results = {}
    for pack in (False, True):
        shapes, handle = body_shapes(model)
        try:
            with torch.set_grad_enabled(backward):
                logps, entropy = token_logprobs(
                    model, batch.input_ids, batch.attention_mask, temperature=temperature,
                    score_mask=batch.completion_mask, with_entropy=True, routing=routing, pack=pack,
                )  # fmt: skip
                if backward:
                    (logps * weights).sum().backward()
        finally:
            handle.remove()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        model.zero_grad(set_to_none=True)
        results[pack] = (logps.detach(), entropy, grads, shapes)
    return results


@pytest.mark.parametrize("preset", ["zaya-tiny", "llama-tiny"])
def test_a_shared_context_runs_once_and_changes_nothing(preset, monkeypatch):
    """Three prompts (30, 25, 20 tokens) x 8 completions of 1-4 tokens. Hand-worked costs with a forward at
    100 tokens: one padded pass 24 x 33 + 100 = 892; shared contexts 3 x 29 + 24 x 4 + 2 x 100 = 383 (more
    buckets only add forwards). So the contexts (29, 24, 19 tokens, left-padded to 29) run once and each row
    runs its last prompt token and all but its last completion token (at most 4) on top; values, entropies
    and gradients equal one padded pass's."""
    monkeypatch.setattr(packing, "FORWARD_COST_TOKENS", 100)
    model, tokenizer = load_model(preset, seed=1)
    batch = rl_batch(tokenizer, [30, 25, 20], [1, 2, 3, 4] * 2)
    temperatures = torch.rand(24, generator=torch.Generator().manual_seed(3)) + 0.5
    results = packed_and_plain(model, batch, temperature=temperatures, backward=True)
    plain, packed = results[False], results[True]
    assert plain[3] == [(24, 34)] and packed[3] == [(3, 29), (24, 4)]
    torch.testing.assert_close(packed[0], plain[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(packed[1], plain[1], atol=1e-6, rtol=0)
    assert len(packed[2]) == len(plain[2])
    for got, expected in zip(packed[2], plain[2], strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_length_buckets_pad_each_bucket_to_its_own_longest_row(monkeypatch):
    """16 distinct 5-token prompts, 8 completions of 2 tokens and 8 of 40. With a forward at 10 tokens: one
    padded pass costs 16 x 44 + 10 = 714, two buckets 8 x 6 + 8 x 44 + 20 = 420, and sharing nothing (every
    context differs) costs more in each bucket (8 x 4 + 8 x 2 + 20 = 68 > 58; 372 > 362)."""
    monkeypatch.setattr(packing, "FORWARD_COST_TOKENS", 10)
    model, tokenizer = load_model("zaya-tiny", seed=1)
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(5, len(tokenizer), (5,), generator=gen).tolist() for _ in range(16)]
    completions = [torch.randint(5, len(tokenizer), (2 if i % 2 else 40,), generator=gen).tolist() for i in range(16)]
    batch = TrainBatch.from_lists(
        prompts, completions, [[0.0] * len(c) for c in completions], [0.0] * 16, [0] * 16,
        pad_token_id=tokenizer.pad_token_id, advantage=None,
    )  # fmt: skip
    results = packed_and_plain(model, batch)
    assert results[False][3] == [(16, 45)] and results[True][3] == [(8, 6), (8, 44)]
    torch.testing.assert_close(results[True][0], results[False][0], atol=1e-6, rtol=0)
    torch.testing.assert_close(results[True][1], results[False][1], atol=1e-6, rtol=0)


def test_packing_replays_routing_and_shares_only_contexts_routed_alike(monkeypatch):
    """Replayed routing reaches the shared contexts and the rows on top; a row whose recorded context routing
    differs from its group's gets a context forward of its own."""
    monkeypatch.setattr(packing, "FORWARD_COST_TOKENS", 100)
    model, tokenizer = load_model("zaya-tiny", seed=1)
    for router in find_routers(model):  # token-dependent routing, with some skips
        router.router_mlp.out_proj.weight.data *= 300
        router.balancing_biases[-1] = 0.05
    batch = rl_batch(tokenizer, [30, 25, 20], [1, 2, 3, 4] * 2)
    classes, layers = model.config.num_experts + 1, len(find_routers(model))
    routing = torch.randint(0, classes, (24, 34, layers), generator=torch.Generator().manual_seed(2))
    for row in range(24):  # each prompt's rows agree on its context's routing ...
        routing[row, :29] = routing[row - row % 8, :29]
    routing[9, 2] = (routing[9, 2] + 1) % classes  # ... except row 9 (second prompt)
    results = packed_and_plain(model, batch, routing=routing)
    live = packed_and_plain(model, batch)
    assert results[True][3] == [(4, 29), (24, 4)]
    torch.testing.assert_close(results[True][0], results[False][0], atol=1e-6, rtol=0)
    mask = batch.completion_mask > 0
    assert not torch.allclose(results[True][0][mask], live[True][0][mask], atol=1e-3)  # the replay mattered
