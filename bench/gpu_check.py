"""The GPU check's driver (bench/gpu_check.sh calls it): one table, a non-zero exit on any failure.

    bench/gpu_check.sh            # a GPU: ZAYA1-8B shapes, timings vs torch and Liger, RL steps of a ~100M ZAYA
    bench/gpu_check.sh --cpu      # no GPU: the same checks at small shapes in Triton's interpreter, RL on CPU

Parts, in order: kernel correctness against float64 oracles (bench/kernels.py); the kernels inside a whole
ZayaForCausalLM (log-probs and logits with kernels=triton equal kernels=torch); kernel time and peak
memory (GPU only); `posttrain run stage=rlve` for a few steps per installed rollout engine, as tokens/s.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# 104M parameters on a GPU (16 experts × 3 × 1024 × 512 = 25M per layer); 0.16M on CPU.
MODEL_DIMS = {
    "gpu": {"hidden_size": 512, "num_hidden_layers": 4, "moe_intermediate_size": 1024, "num_experts": 16,
            "head_dim": 64, "router_hidden_size": 128},
    "cpu": {"hidden_size": 64, "num_hidden_layers": 2, "moe_intermediate_size": 64, "num_experts": 4,
            "head_dim": 16, "router_hidden_size": 16},
}  # fmt: skip
RL_SHAPE = {  # steps, prompts per step, group size, new tokens
    "gpu": (4, 16, 8, 64),
    "cpu": (2, 4, 2, 8),
}


def build_model(path: Path, mode: str) -> int:
    """A randomly initialised ZAYA with the char tokenizer, saved as an HF directory; returns its size."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from posttrain.console import quiet_library_progress_bars
    from posttrain.models.tokenizer import build_char_tokenizer

    quiet_library_progress_bars()
    tokenizer = build_char_tokenizer()
    config = AutoConfig.for_model(
        "zaya",
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        num_attention_heads=8,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        **MODEL_DIMS[mode],
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return sum(p.numel() for p in model.parameters())


def model_rows(path: Path, device: str) -> list[dict]:
    """The kernels wired into a whole model: token_logprobs(kernels='triton') and the patched experts."""
    import torch

    from posttrain.kernels.moe import use_triton_experts
    from posttrain.models import load_model
    from posttrain.rl.logprobs import token_logprobs

    model, _ = load_model(str(path))
    model = model.to(device)
    gen = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(7, model.config.vocab_size, (4, 48), generator=gen).to(device)
    mask = torch.ones_like(ids)
    mask[1, 30:] = 0
    results = {}
    for kernels in ("torch", "triton"):
        restore = use_triton_experts(model) if kernels == "triton" else (lambda: None)
        logps, _ = token_logprobs(model, ids, mask, temperature=0.7, chunk_size=16, kernels=kernels)
        logps[:, 1:][mask[:, 1:].bool()].sum().backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        model.zero_grad(set_to_none=True)
        restore()
        results[kernels] = (logps.detach(), grads)
    delta = float((results["triton"][0] - results["torch"][0]).abs().max())
    rel = float((results["triton"][1] - results["torch"][1]).norm() / results["torch"][1].norm())
    result = f"max|Δlogp| {delta:.1e}, parameter grads rel {rel:.1e} (kernels=triton vs torch)"
    return [{"part": "model", "case": "ZAYA token_logprobs + experts, fp32", "result": result,
             "ok": delta <= 1e-4 and rel <= 1e-4}]  # fmt: skip


def rl_rows(path: Path, params: int, mode: str, run_root: Path) -> list[dict]:
    steps, prompts, group, new_tokens = RL_SHAPE[mode]
    engines = ["hf"] + (["vllm"] if mode == "gpu" and importlib.util.find_spec("vllm") else [])
    # (engine, learner precision): on a GPU the bf16-autocast learner (fp32 router and LM head) runs once too
    runs = [(engine, "fp32") for engine in engines] + ([("hf", "bf16")] if mode == "gpu" else [])
    rows = []
    for engine, precision in runs:
        name = engine if precision == "fp32" else f"{engine}-{precision}"
        case = (f"ZAYA {params / 1e6:.1f}M rlve, engine {engine}, learner {precision}, {steps} steps × "
                f"{prompts}×{group}, {new_tokens} new")  # fmt: skip
        args = [
            sys.executable, "-m", "posttrain.cli", "run", "stage=rlve", f"model.path={path}",
            f"run.root={run_root / name}", "run.overwrite=true", f"trainer.max_steps={steps}",
            f"trainer.save_every={steps}", f"rl.prompts_per_step={prompts}", f"rl.group_size={group}",
            f"rollout.max_new_tokens={new_tokens}", f"rollout.engine={engine}", f"rl.precision={precision}",
            "eval.num_samples=0",
            "rl.dynamic_sampling=false",  # a random model's all-zero groups would be dropped and never learned
        ]  # fmt: skip
        if mode == "gpu":
            args += ["device=cuda", "kernels=auto", "rollout.gpus_per_worker=1", "ray.num_gpus=1"]
        else:  # the interpreter would take minutes per step
            args += ["device=cpu", "kernels=torch", "ray.num_cpus=2"]
        env = dict(os.environ, CI="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        try:
            done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            rows.append({"part": "rl", "case": case, "result": "timed out after 300 s", "ok": False})
            continue
        metrics = run_root / name / "rlve" / "metrics.jsonl"
        if done.returncode != 0 or not metrics.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            rows.append({"part": "rl", "case": case, "result": f"exit {done.returncode}: {last}", "ok": False})
            continue
        rows.append({"part": "rl", "case": case, "result": throughput(metrics), "ok": True})
    return rows


def throughput(metrics: Path) -> str:
    """Completion tokens per second of whole RL steps (generate + verify + learn + sync), first step left out
    when there are more (it compiles kernels and warms caches)."""
    steps = [row for row in map(json.loads, metrics.read_text().splitlines()) if "time/step" in row]
    timed = steps[1:] if len(steps) > 1 else steps
    tokens = sum(row["generate_tokens_per_s"] * row["time/generate"] for row in timed)
    seconds = sum(row["time/step"] for row in timed)
    learn = sum(row["time/learn"] for row in timed) / len(timed)
    generate = tokens / max(sum(row["time/generate"] for row in timed), 1e-9)
    return f"{tokens / seconds:,.0f} tok/s per step (generate {generate:,.0f} tok/s, learn {learn:.2f} s/step)"


def load_bench_kernels():
    """bench/kernels.py under a name of its own: a top-level `kernels` module would shadow the `kernels`
    package transformers looks for."""
    spec = importlib.util.spec_from_file_location("bench_kernels", ROOT / "bench" / "kernels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="no GPU: the interpreter at small shapes, RL on CPU")
    parser.add_argument("--skip-rl", action="store_true", help="kernels only")
    args = parser.parse_args(argv)
    mode = "cpu" if args.cpu else "gpu"
    if mode == "cpu":
        os.environ["TRITON_INTERPRET"] = "1"  # before any kernel module is imported
    import torch

    bench_kernels = load_bench_kernels()
    if mode == "gpu" and not torch.cuda.is_available():
        message = "error: no GPU visible to torch; run with --cpu to check the kernels in Triton's interpreter"
        print(message, file=sys.stderr)
        return 2
    device = "cuda" if mode == "gpu" else "cpu"
    rows = bench_kernels.correctness_rows("zaya1-8b" if mode == "gpu" else "small", device)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        path = Path(tmp) / "model"
        params = build_model(path, mode)
        rows += model_rows(path, device)
        if mode == "gpu":
            rows += bench_kernels.speed_rows(device)
        else:
            rows.append({"part": "time", "case": "kernels vs torch / Liger", "result": "GPU only", "ok": True})
        if not args.skip_rl:
            rows += rl_rows(path, params, mode, Path(tmp) / "runs")
    bench_kernels.print_table(rows)
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
