"""Triton kernels against their references: correctness everywhere, time and peak memory on a GPU.

    .venv/bin/python bench/kernels.py correctness                      # CPU: Triton's interpreter, small shapes
    .venv/bin/python bench/kernels.py correctness --shapes zaya1-8b    # GPU: hidden 2048, vocab 262,272, 16 experts
    .venv/bin/python bench/kernels.py speed                            # GPU: ms and peak MiB, fwd + bwd
    .venv/bin/python bench/kernels.py learner [--runs 5 --workers 1 2] # data-parallel learner step, gloo replicas

The oracle is float64 (the same inputs, full logits, torch's log_softmax and autograd); the table also
shows how far the torch path (posttrain.rl.logprobs without kernels) at the kernel's dtype lands from it.
Interpreter timings say nothing about speed, so `correctness` reports none. Exit status 1 when any case
fails its tolerance. bench/gpu_check.sh runs both on a GPU and adds RL steps. `learner` is bench/dp_learner.py:
the RL learner's step time in one process against 1 and 2 data-parallel gloo replicas (its options pass on).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

# Tolerances: log-probs and entropies absolutely (nats), gradients and MoE outputs as ‖Δ‖ / ‖oracle‖.
# fp32 gradients at vocab 262,272 sit ~7e-5 from float64 for the torch path too (a spread softmax), hence 5e-4.
TOL = {torch.float32: {"nats": 1e-4, "rel": 5e-4}, torch.bfloat16: {"nats": 2e-3, "rel": 2e-2}}

LOGPROB_SHAPES = {
    # (rows, hidden, vocab, dtype, temperature)
    "small": [(37, 33, 301, torch.float32, 0.7), (3, 16, 262_272, torch.float32, 1.0)],
    "zaya1-8b": [(4096, 2048, 262_272, torch.bfloat16, 1.0), (1024, 2048, 262_272, torch.bfloat16, 0.6)],
}
MOE_SHAPES = {
    # (tokens, hidden, intermediate, experts, skip fraction, dtype)
    "small": [(37, 24, 20, 4, 0.25, torch.float32), (20, 16, 16, 3, 0.0, torch.float32)],
    "zaya1-8b": [(4096, 2048, 2048, 16, 0.25, torch.bfloat16)],
}


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    want = want.double()
    return float((got.double() - want).norm() / want.norm().clamp_min(1e-30))


def _oracle_logprobs(hidden, weight, targets, temperature, grad, rows_per_chunk=512):
    """float64 log-probs, entropies and their gradients, by autograd over row chunks of full logits."""
    w = weight.detach().double().requires_grad_()
    logps, ents, grad_h = [], [], []
    for start in range(0, hidden.shape[0], rows_per_chunk):
        part = hidden[start : start + rows_per_chunk].detach().double().requires_grad_()
        logp = torch.log_softmax(part @ w.T / temperature, dim=-1)
        picked = logp.gather(-1, targets[start : start + rows_per_chunk, None]).squeeze(-1)
        (picked * grad[start : start + rows_per_chunk].double()).sum().backward()
        logps.append(picked.detach())
        ents.append(-(logp.exp() * logp).sum(-1).detach())
        grad_h.append(part.grad)
    return torch.cat(logps), torch.cat(ents), torch.cat(grad_h), w.grad


def _torch_head(weight: torch.Tensor) -> nn.Linear:
    head = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device=weight.device, dtype=weight.dtype)
    head.weight = nn.Parameter(weight.detach().clone())
    return head


def _torch_path_logprobs(head, hidden, targets, temperature):
    """What posttrain.rl.logprobs runs per chunk without kernels (checkpointed), at the inputs' dtype."""
    from posttrain.rl.logprobs import _chunk_logprobs

    return checkpoint(_chunk_logprobs, head, hidden, targets, temperature, True, use_reentrant=False)


def _logprob_inputs(rows, hidden, vocab, dtype, device, seed=0):
    gen = torch.Generator(device="cpu").manual_seed(seed)
    h = torch.randn(rows, hidden, generator=gen).to(device, dtype)
    w = (torch.randn(vocab, hidden, generator=gen) * hidden**-0.5 * 3).to(device, dtype)
    targets = torch.randint(0, vocab, (rows,), generator=gen).to(device)
    targets[-1] = vocab - 1  # the far end of the vocabulary, where fp32-index ports went wrong
    grad = torch.randn(rows, generator=gen).to(device)
    return h, w, targets, grad


def check_logprobs(rows, hidden, vocab, dtype, temperature, device) -> dict:
    from posttrain.kernels.linear_logprobs import linear_logprobs

    h, w, targets, grad = _logprob_inputs(rows, hidden, vocab, dtype, device)
    want_lp, want_ent, want_gh, want_gw = _oracle_logprobs(h, w, targets, temperature, grad)
    hk, wk = h.clone().requires_grad_(), w.clone().requires_grad_()
    lp, ent = linear_logprobs(hk, wk, targets, temperature, with_entropy=True)
    (lp * grad).sum().backward()
    torch_lp, _ = _torch_path_logprobs(_torch_head(w), h, targets, temperature)
    torch_err = float((torch_lp.detach().double() - want_lp).abs().max())
    tol = TOL[dtype]
    lp, ent = lp.detach().double(), ent.double()
    errors = {
        "logp": float((lp - want_lp).abs().max()),
        "entropy": float((ent - want_ent).abs().max()),
        "grad_hidden": _rel(hk.grad, want_gh),
        "grad_weight": _rel(wk.grad, want_gw),
    }
    ok = errors["logp"] <= tol["nats"] and errors["entropy"] <= tol["nats"] and float(lp.max()) <= 0
    ok = ok and errors["grad_hidden"] <= tol["rel"] and errors["grad_weight"] <= tol["rel"]
    result = (
        f"max|Δlogp| {errors['logp']:.1e} (torch path {torch_err:.1e}), "
        f"max|Δent| {errors['entropy']:.1e}, grad rel h {errors['grad_hidden']:.1e} W {errors['grad_weight']:.1e}, "
        f"max logp {float(lp.max()):.2g}"
    )
    case = f"N={rows} H={hidden} V={vocab:,} {str(dtype)[6:]} T={temperature:g}"
    return {"part": "logprobs", "case": case, "result": result, "ok": ok}


def _zaya_experts(hidden, inter, experts, dtype, device, implementation="eager", seed=0):
    from transformers import AutoConfig
    from transformers.models.zaya.modeling_zaya import ZayaExperts

    config = AutoConfig.for_model(
        "zaya", hidden_size=hidden, moe_intermediate_size=inter, num_experts=experts, num_hidden_layers=1
    )
    config._experts_implementation = implementation
    module = ZayaExperts(config)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        module.gate_up_proj.copy_(torch.randn(module.gate_up_proj.shape, generator=gen) * hidden**-0.5)
        module.down_proj.copy_(torch.randn(module.down_proj.shape, generator=gen) * inter**-0.5)
    return module.to(device, dtype)


def _moe_inputs(tokens, hidden, experts, skip, dtype, device, seed=1):
    """ZAYA's router convention: a skipped token is sent to expert 0 with gate weight 0."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(tokens, hidden, generator=gen)
    index = torch.randint(0, experts, (tokens, 1), generator=gen)
    gate = torch.rand(tokens, 1, generator=gen) * 0.9 + 0.1
    skipped = torch.rand(tokens, 1, generator=gen) < skip
    grad = torch.randn(tokens, hidden, generator=gen)
    return (x.to(device, dtype), index.masked_fill(skipped, 0).to(device), gate.to(device, dtype), skipped.to(device),
            grad.to(device, dtype))  # fmt: skip


def _moe_grads(module, x, index, gate, skipped, grad):
    x, gate = x.detach().clone().requires_grad_(), gate.detach().clone().requires_grad_()
    out = module(x, index, gate.masked_fill(skipped, 0))
    grads = torch.autograd.grad((out * grad).sum(), [x, gate, module.gate_up_proj, module.down_proj])
    return [out.detach(), *grads]


def check_moe(tokens, hidden, inter, experts, skip, dtype, device) -> dict:
    from posttrain.kernels.moe import use_triton_experts

    x, index, gate, skipped, grad = _moe_inputs(tokens, hidden, experts, skip, dtype, device)
    module = _zaya_experts(hidden, inter, experts, dtype, device)
    wide = [t.double() if t.is_floating_point() else t for t in (x, index, gate, skipped, grad)]
    oracle = _moe_grads(copy.deepcopy(module).double(), *wide)
    torch_path = _moe_grads(module, x, index, gate, skipped, grad)
    use_triton_experts(module)
    got = _moe_grads(module, x, index, gate, skipped, grad)
    names = ("out", "x", "gate", "W_gate_up", "W_down")
    errors = {name: _rel(g, want) for name, g, want in zip(names, got, oracle, strict=True)}
    worst_torch = max(_rel(g, want) for g, want in zip(torch_path, oracle, strict=True))
    ok = max(errors.values()) <= TOL[dtype]["rel"]
    result = ", ".join(f"{k} {v:.1e}" for k, v in errors.items()) + f" (rel; torch path worst {worst_torch:.1e})"
    case = f"T={tokens} H={hidden} I={inter} E={experts} skip {skip:.0%} {str(dtype)[6:]}"
    return {"part": "moe", "case": case, "result": result, "ok": ok}


def correctness_rows(shapes: str, device: str) -> list[dict]:
    rows = [check_logprobs(*shape, device) for shape in LOGPROB_SHAPES[shapes]]
    return rows + [check_moe(*shape, device) for shape in MOE_SHAPES[shapes]]


def _measure(step: Callable[[], None], reps: int = 5) -> tuple[float, float]:
    """(median ms, peak MiB above what was allocated before) of a forward + backward on the GPU."""
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for rep in range(reps + 1):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        step()
        end.record()
        torch.cuda.synchronize()
        if rep:  # the first run compiles
            times.append(begin.elapsed_time(end))
    return statistics.median(times), (torch.cuda.max_memory_allocated() - base) / 2**20


def _liger_step(h, w, targets) -> Callable[[], None] | None:
    if importlib.util.find_spec("liger_kernel") is None:
        return None
    from liger_kernel.transformers.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyLoss

    loss_fn = LigerFusedLinearCrossEntropyLoss(reduction="sum")

    def step() -> None:
        out = loss_fn(w, h, targets)
        out = out[0] if isinstance(out, tuple) else getattr(out, "loss", out)
        out.backward()

    return step


def speed_rows(device: str = "cuda") -> list[dict]:
    from posttrain.kernels.linear_logprobs import linear_logprobs
    from posttrain.kernels.moe import use_triton_experts

    rows, hidden, vocab, dtype, temperature = LOGPROB_SHAPES["zaya1-8b"][0]
    h, w, targets, grad = _logprob_inputs(rows, hidden, vocab, dtype, device)
    h.requires_grad_()
    w.requires_grad_()

    def triton_step() -> None:
        lp, _ = linear_logprobs(h, w, targets, temperature, with_entropy=True)
        (lp * grad).sum().backward()

    head = _torch_head(w)

    def torch_step() -> None:
        lp, _ = _torch_path_logprobs(head, h, targets, temperature)
        (lp * grad).sum().backward()

    steps = {"triton": triton_step, "torch": torch_step, "liger FLCE": _liger_step(h, w, targets)}
    case = f"logprobs fwd+bwd N={rows} V={vocab:,} {str(dtype)[6:]}"
    out = [{"part": "time", "case": case, "result": _timings(steps), "ok": True}]

    tokens, hidden, inter, experts, skip, dtype = MOE_SHAPES["zaya1-8b"][0]
    x, index, gate, skipped, grad = _moe_inputs(tokens, hidden, experts, skip, dtype, device)
    modules = {impl: _zaya_experts(hidden, inter, experts, dtype, device, impl) for impl in ("eager", "grouped_mm")}
    modules["triton"] = _zaya_experts(hidden, inter, experts, dtype, device)
    use_triton_experts(modules["triton"])
    steps = {name: (lambda m=m: _moe_grads(m, x, index, gate, skipped, grad)) for name, m in modules.items()}
    case = f"moe fwd+bwd T={tokens} E={experts} skip {skip:.0%} {str(dtype)[6:]}"
    return [*out, {"part": "time", "case": case, "result": _timings(steps), "ok": True}]


def _timings(steps: dict[str, Callable[[], None] | None]) -> str:
    parts = []
    for name, step in steps.items():
        if step is None:
            parts.append(f"{name}: not installed")
            continue
        try:
            ms, mib = _measure(step)
            parts.append(f"{name} {ms:.1f} ms / {mib:,.0f} MiB")
        except Exception as exc:  # a reference that cannot run here (a missing op, out of memory) is reported
            parts.append(f"{name}: {type(exc).__name__}")
        torch.cuda.empty_cache()
    return "; ".join(parts)


def print_table(rows: list[dict]) -> None:
    widths = [max(len(str(r[k])) for r in [*rows, {"part": "part", "case": "case", "result": "result"}])
              for k in ("part", "case", "result")]  # fmt: skip
    line = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
    print(line.format("part", "case", "result", "status"))
    print("-" * (sum(widths) + 2 * len(widths) + 6))
    for r in rows:
        print(line.format(r["part"], r["case"], r["result"], "ok" if r["ok"] else "FAIL"))


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["correctness", "speed", "learner"])
    parser.add_argument("--shapes", choices=sorted(LOGPROB_SHAPES), default=None)
    args, rest = parser.parse_known_args()
    if args.mode == "learner":
        import dp_learner  # bench/ is on sys.path when this file runs as a script

        dp_learner.main(rest)
        return 0
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        os.environ["TRITON_INTERPRET"] = "1"  # before any kernel module is imported
    if args.mode == "speed":
        if device != "cuda":
            print("error: speed needs a GPU; interpreter timings are meaningless", file=sys.stderr)
            return 2
        rows = speed_rows()
    else:
        rows = correctness_rows(args.shapes or ("zaya1-8b" if device == "cuda" else "small"), device)
    print_table(rows)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
