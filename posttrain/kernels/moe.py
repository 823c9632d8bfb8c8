"""ZAYA's top-1 MoE expert compute as two grouped GEMMs over the experts' [E, out, in] weights.

transformers' ZayaExperts loops over the experts that received tokens and runs two linears per expert;
its router marks a token that chose the skip class with gate weight 0 (and expert 0), and the loop still
computes it. Here the routed tokens (gate weight ≠ 0 and expert < E) are sorted by expert, cut into
row tiles that never straddle two experts, and each GEMM is one launch over (tile, output block):

    gate_up = x[rows] @ W_gate_up[e]^T           (rows gathered inside the kernel)
    act     = act_fn(gate) * up                   (torch, elementwise)
    y       = act @ W_down[e]^T
    out[rows] = gate_weight[rows] * y;  skipped tokens: 0, no compute

Backward uses the same grouped GEMM for the input gradients (scattered back to token rows) and a second
kernel for the weight gradients, one program per (expert, output block, input block) summing over that
expert's rows; an expert without tokens gets a zero gradient. Top-1 routing means a token appears at
most once, so no scatter collides and no atomics are needed.

A zero gate weight is ZAYA's skip marker, so a real expert choice whose softmax weight underflowed to
exactly 0 is also skipped: its output is 0 either way, and only the weight's own gradient (the expert
output's dot product with the incoming gradient) differs from the eager loop's.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import nn

from posttrain.kernels.launch import block_rows, kernel_operand


@dataclass(frozen=True)
class ExpertPlan:
    rows: torch.Tensor  # [M] token index of each routed row, sorted by expert
    offsets: torch.Tensor  # [E + 1] where each expert's rows start in `rows`
    tile_expert: torch.Tensor  # [tiles] the expert of each row tile
    tile_start: torch.Tensor  # [tiles] first row of the tile (index into `rows`)
    tile_stop: torch.Tensor  # [tiles] end of the tile's expert (the tile stops at min(start + BLOCK_M, stop))
    block_m: int  # rows per tile
    max_tile: int  # cap on the output and reduction tile widths

    @property
    def num_experts(self) -> int:
        return self.offsets.numel() - 1


def plan_experts(
    expert_index: torch.Tensor, gate: torch.Tensor, num_experts: int, block_m: int, max_tile: int = 64
) -> ExpertPlan:
    """Sort the routed tokens by expert and cut them into row tiles (one host sync, for the tile count)."""
    active = (expert_index >= 0) & (expert_index < num_experts) & (gate != 0)
    tokens = active.nonzero().squeeze(1)
    experts = expert_index[tokens]
    order = torch.argsort(experts, stable=True)
    rows, experts = tokens[order], experts[order]
    counts = torch.bincount(experts, minlength=num_experts)
    offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    tiles_per_expert = (counts + block_m - 1) // block_m
    tile_expert = torch.repeat_interleave(torch.arange(num_experts, device=counts.device), tiles_per_expert)
    first_tile = tiles_per_expert.cumsum(0) - tiles_per_expert
    within = torch.arange(tile_expert.numel(), device=counts.device) - first_tile[tile_expert]
    return ExpertPlan(
        rows=rows,
        offsets=offsets,
        tile_expert=tile_expert,
        tile_start=offsets[tile_expert] + within * block_m,
        tile_stop=offsets[tile_expert + 1],
        block_m=block_m,
        max_tile=max_tile,
    )


@triton.jit
def _grouped_mm_kernel(a_ptr, a_rows_ptr, w_ptr, c_ptr, c_rows_ptr, tile_expert_ptr, tile_start_ptr, tile_stop_ptr,
                       n_out, k_in, sam, sak, swe, swn, swk, scm, scn,
                       GATHER_A: tl.constexpr, SCATTER_C: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):  # fmt: skip
    """c[c_row(m)] = a[a_row(m)] @ w[e]  for the rows m of one tile, w[e] read as [k_in, n_out] via strides."""
    tile = tl.program_id(0)
    expert = tl.load(tile_expert_ptr + tile).to(tl.int64)
    start = tl.load(tile_start_ptr + tile)
    stop = tl.load(tile_stop_ptr + tile)
    m = (start + tl.arange(0, BLOCK_M)).to(tl.int64)  # int64: row offsets pass 2**31 at scale
    m_ok = m < stop
    a_row = tl.load(a_rows_ptr + m, mask=m_ok, other=0).to(tl.int64) if GATHER_A else m
    n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = n < n_out
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, k_in, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        k_ok = k < k_in
        a = tl.load(a_ptr + a_row[:, None] * sam + k[None, :] * sak, mask=m_ok[:, None] & k_ok[None, :], other=0.0)
        w = tl.load(w_ptr + expert * swe + n[None, :] * swn + k[:, None] * swk,
                    mask=n_ok[None, :] & k_ok[:, None], other=0.0)  # fmt: skip
        acc = tl.dot(a, w, acc, input_precision="ieee")
    c_row = tl.load(c_rows_ptr + m, mask=m_ok, other=0).to(tl.int64) if SCATTER_C else m
    ok = m_ok[:, None] & n_ok[None, :]
    tl.store(c_ptr + c_row[:, None] * scm + n[None, :] * scn, acc.to(c_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _grouped_weight_grad_kernel(g_ptr, a_ptr, a_rows_ptr, dw_ptr, offsets_ptr, n_out, k_in,
                                sgm, sgn, sam, sak, swe, swn, swk, GATHER_A: tl.constexpr,
                                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):  # fmt: skip
    """dw[e][n, k] = Σ over expert e's rows m of g[m, n] · a[a_row(m), k]."""
    expert = tl.program_id(0)
    start = tl.load(offsets_ptr + expert)
    stop = tl.load(offsets_ptr + expert + 1)
    n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    k = tl.program_id(2) * BLOCK_K + tl.arange(0, BLOCK_K)
    n_ok = n < n_out
    k_ok = k < k_in
    acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    for m0 in range(start, stop, BLOCK_M):
        m = (m0 + tl.arange(0, BLOCK_M)).to(tl.int64)
        m_ok = m < stop
        a_row = tl.load(a_rows_ptr + m, mask=m_ok, other=0).to(tl.int64) if GATHER_A else m
        g = tl.load(g_ptr + m[:, None] * sgm + n[None, :] * sgn, mask=m_ok[:, None] & n_ok[None, :], other=0.0)
        a = tl.load(a_ptr + a_row[:, None] * sam + k[None, :] * sak, mask=m_ok[:, None] & k_ok[None, :], other=0.0)
        acc = tl.dot(tl.trans(g), a, acc, input_precision="ieee")
    out = dw_ptr + expert.to(tl.int64) * swe + n[:, None] * swn + k[None, :] * swk
    tl.store(out, acc.to(dw_ptr.dtype.element_ty), mask=n_ok[:, None] & k_ok[None, :])


def _tile(size: int, cap: int) -> int:
    return max(16, min(cap, triton.next_power_of_2(size)))


def _grouped_mm(a, weight, c, plan: ExpertPlan, *, transpose: bool, gather_a: bool, scatter_c: bool) -> None:
    """c[row] = a[row] @ weight[e]^T (transpose) or a[row] @ weight[e]; rows are `plan.rows` where gathered
    or scattered, else the sorted order itself."""
    if plan.tile_expert.numel() == 0:
        return
    swe, sw1, sw2 = weight.stride()
    swn, swk = (sw1, sw2) if transpose else (sw2, sw1)
    n_out, k_in = c.shape[1], a.shape[1]
    block_n, block_k = _tile(n_out, plan.max_tile), _tile(k_in, plan.max_tile)
    grid = (plan.tile_expert.numel(), triton.cdiv(n_out, block_n))
    _grouped_mm_kernel[grid](
        a, plan.rows, weight, c, plan.rows, plan.tile_expert, plan.tile_start, plan.tile_stop,
        n_out, k_in, *a.stride(), swe, swn, swk, *c.stride(), GATHER_A=gather_a, SCATTER_C=scatter_c,
        BLOCK_M=plan.block_m, BLOCK_N=block_n, BLOCK_K=block_k,
    )  # fmt: skip


def _grouped_weight_grad(grad, a, plan: ExpertPlan, gather_a: bool, out: torch.Tensor) -> None:
    """out[e] = grad[rows of e]^T @ a[rows of e], written for every expert (zeros for one without rows)."""
    if plan.rows.numel() == 0:  # every token skipped; an empty tensor may have no device pointer to pass
        out.zero_()
        return
    n_out, k_in = out.shape[1], out.shape[2]
    block_n, block_k = _tile(n_out, plan.max_tile), _tile(k_in, plan.max_tile)
    grid = (plan.num_experts, triton.cdiv(n_out, block_n), triton.cdiv(k_in, block_k))
    _grouped_weight_grad_kernel[grid](
        grad, a, plan.rows, out, plan.offsets, n_out, k_in, *grad.stride(), *a.stride(), *out.stride(),
        GATHER_A=gather_a, BLOCK_M=plan.block_m, BLOCK_N=block_n, BLOCK_K=block_k,
    )  # fmt: skip


class _GroupedLinear(torch.autograd.Function):
    """[M, P] = a[rows] @ weight[e]^T over the plan's sorted rows; a is [tokens, Q] (gather) or [M, Q]."""

    @staticmethod
    def forward(ctx, a, weight, plan: ExpertPlan, gather: bool, dtype: torch.dtype):
        a_k, w_k = kernel_operand(a.to(dtype)), kernel_operand(weight.to(dtype))
        out = torch.empty(plan.rows.numel(), weight.shape[1], dtype=a_k.dtype, device=a.device)
        _grouped_mm(a_k, w_k, out, plan, transpose=True, gather_a=gather, scatter_c=False)
        ctx.save_for_backward(a, weight)
        ctx.plan, ctx.gather, ctx.dtype = plan, gather, dtype
        return out.to(dtype)

    @staticmethod
    def backward(ctx, grad_out):
        a, weight = ctx.saved_tensors
        plan, gather = ctx.plan, ctx.gather
        a_k, w_k = kernel_operand(a.to(ctx.dtype)), kernel_operand(weight.to(ctx.dtype))
        g_k = kernel_operand(grad_out.to(ctx.dtype))
        grad_a = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_a = (torch.zeros if gather else torch.empty)(a.shape, dtype=a_k.dtype, device=a.device)
            _grouped_mm(g_k, w_k, grad_a, plan, transpose=False, gather_a=False, scatter_c=gather)
            grad_a = grad_a.to(a.dtype)
        if ctx.needs_input_grad[1]:
            grad_w = torch.empty(weight.shape, dtype=w_k.dtype, device=weight.device)
            _grouped_weight_grad(g_k, a_k, plan, gather, grad_w)
            grad_w = grad_w.to(weight.dtype)
        return grad_a, grad_w, None, None, None


def _compute_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """Autocast's dtype where autocast is on (as the eager experts' F.linear would get), else the promoted one."""
    if torch.is_autocast_enabled(hidden.device.type):
        return torch.get_autocast_dtype(hidden.device.type)
    return torch.promote_types(hidden.dtype, weight.dtype)


def grouped_experts(
    hidden: torch.Tensor,
    expert_index: torch.Tensor,
    gate: torch.Tensor,
    gate_up_proj: torch.Tensor,
    down_proj: torch.Tensor,
    act_fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    max_tile: int | None = None,
) -> torch.Tensor:
    """ZAYA top-1 experts: hidden [T, H], expert_index and gate [T]; gate_up_proj [E, 2I, H], down_proj [E, H, I].

    Tokens with gate 0 or expert_index outside [0, E) (skip) get 0 and cost nothing. Differentiable in
    hidden, gate and both weights. Tiles are up to 64 wide on a GPU and 256 in the interpreter (which
    pays per program, not per element); `max_tile` overrides that (tests force 16 to get many tiles).
    """
    num_experts = gate_up_proj.shape[0]
    cap = max_tile or (64 if hidden.device.type == "cuda" else 256)
    block_m = block_rows(max(1, hidden.shape[0] // num_experts), cap)
    plan = plan_experts(expert_index, gate, num_experts, block_m, cap)
    dtype = _compute_dtype(hidden, gate_up_proj)
    gate_up = _GroupedLinear.apply(hidden, gate_up_proj, plan, True, dtype)
    gate_part, up = gate_up.chunk(2, dim=-1)
    expert_out = _GroupedLinear.apply(act_fn(gate_part) * up, down_proj, plan, False, dtype)
    weighted = expert_out * gate[plan.rows, None]
    return torch.zeros_like(hidden).index_copy(0, plan.rows, weighted.to(hidden.dtype))


def _experts_forward(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor):
    """ZayaExperts.forward's contract: hidden [T, H], top_k_index / top_k_weights [T, 1] -> [T, H]."""
    if top_k_index.shape[-1] != 1:
        raise ValueError(f"the Triton experts handle top-1 routing only, got top-{top_k_index.shape[-1]}")
    return grouped_experts(
        hidden_states, top_k_index[:, 0], top_k_weights[:, 0], self.gate_up_proj, self.down_proj, self.act_fn
    )


def is_zaya_experts(module: nn.Module) -> bool:
    """transformers' ZayaExperts layout: gate_up_proj [E, 2I, H] (gate then up), down_proj [E, H, I], no bias."""
    gate_up, down = getattr(module, "gate_up_proj", None), getattr(module, "down_proj", None)
    if not (isinstance(gate_up, torch.Tensor) and isinstance(down, torch.Tensor)):
        return False
    if gate_up.dim() != 3 or down.dim() != 3 or getattr(module, "num_experts", None) != gate_up.shape[0]:
        return False
    layout = not getattr(module, "has_bias", False) and not getattr(module, "is_transposed", False)
    layout = layout and getattr(module, "is_concatenated", True) and callable(getattr(module, "act_fn", None))
    return layout and down.shape[0] == gate_up.shape[0] and gate_up.shape[1:] == (2 * down.shape[2], down.shape[1])


def use_triton_experts(model: nn.Module) -> Callable[[], None]:
    """Route every ZAYA experts module of `model` through the grouped-GEMM kernels; returns the undo.

    The patch is per module instance (nothing global changes, checkpoints are unaffected); a model without
    ZAYA experts is left as it is.
    """
    patched = [m for m in model.modules() if is_zaya_experts(m)]
    for module in patched:
        module.forward = types.MethodType(_experts_forward, module)

    def restore() -> None:
        for module in patched:
            module.__dict__.pop("forward", None)

    return restore
