"""Fused LM head + temperature + log-softmax + gather (+ entropy), never holding [tokens, vocab] logits.

Forward (one Triton kernel): each program takes a block of rows and a contiguous slice of the vocabulary,
computes logits tiles hidden @ W^T / T with fp32 accumulation, and folds them into three running
statistics per row: the max m, s = Σ exp(z − m) and t = Σ exp(z − m)·(z − m) (the entropy's numerator),
rescaled whenever m grows (online logsumexp). It also keeps the target token's logit. The slices'
statistics are merged in torch ([splits, N] floats), giving

    log p(target) = (z_target − M) − log S        entropy = log S − T / S

Both terms of the log-prob are ≤ 0 by construction (z_target ≤ M and S ≥ 1), so it is never positive.

Backward: dz = g · (onehot(target) − softmax(z)) / T is recomputed by a second Triton kernel for one
vocabulary chunk at a time (the same fp32 logits tiles) and handed to the vendor BLAS for the two
gradient GEMMs, grad_hidden += dz @ W_chunk and grad_W_chunk = dz^T @ hidden. The chunk is sized so
dz stays under DLOGITS_BUDGET bytes. Entropy is a diagnostic and has no gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import nn

from posttrain.kernels.launch import block_rows, device_programs, kernel_operand

DLOGITS_BUDGET = 256 * 2**20  # bytes of the backward's [rows, vocab chunk] gradient buffer


@dataclass(frozen=True)
class LogprobBlocks:
    rows: int  # rows per program (power of two >= 16)
    vocab: int  # vocabulary columns per logits tile
    hidden: int  # reduction step over the hidden size
    splits: int  # vocabulary slices the forward spreads over programs
    backward_chunk: int  # vocabulary columns of dz materialised per backward step (a multiple of `vocab`)
    warps: int = 4


def choose_blocks(rows: int, vocab: int, hidden: int, device: torch.device, itemsize: int = 4) -> LogprobBlocks:
    """Tile sizes from the problem and the device: enough (rows × vocab-slice) programs to fill every
    SM/CU, one program per row block in the interpreter."""
    block_n = block_rows(rows, 64)
    block_v = 128 if device.type == "cuda" else 8192  # the interpreter pays per op, not per element
    block_k = max(16, min(64 if device.type == "cuda" else 128, triton.next_power_of_2(hidden)))
    vocab_blocks = triton.cdiv(vocab, block_v)
    splits = min(vocab_blocks, max(1, triton.cdiv(device_programs(device), triton.cdiv(rows, block_n))))
    fitting = DLOGITS_BUDGET // max(1, rows * itemsize) // block_v * block_v
    chunk = min(max(block_v, fitting), vocab_blocks * block_v)
    return LogprobBlocks(block_n, block_v, block_k, splits, chunk, warps=8 if block_n >= 64 else 4)


@triton.jit
def _logits_tile(x_ptr, w_ptr, rows, cols, row_ok, col_ok, hidden, sxn, sxh, swv, swh, temperature,
                 BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr):  # fmt: skip
    """z[rows, cols] = x[rows] · w[cols] / T, accumulated in fp32 over the hidden size."""
    acc = tl.zeros((BLOCK_N, BLOCK_V), dtype=tl.float32)
    for k0 in range(0, hidden, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < hidden
        x = tl.load(x_ptr + rows[:, None] * sxn + ks[None, :] * sxh, mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        w = tl.load(w_ptr + cols[None, :] * swv + ks[:, None] * swh, mask=col_ok[None, :] & k_ok[:, None], other=0.0)
        acc = tl.dot(x, w, acc, input_precision="ieee")
    return acc / temperature


@triton.jit
def _forward_kernel(x_ptr, w_ptr, target_ptr, stats_ptr, target_logit_ptr, n_rows, vocab, hidden, per_split,
                    sxn, sxh, swv, swh, temperature, WITH_ENTROPY: tl.constexpr,
                    BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr):  # fmt: skip
    row_block = tl.program_id(0)
    split = tl.program_id(1)
    rows = (row_block * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)  # int64: offsets pass 2**31 at scale
    row_ok = rows < n_rows
    target = tl.load(target_ptr + rows, mask=row_ok, other=-1)
    m = tl.full((BLOCK_N,), float("-inf"), dtype=tl.float32)
    s = tl.zeros((BLOCK_N,), dtype=tl.float32)
    t = tl.zeros((BLOCK_N,), dtype=tl.float32)
    picked = tl.zeros((BLOCK_N,), dtype=tl.float32)
    found = tl.zeros((BLOCK_N,), dtype=tl.int32)
    start = split * per_split
    stop = tl.minimum(start + per_split, vocab)
    for v0 in range(start, stop, BLOCK_V):
        cols = (v0 + tl.arange(0, BLOCK_V)).to(tl.int64)
        col_ok = cols < stop
        z = _logits_tile(x_ptr, w_ptr, rows, cols, row_ok, col_ok, hidden, sxn, sxh, swv, swh, temperature,
                         BLOCK_N, BLOCK_V, BLOCK_K)  # fmt: skip
        m_new = tl.maximum(m, tl.max(tl.where(col_ok[None, :], z, float("-inf")), axis=1))
        alpha = tl.exp(m - m_new)  # 0 on the first tile (m = -inf)
        shifted = tl.where(col_ok[None, :], z - m_new[:, None], 0.0)
        e = tl.where(col_ok[None, :], tl.exp(shifted), 0.0)
        if WITH_ENTROPY:
            grown = tl.where(s > 0, m - m_new, 0.0)
            t = alpha * (t + s * grown) + tl.sum(e * shifted, axis=1)
        s = alpha * s + tl.sum(e, axis=1)
        m = m_new
        hit = (cols[None, :] == target[:, None]) & col_ok[None, :]
        picked += tl.sum(tl.where(hit, z, 0.0), axis=1)
        found += tl.sum(hit.to(tl.int32), axis=1)
    offset = split * n_rows + rows
    tl.store(stats_ptr + offset, m, mask=row_ok)
    tl.store(stats_ptr + tl.num_programs(1) * n_rows + offset, s, mask=row_ok)
    if WITH_ENTROPY:
        tl.store(stats_ptr + 2 * tl.num_programs(1) * n_rows + offset, t, mask=row_ok)
    tl.store(target_logit_ptr + rows, picked, mask=row_ok & (found > 0))


@triton.jit
def _dlogits_kernel(x_ptr, w_ptr, target_ptr, lse_ptr, grad_ptr, dz_ptr, n_rows, vocab, hidden, first_col, width,
                    sxn, sxh, swv, swh, sdn, temperature,
                    BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr):  # fmt: skip
    rows = (tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    local = tl.program_id(1) * BLOCK_V + tl.arange(0, BLOCK_V)
    cols = (first_col + local).to(tl.int64)
    row_ok = rows < n_rows
    col_ok = (local < width) & (cols < vocab)
    z = _logits_tile(x_ptr, w_ptr, rows, cols, row_ok, col_ok, hidden, sxn, sxh, swv, swh, temperature,
                     BLOCK_N, BLOCK_V, BLOCK_K)  # fmt: skip
    lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)
    grad = tl.load(grad_ptr + rows, mask=row_ok, other=0.0)
    target = tl.load(target_ptr + rows, mask=row_ok, other=-1)
    onehot = (cols[None, :] == target[:, None]).to(tl.float32)
    dz = grad[:, None] * (onehot - tl.exp(z - lse[:, None])) / temperature
    ok = row_ok[:, None] & col_ok[None, :]
    tl.store(dz_ptr + rows[:, None] * sdn + local[None, :], dz.to(dz_ptr.dtype.element_ty), mask=ok)


def _operands(hidden: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both GEMM operands in one dtype (an fp32 LM head over bf16 hidden states computes in fp32)."""
    dtype = torch.promote_types(hidden.dtype, weight.dtype)
    return kernel_operand(hidden.to(dtype)), kernel_operand(weight.to(dtype))


def _forward(x, w, targets, temperature, with_entropy, blocks):
    rows, hidden = x.shape
    vocab = w.shape[0]
    per_split = triton.cdiv(triton.cdiv(vocab, blocks.vocab), blocks.splits) * blocks.vocab
    splits = triton.cdiv(vocab, per_split)  # no empty slice
    stats = torch.zeros(3, splits, rows, dtype=torch.float32, device=x.device)
    picked = torch.empty(rows, dtype=torch.float32, device=x.device)
    grid = (triton.cdiv(rows, blocks.rows), splits)
    _forward_kernel[grid](
        x, w, targets, stats, picked, rows, vocab, hidden, per_split, *x.stride(), *w.stride(), float(temperature),
        WITH_ENTROPY=with_entropy, BLOCK_N=blocks.rows, BLOCK_V=blocks.vocab, BLOCK_K=blocks.hidden,
        num_warps=blocks.warps,
    )  # fmt: skip
    m, s, t = stats
    top = m.max(dim=0).values
    scale = torch.exp(m - top)
    total = (s * scale).sum(dim=0)
    log_total = torch.log(total)
    logp = (picked - top) - log_total
    entropy = None
    if with_entropy:
        tilted = (scale * (t + s * (m - top))).sum(dim=0)
        entropy = log_total - tilted / total
    return logp, entropy, top + log_total


def _backward(x, w, targets, lse, grad, temperature, blocks, need_hidden, need_weight):
    rows, hidden = x.shape
    vocab = w.shape[0]
    grad_x = torch.zeros(rows, hidden, dtype=torch.float32, device=x.device) if need_hidden else None
    grad_w = torch.empty_like(w) if need_weight else None
    dz = torch.empty(rows, blocks.backward_chunk, dtype=x.dtype, device=x.device)
    grad = grad.float().contiguous()
    for first in range(0, vocab, blocks.backward_chunk):
        width = min(blocks.backward_chunk, vocab - first)
        grid = (triton.cdiv(rows, blocks.rows), triton.cdiv(width, blocks.vocab))
        _dlogits_kernel[grid](
            x, w, targets, lse, grad, dz, rows, vocab, hidden, first, width, *x.stride(), *w.stride(), dz.stride(0),
            float(temperature), BLOCK_N=blocks.rows, BLOCK_V=blocks.vocab, BLOCK_K=blocks.hidden,
            num_warps=blocks.warps,
        )  # fmt: skip
        part = dz[:, :width]
        if grad_x is not None:
            grad_x += part @ w[first : first + width]
        if grad_w is not None:
            grad_w[first : first + width] = part.T @ x
    return grad_x, grad_w


class _LinearLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, temperature, with_entropy, blocks):
        with torch.autocast(hidden.device.type, enabled=False):
            x, w = _operands(hidden, weight)
            logp, entropy, lse = _forward(x, w, targets, temperature, with_entropy, blocks)
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.temperature, ctx.blocks = temperature, blocks
        entropy = entropy if entropy is not None else logp.new_empty(0)
        ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp, _grad_entropy):
        hidden, weight, targets, lse = ctx.saved_tensors
        need_hidden, need_weight = ctx.needs_input_grad[:2]
        with torch.autocast(hidden.device.type, enabled=False):
            x, w = _operands(hidden, weight)
            grad_x, grad_w = _backward(
                x, w, targets, lse, grad_logp, ctx.temperature, ctx.blocks, need_hidden, need_weight
            )
        grad_x = grad_x.to(hidden.dtype) if grad_x is not None else None
        grad_w = grad_w.to(weight.dtype) if grad_w is not None else None
        return grad_x, grad_w, None, None, None, None


def linear_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 1.0,
    *,
    with_entropy: bool = False,
    blocks: LogprobBlocks | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log softmax(hidden @ weight^T / temperature)[target] per row, fp32 [N], and its entropy (no gradient).

    hidden [N, H], weight [V, H] (an LM head without bias), targets [N] in [0, V). Differentiable in
    hidden and weight. `blocks` overrides the tile sizes `choose_blocks` picks (tests use it to force
    several tiles and slices on tiny shapes).
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"expected hidden [N, H], weight [V, H]; got {tuple(hidden.shape)}, {tuple(weight.shape)}")
    if targets.shape != hidden.shape[:1]:
        raise ValueError(f"targets must be [N] = [{hidden.shape[0]}], got {tuple(targets.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    rows, vocab = hidden.shape[0], weight.shape[0]
    if rows == 0:
        empty = hidden.sum(dim=1).float() * 0.0  # [0], still attached to the graph
        return empty, (empty.detach() if with_entropy else None)
    if bool(((targets < 0) | (targets >= vocab)).any()):
        raise ValueError(f"targets must lie in [0, {vocab})")
    itemsize = torch.promote_types(hidden.dtype, weight.dtype).itemsize
    blocks = blocks or choose_blocks(rows, vocab, hidden.shape[1], hidden.device, itemsize)
    logp, entropy = _LinearLogprobs.apply(
        hidden, weight, targets.contiguous(), float(temperature), with_entropy, blocks
    )
    return logp, (entropy if with_entropy else None)


def head_supported(head: nn.Module) -> bool:
    """The fused path covers a plain bias-free linear LM head (ZAYA, Llama); others take the torch path."""
    return type(head) is nn.Linear and head.bias is None


def fused_chunk_logprobs(
    head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, temperature: float | torch.Tensor, entropy: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Drop-in for `posttrain.rl.logprobs._chunk_logprobs`: hidden [B, C, H], targets [B, C] -> [B, C].
    A per-row temperature ([B, 1, 1]) scales the hidden states instead: (h / T) @ W^T = (h @ W^T) / T."""
    if isinstance(temperature, torch.Tensor):
        hidden, temperature = hidden / temperature.to(hidden.dtype), 1.0
    flat = hidden.reshape(-1, hidden.shape[-1])
    logp, ent = linear_logprobs(flat, head.weight, targets.reshape(-1), temperature, with_entropy=entropy)
    return logp.view(targets.shape), (ent.view(targets.shape) if ent is not None else None)
