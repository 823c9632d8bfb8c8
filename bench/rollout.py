"""Rollout benchmarks: fleet throughput against plain transformers, and Markovian vs full-chain RSA memory.

    .venv/bin/python bench/rollout.py throughput [--runs 5 --batch 16 --new-tokens 32 --group 1]
    .venv/bin/python bench/rollout.py rsa-memory [--T 1 2 4 8]

`throughput` times the same batch (same model, prompts and lengths) three ways, interleaved run by run so
that machine load hits all of them alike: `model.generate` in this process, the fleet with one worker and
the fleet with two. It reports generated tokens/s (EOS-cut, the tokens a learner would train on) as the
median of the runs, and each as a ratio to in-process generate. `--group G` asks each of batch / G prompts G
times, as an RL group does (the fleet's engine then prefills each prompt once). The machine's load average
is printed at the start and the end.

`rsa-memory` runs Markovian RSA and full-chain RSA for each T in a fresh process (so peak RSS is that run's
own) and reports the longest sequence the engine held and the peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch


def prompts(tokenizer, count: int, group: int = 1) -> list[list[int]]:
    """`count` chat prompts: count / group distinct ones, each repeated `group` times in a row."""
    from posttrain.rollout.chat import encode_messages

    messages = [[{"role": "user", "content": f"What is {i // group}+{2 * (i // group)}?"}] for i in range(count)]
    return [encode_messages(tokenizer, m) for m in messages]


def in_process(model, tokenizer, batch: list[list[int]], new_tokens: int) -> int:
    """Plain transformers generate on a left-padded batch; returns generated tokens up to each EOS."""
    width = max(map(len, batch))
    ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(p)) + p for p in batch])
    mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(p) for p in batch])[:, None]).long()
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=True,
            top_k=0,
            max_new_tokens=new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    total = 0
    for row in out[:, width:].tolist():
        total += row.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in row else len(row)
    return total


def throughput(args: argparse.Namespace) -> None:
    from posttrain.models import load_model
    from posttrain.rollout.config import RayConfig, RolloutConfig
    from posttrain.rollout.fleet import RolloutFleet
    from posttrain.rollout.session import init_ray
    from posttrain.rollout.types import Request, SamplingParams

    torch.set_num_threads(args.threads)  # a worker gets int(rollout.cpus_per_worker) = 1 thread
    model, tokenizer = load_model("zaya-tiny", seed=0)
    model.eval()
    load_at_start = os.getloadavg()
    batch = prompts(tokenizer, args.batch, args.group)
    params = SamplingParams(max_new_tokens=args.new_tokens)
    requests = [Request(id=str(i), prompt_ids=tuple(p), params=params) for i, p in enumerate(batch)]
    init_ray(RayConfig(num_cpus=3))  # logical: both fleets (3 workers) stay up, only one generates at a time
    fleets = {
        workers: RolloutFleet(
            "zaya-tiny", RolloutConfig(num_workers=workers, batch_size=-(-args.batch // workers)), device="cpu"
        )
        for workers in (1, 2)
    }
    rates: dict[str, list[float]] = {"in-process generate": [], "fleet, 1 worker": [], "fleet, 2 workers": []}
    for _ in range(args.runs):
        start = time.perf_counter()
        tokens = in_process(model, tokenizer, batch, args.new_tokens)
        rates["in-process generate"].append(tokens / (time.perf_counter() - start))
        for workers, fleet in fleets.items():
            start = time.perf_counter()
            tokens = sum(len(r.completion_ids) for r in fleet.generate(requests))
            rates[f"fleet, {workers} worker{'s' * (workers > 1)}"].append(tokens / (time.perf_counter() - start))
    for fleet in fleets.values():
        fleet.shutdown()
    base = statistics.median(rates["in-process generate"])
    print(
        f"batch={args.batch} group={args.group} new_tokens={args.new_tokens} runs={args.runs} "
        f"torch_threads={torch.get_num_threads()} cpus={os.cpu_count()} "
        f"load_avg(1/5/15 min)={_load(load_at_start)} at start, {_load(os.getloadavg())} at end "
        f"python={platform.python_version()} torch={torch.__version__}"
    )
    print("| setup | tokens/s (median) | min..max | ratio to in-process |")
    print("|---|---:|---:|---:|")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.0f} | {min(values):.0f}..{max(values):.0f} | {median / base:.2f} |")


def _load(averages: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.1f}" for x in averages)


def rsa_child(T: int, full_chain: bool, args: argparse.Namespace) -> dict:
    """One RSA run in a fresh process; returns its longest context and peak RSS."""
    code = (
        "import json, resource, sys\n"
        "from posttrain.rollout.config import RSAConfig\n"
        "from posttrain.rollout.markovian_rsa import run_markovian_rsa\n"
        "from posttrain.rollout.types import SamplingParams\n"
        "from posttrain.rollout.worker import RolloutWorker\n"
        "T, full, N, C, beta, tau = json.loads(sys.argv[1])\n"
        "worker = RolloutWorker('bench', 'zaya-tiny', device='cpu')\n"
        "cfg = RSAConfig(N=N, C=C, T=T, beta=beta, tau=tau, full_chain=full)\n"
        "tokenizer = worker.engine.tokenizer\n"
        "run_markovian_rsa(['What is 12+34?'], worker.generate, tokenizer, cfg, SamplingParams(), seed=0)\n"
        "print(json.dumps({'context': worker.engine.max_context_seen,"
        " 'rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))\n"
    )
    spec = json.dumps([T, full_chain, args.N, args.C, args.beta, args.tau])
    done = subprocess.run([sys.executable, "-c", code, spec], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def rsa_memory(args: argparse.Namespace) -> None:
    print(
        f"N={args.N} C={args.C} beta={args.beta} tau={args.tau} model=zaya-tiny cpus={os.cpu_count()} "
        f"(each row a fresh process; RSS includes Python + torch + model)"
    )
    print("| T | Markovian longest context | Markovian peak RSS MB | full-chain longest context | full-chain RSS MB |")
    print("|---:|---:|---:|---:|---:|")
    for T in args.T:
        markov, full = rsa_child(T, False, args), rsa_child(T, True, args)
        print(
            f"| {T} | {markov['context']} | {markov['rss_mb']:.0f} | {full['context']} | {full['rss_mb']:.0f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="bench", required=True)
    speed = sub.add_parser("throughput")
    speed.add_argument("--runs", type=int, default=5)
    speed.add_argument("--batch", type=int, default=16)
    speed.add_argument("--new-tokens", type=int, default=32)
    speed.add_argument("--group", type=int, default=1, help="samples per distinct prompt (must divide --batch)")
    speed.add_argument("--threads", type=int, default=1, help="torch threads of the in-process baseline")
    memory = sub.add_parser("rsa-memory")
    memory.add_argument("--T", type=int, nargs="+", default=[1, 2, 4, 8])
    memory.add_argument("--N", type=int, default=16)
    memory.add_argument("--C", type=int, default=4)
    memory.add_argument("--beta", type=int, default=32)
    memory.add_argument("--tau", type=int, default=16)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.bench == "throughput":
        if args.group < 1 or args.batch % args.group:
            parser.error("--group must be >= 1 and divide --batch")
        throughput(args)
    else:
        rsa_memory(args)


if __name__ == "__main__":
    main()
