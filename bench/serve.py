"""`posttrain serve` against `transformers serve` on the same tiny model: requests/s and generated tokens/s.

    .venv/bin/python bench/serve.py [--runs 3 --clients 1 8 32 --requests 32 --max-tokens 32 --threads 1]
    .venv/bin/python bench/serve.py --preset llama-tiny --continuous-batching   # transformers' paged-attention mode

The preset (zaya-tiny by default, seed 0) is saved with `save_pretrained` to a temporary directory and
both servers load it from there, offline. Each run sends `--requests` chat completions (one short
question each, sampled at temperature 1, at most `--max-tokens` new tokens) from `--clients` concurrent
clients to each server in turn, alternating which goes first, so that machine load hits both alike.
Generated tokens are what each server reports in `usage.completion_tokens`. The table gives the median
over runs and our ratio to `transformers serve`. Both servers run with `--threads` torch threads.
`--continuous-batching` starts `transformers serve` in its continuous-batching mode, which does not run
ZAYA's hybrid layers (use `--preset llama-tiny` with it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

READY_TIMEOUT_S = 600


def save_model(preset: str, folder: Path) -> None:
    from posttrain.models import load_model

    model, tokenizer = load_model(preset, seed=0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def free_port() -> int:
    """For `transformers serve`, which needs a number up front (ours binds port 0 and prints the port)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def env(threads: int) -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def start_ours(model_dir: Path, threads: int, log: Path) -> tuple[subprocess.Popen, str, str]:
    out = log.with_suffix(".out")
    command = [sys.executable, "-m", "posttrain.cli", "serve", f"model.path={model_dir}", "serve.port=0",
               "serve.model_name=tiny", "serve.max_batch_size=32"]  # fmt: skip
    with out.open("w") as stdout, log.open("w") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env(threads), start_new_session=True)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        found = re.search(r"on (http://\S+)/v1", out.read_text())
        if found:
            return process, found.group(1), "tiny"
        if process.poll() is not None:
            raise RuntimeError(f"posttrain serve exited:\n{log.read_text()}")
        time.sleep(0.2)
    raise RuntimeError("posttrain serve did not start")


def start_transformers(
    model_dir: Path, threads: int, log: Path, continuous_batching: bool
) -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    cli = "from transformers.cli.transformers import main; main()"  # its console script, from this interpreter
    command = [sys.executable, "-c", cli, "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
               "--device", "cpu", "--dtype", "float32", "--log-level", "warning"]  # fmt: skip
    if continuous_batching:
        command.append("--continuous-batching")
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=output, env=env(threads), start_new_session=True)
    root = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"transformers serve exited:\n{log.read_text()}")
        try:
            if httpx2.get(f"{root}/health", timeout=5).status_code == 200:
                return process, root, str(model_dir)
        except httpx2.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError("transformers serve did not start")


async def load(root: str, model: str, clients: int, requests: int, max_tokens: int) -> tuple[float, int]:
    """(wall seconds, generated tokens) for `requests` chat completions, `clients` at a time."""
    gate = asyncio.Semaphore(clients)
    limits = httpx2.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx2.AsyncClient(timeout=600, limits=limits) as client:

        async def one(i: int) -> int:
            body = {"model": model, "messages": [{"role": "user", "content": f"What is {i}+{3 * i}?"}],
                    "max_tokens": max_tokens, "temperature": 1.0}  # fmt: skip
            async with gate:
                response = await client.post(f"{root}/v1/chat/completions", json=body)
            response.raise_for_status()
            return int(response.json()["usage"]["completion_tokens"])

        start = time.perf_counter()
        tokens = await asyncio.gather(*(one(i) for i in range(requests)))
        return time.perf_counter() - start, sum(tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=32, help="requests per (server, clients) cell and run")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--preset", default="zaya-tiny")
    parser.add_argument("--continuous-batching", action="store_true", help="transformers serve's paged-attention mode")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        folder = Path(tmp)
        save_model(args.preset, folder / "model")
        servers = {}
        results: dict[tuple[str, int], list[tuple[float, float]]] = {}
        try:
            servers["posttrain serve"] = start_ours(folder / "model", args.threads, folder / "ours.log")
            servers["transformers serve"] = start_transformers(
                folder / "model", args.threads, folder / "theirs.log", args.continuous_batching
            )
            for _, root, model in servers.values():  # warm-up: first-request costs stay out of the timings
                asyncio.run(load(root, model, 1, 2, args.max_tokens))
            for run in range(args.runs):
                for clients in args.clients:
                    order = list(servers) if run % 2 == 0 else list(reversed(servers))
                    for name in order:
                        _, root, model = servers[name]
                        wall, tokens = asyncio.run(load(root, model, clients, args.requests, args.max_tokens))
                        results.setdefault((name, clients), []).append((args.requests / wall, tokens / wall))
                        print(f"run {run + 1} clients {clients:>2} {name:<18} {args.requests / wall:7.2f} req/s "
                              f"{tokens / wall:8.1f} tok/s", file=sys.stderr, flush=True)  # fmt: skip
        finally:
            for process, _, _ in servers.values():
                process.terminate()
                process.wait(timeout=120)

    def median(name: str, clients: int, column: int) -> float:
        return statistics.median(cell[column] for cell in results[(name, clients)])

    baseline = " (continuous batching)" if args.continuous_batching else ""
    print(f"\n{args.preset}, transformers serve{baseline}, {args.requests} chat requests per cell, "
          f"max_tokens={args.max_tokens}, temperature 1, {args.threads} torch thread(s) per server, "
          f"median of {args.runs} runs; Python {platform.python_version()}, {os.cpu_count()} CPUs\n")  # fmt: skip
    print("| clients | posttrain req/s | transformers req/s | ratio | posttrain tok/s | transformers tok/s | ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for clients in args.clients:
        ours_r, theirs_r = median("posttrain serve", clients, 0), median("transformers serve", clients, 0)
        ours_t, theirs_t = median("posttrain serve", clients, 1), median("transformers serve", clients, 1)
        print(f"| {clients} | {ours_r:.2f} | {theirs_r:.2f} | {ours_r / theirs_r:.2f} | {ours_t:.0f} | {theirs_t:.0f} "
              f"| {ours_t / theirs_t:.2f} |")  # fmt: skip
    print("\n" + json.dumps({f"{name}@{clients}": cells for (name, clients), cells in results.items()}))


if __name__ == "__main__":
    main()
