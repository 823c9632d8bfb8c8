"""Weight-sync time, object store vs collective broadcast (gloo), as the number of rollout workers grows.

    .venv/bin/python bench/weight_sync.py [--workers 1 2 4 --runs 5 --hidden 512 --layers 4 --experts 4]

A randomly initialised ZAYA (about 30M parameters at the defaults, 120 MB in fp32) is written to a temporary
HF directory; for each worker count and backend a Ray fleet of that many CPU workers loads it, takes one
warm-up sync (the collective forms its group there), then `--runs` timed `sync_weights` calls, each with a new
version of the weights. The time is the driver's wall clock until every worker serves the new version (for the
object store: `ray.put` of the CPU tensors and every worker's load; for the collective: the broadcast and every
worker's load). Prints one JSON line per (backend, workers) with the median, and the bandwidth it implies:
bytes delivered to all workers per second, and the time one sync of ZAYA1-8B's 16.8 GB (bf16) would take at
that bandwidth (a linear extrapolation; see docs/rollout.md for what it does and does not predict).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ZAYA1_8B_BYTES = 16.8e9


def build_model(directory: Path, args: argparse.Namespace) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    from posttrain.models.tokenizer import build_char_tokenizer

    tokenizer = build_char_tokenizer()
    config = AutoConfig.for_model(
        "zaya", vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, hidden_size=args.hidden, num_hidden_layers=args.layers,
        moe_intermediate_size=2 * args.hidden, num_experts=args.experts, num_attention_heads=8, num_key_value_heads=2,
        head_dim=args.hidden // 8, router_hidden_size=args.hidden // 4, max_position_embeddings=512,
    )  # fmt: skip
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def time_syncs(path: Path, backend: str, workers: int, runs: int) -> tuple[list[float], int]:
    from posttrain.models import load_model
    from posttrain.rollout.config import RolloutConfig
    from posttrain.rollout.fleet import RolloutFleet
    from posttrain.rollout.weight_sync import Manifest

    state = load_model(str(path))[0].state_dict()
    cfg = RolloutConfig(num_workers=workers, weight_sync=backend)
    times = []
    with RolloutFleet(str(path), cfg, device="cpu") as fleet:
        for version in range(runs + 1):
            new = {name: t + 1e-3 if t.is_floating_point() else t for name, t in state.items()}
            start = time.perf_counter()
            fleet.sync_weights(new, version=version + 1)
            if version:
                times.append(time.perf_counter() - start)
    return times, Manifest.of(state).nbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--experts", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from posttrain.rollout.config import RayConfig
    from posttrain.rollout.session import init_ray, shutdown_ray

    init_ray(RayConfig(num_cpus=max(args.workers)))  # logical CPUs: one per worker, whatever the machine has
    try:
        with tempfile.TemporaryDirectory(prefix="bench_weight_sync_") as tmp:
            build_model(Path(tmp), args)
            for workers in args.workers:
                for backend in ("object_store", "collective"):
                    times, nbytes = time_syncs(Path(tmp), backend, workers, args.runs)
                    median = statistics.median(times)
                    bandwidth = nbytes * workers / median
                    print(json.dumps({
                        "backend": backend, "workers": workers, "MB": round(nbytes / 1e6, 1),
                        "sync_seconds": round(median, 3), "min": round(min(times), 3), "max": round(max(times), 3),
                        "delivered_MB_per_s": round(bandwidth / 1e6), "zaya1_8b_seconds": round(
                            ZAYA1_8B_BYTES * workers / bandwidth, 1),
                    }), flush=True)  # fmt: skip
    finally:
        shutdown_ray()


if __name__ == "__main__":
    main()
