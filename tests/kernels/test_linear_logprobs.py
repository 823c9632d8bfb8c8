"""The fused LM-head log-prob kernel (Triton interpreter) against float64 oracles and the torch path."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("triton")

from posttrain.kernels.linear_logprobs import LogprobBlocks, linear_logprobs
from posttrain.models import load_model
from posttrain.rl.logprobs import token_logprobs

# Forces many tiles on tiny shapes: 16-row blocks, 32-column vocab tiles, 16-wide hidden steps, the vocab
# spread over 3 slices whose statistics are merged, and dlogits materialised 64 columns at a time.
SMALL_TILES = LogprobBlocks(rows=16, vocab=32, hidden=16, splits=3, backward_chunk=64)


def oracle(hidden, weight, targets, temperature, grad):
    """float64: full logits, torch.log_softmax, autograd."""
    h = hidden.detach().double().requires_grad_()
    w = weight.detach().double().requires_grad_()
    logp = torch.log_softmax(h @ w.T / temperature, dim=-1)
    picked = logp.gather(-1, targets[:, None]).squeeze(-1)
    (picked * grad.double()).sum().backward()
    return picked.detach(), -(logp.exp() * logp).sum(-1).detach(), h.grad, w.grad


def inputs(rows, hidden, vocab, seed=0, scale=1.0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    h = (torch.randn(rows, hidden, generator=gen) * scale).to(dtype)
    w = (torch.randn(vocab, hidden, generator=gen) * hidden**-0.5 * 3).to(dtype)
    return h, w, torch.randint(0, vocab, (rows,), generator=gen), torch.randn(rows, generator=gen)


def run_kernel(h, w, targets, temperature, grad, blocks=None):
    h, w = h.clone().requires_grad_(), w.clone().requires_grad_()
    lp, ent = linear_logprobs(h, w, targets, temperature, with_entropy=True, blocks=blocks)
    (lp * grad).sum().backward()
    return lp.detach(), ent, h.grad, w.grad


@pytest.mark.parametrize(
    ("rows", "hidden", "vocab", "temperature", "blocks"),
    [
        (37, 33, 301, 0.7, SMALL_TILES),  # no size a multiple of a tile: ragged last row block, tile, slice, chunk
        (16, 16, 96, 2.5, SMALL_TILES),  # exact multiples
        (5, 20, 77, 1.0, None),  # the tiles choose_blocks picks
    ],
)
def test_values_and_gradients_equal_float64(rows, hidden, vocab, temperature, blocks):
    h, w, targets, grad = inputs(rows, hidden, vocab)
    lp, ent, gh, gw = run_kernel(h, w, targets, temperature, grad, blocks)
    want_lp, want_ent, want_gh, want_gw = oracle(h, w, targets, temperature, grad)
    assert lp.dtype == ent.dtype == torch.float32
    torch.testing.assert_close(lp.double(), want_lp, atol=1e-5, rtol=0)
    torch.testing.assert_close(ent.double(), want_ent, atol=1e-5, rtol=0)
    torch.testing.assert_close(gh.double(), want_gh, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(gw.double(), want_gw, atol=1e-5, rtol=1e-4)
    assert (lp <= 0).all()


def test_vocab_262272_with_three_tokens_equals_float64():
    """ZAYA1's vocabulary; targets at the start, past 250k and the last id."""
    h, w, _, grad = inputs(3, 16, 262_272, seed=3)
    targets = torch.tensor([0, 250_001, 262_271])
    lp, ent, gh, gw = run_kernel(h, w, targets, 0.9, grad)
    want_lp, want_ent, want_gh, want_gw = oracle(h, w, targets, 0.9, grad)
    torch.testing.assert_close(lp.double(), want_lp, atol=1e-5, rtol=0)
    torch.testing.assert_close(ent.double(), want_ent, atol=2e-5, rtol=0)
    # fp32 itself: the torch path's grad_hidden lands as far from float64 (a softmax spread over 262k ids)
    assert (gh.double() - want_gh).norm() / want_gh.norm() < 5e-4
    assert (gw.double() - want_gw).norm() / want_gw.norm() < 1e-5


def test_uniform_logits_over_262272_ids_need_fp32_sums():
    """Equal logits: log p = −log V and entropy = log V exactly. A bf16 running sum stops growing at 256
    and an fp16 one overflows, so anything but an fp32 accumulator misses these."""
    vocab = 262_272
    weight = torch.ones(vocab, 16) * 0.25
    hidden = torch.randn(3, 16)
    lp, ent = linear_logprobs(hidden, weight, torch.tensor([7, 250_001, vocab - 1]), 1.0, with_entropy=True)
    torch.testing.assert_close(lp, torch.full((3,), -math.log(vocab)), atol=2e-6, rtol=0)
    torch.testing.assert_close(ent, torch.full((3,), math.log(vocab)), atol=2e-6, rtol=0)


def test_log_probs_never_positive_and_large_logits_do_not_overflow():
    """verl issue 2656: a fused kernel returned log-probs > 0. Rows: the target leads by 120 nats (its
    log-prob rounds to 0, never above); a three-way tie; logits of ±3000 (exp overflows fp32 at 88) with a
    target 6000 nats down; all logits equal."""
    weight = torch.zeros(300, 16)
    weight[:, 0], weight[5, 0] = -1.0, 1.0
    weight[:, 1], weight[[6, 7, 8], 1] = -1 / 16, 1.0
    hidden = torch.zeros(4, 16)
    hidden[0, 0], hidden[1, 1], hidden[2, 0] = 60.0, 5.0, 3000.0
    targets = torch.tensor([5, 6, 9, 8])
    lp, ent = linear_logprobs(hidden, weight, targets, 1.0, with_entropy=True, blocks=SMALL_TILES)
    want, want_ent, _, _ = oracle(hidden, weight, targets, 1.0, torch.ones(4))
    assert (lp <= 0).all() and (ent >= 0).all()
    torch.testing.assert_close(lp.double(), want, atol=1e-5, rtol=0)
    torch.testing.assert_close(ent.double(), want_ent, atol=1e-5, rtol=0)
    assert -1e-6 < lp[0] <= 0
    assert lp[2] == -6000.0
    assert lp[3] == pytest.approx(-math.log(300), abs=1e-6)


@pytest.mark.parametrize("weight_dtype", [torch.bfloat16, torch.float32])
def test_bf16_hidden_accumulates_in_fp32_and_keeps_grad_dtypes(weight_dtype):
    """bf16 products are exact in fp32, so with fp32 sums the result is the float64 value of the bf16 inputs
    to fp32 rounding; a frozen weight gets no gradient."""
    h, w, targets, grad = inputs(19, 40, 150, seed=5, dtype=torch.bfloat16)
    w = w.to(weight_dtype)
    hk = h.clone().requires_grad_()
    lp, ent = linear_logprobs(hk, w, targets, 0.8, with_entropy=True, blocks=SMALL_TILES)
    (lp * grad).sum().backward()
    want_lp, want_ent, want_gh, _ = oracle(h, w, targets, 0.8, grad)
    assert lp.dtype == torch.float32 and hk.grad.dtype == torch.bfloat16 and w.grad is None
    torch.testing.assert_close(lp.double(), want_lp, atol=1e-5, rtol=0)
    torch.testing.assert_close(ent.double(), want_ent, atol=1e-5, rtol=0)
    torch.testing.assert_close(hk.grad.double(), want_gh, atol=1e-2, rtol=1e-2)  # bf16 gradient storage


def test_no_rows():
    hidden = torch.zeros(0, 8, requires_grad=True)
    lp, ent = linear_logprobs(hidden, torch.randn(10, 8), torch.zeros(0, dtype=torch.long), with_entropy=True)
    assert lp.shape == ent.shape == (0,)
    lp.sum().backward()
    assert hidden.grad.shape == (0, 8)


@pytest.mark.parametrize(
    ("rows", "targets", "temperature", "message"),
    [
        (4, [0, 1, 2, 10], 1.0, r"targets must lie in \[0, 10\)"),
        (4, [0, 1, 2, -1], 1.0, r"targets must lie"),
        (4, [0, 1, 2, 3], 0.0, "temperature must be > 0"),
        (4, [0, 1, 2], 1.0, r"targets must be \[N\]"),
        (3, [0, 1, 2], 1.0, r"expected hidden \[N, H\], weight \[V, H\]"),
    ],
)
def test_bad_inputs_raise(rows, targets, temperature, message):
    hidden = torch.randn(rows, 8 if rows == 4 else 9)
    with pytest.raises(ValueError, match=message):
        linear_logprobs(hidden, torch.randn(10, 8), torch.tensor(targets), temperature)


@pytest.mark.parametrize("preset", ["zaya-tiny", "llama-tiny"])
def test_token_logprobs_with_triton_equals_torch(preset):
    """The learner's entry point: padding, a score mask, temperature, entropy and parameter gradients."""
    model, tokenizer = load_model(preset, seed=1)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, len(tokenizer), (3, 29), generator=gen)
    attention = torch.ones_like(ids)
    attention[1, 20:] = 0
    ids[1, 20:] = tokenizer.pad_token_id
    score = torch.zeros_like(ids)
    score[:, 12:] = 1
    results = {}
    for kernels in ("torch", "triton"):
        logps, entropy = token_logprobs(
            model, ids, attention, temperature=0.7, chunk_size=8, score_mask=score, with_entropy=True, kernels=kernels
        )
        (logps * score * attention).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        model.zero_grad(set_to_none=True)
        results[kernels] = (logps.detach(), entropy, grads)
    (lp_t, ent_t, grads_t), (lp_k, ent_k, grads_k) = results["torch"], results["triton"]
    torch.testing.assert_close(lp_k, lp_t, atol=1e-5, rtol=0)
    torch.testing.assert_close(ent_k, ent_t, atol=1e-5, rtol=0)
    assert torch.count_nonzero(lp_k[:, :9]) == 0  # chunk 0 (tokens 1..8) holds no scored token: skipped
    assert grads_k.keys() == grads_t.keys() and grads_t
    for name, grad in grads_t.items():
        torch.testing.assert_close(grads_k[name], grad, atol=1e-5, rtol=1e-4, msg=name)
