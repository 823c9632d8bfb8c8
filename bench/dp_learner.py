"""Data-parallel learner step time: one process vs `rl.learner_workers` = 1 and 2 gloo replicas in Ray actors,
and 2 replicas with `rl.learner_sharding=fsdp2`.

    .venv/bin/python bench/dp_learner.py [--runs 5 --batch 32 --prompt 32 --completion 96 --workers 1 2]

Every setup takes the same zaya-tiny batch (AdamW, 2 minibatches, anchors from the batch) and the same seed;
each replica and the in-process learner run one torch thread. The time is the driver's wall clock around
`step()`: for the replicas it includes shipping the batch through Ray and the gradient all-reduces. Medians of
`--runs` steps after one warm-up step; the setups are interleaved run by run, so load on a shared machine hits
them alike. Prints one JSON line per setup.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_batch(args: argparse.Namespace):
    from posttrain.models import load_tokenizer
    from posttrain.rl.batch import TrainBatch

    vocab = len(load_tokenizer("zaya-tiny"))
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(5, vocab, (args.prompt,), generator=gen).tolist() for _ in range(args.batch)]
    completions = [torch.randint(5, vocab, (args.completion,), generator=gen).tolist() for _ in range(args.batch)]
    return TrainBatch.from_lists(
        prompts, completions, [[-3.0] * args.completion] * args.batch, [float(i % 2) for i in range(args.batch)],
        [i // 4 for i in range(args.batch)], pad_token_id=0, advantage="grpo",
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--completion", type=int, default=96)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from posttrain.config.schema import Config, ModelConfig
    from posttrain.rl.config import RLConfig
    from posttrain.rl.distributed import DistributedLearner
    from posttrain.rl.stage import build_local_learner, load_policy
    from posttrain.rollout.config import RayConfig
    from posttrain.rollout.session import init_ray, shutdown_ray

    cfg = Config(stage="rlve", device="cpu", model=ModelConfig(path="zaya-tiny"),
                 rl=RLConfig(optimizer="adamw", lr=1e-4, minibatches=2, router_balancing=True))  # fmt: skip
    cfg.trainer.max_steps = args.runs + 1
    batch = make_batch(args)
    plan = [(w, "none") for w in args.workers] + [(w, "fsdp2") for w in args.workers if w >= 2]
    init_ray(RayConfig(num_cpus=sum(w for w, _ in plan)))  # logical CPUs: every setup lives at once, steps in turn
    setups = {"in-process": build_local_learner(cfg)}
    for workers, sharding in plan:
        name = f"{workers} worker(s)" + (", fsdp2" if sharding == "fsdp2" else "")
        build = partial(build_local_learner, cfg)
        setups[name] = DistributedLearner(build, workers, model=load_policy(cfg), sharding=sharding)
    times: dict[str, list[float]] = {name: [] for name in setups}
    try:
        for run in range(args.runs + 1):
            for name, learner in setups.items():
                start = time.perf_counter()
                learner.step(batch)
                if run:
                    times[name].append(time.perf_counter() - start)
    finally:
        for learner in setups.values():
            learner.shutdown()
        shutdown_ray()
    base = statistics.median(times["in-process"])
    tokens = float(batch.attention_mask.sum())
    for name, values in times.items():
        median = statistics.median(values)
        print(json.dumps({"setup": name, "step_seconds": round(median, 3), "min": round(min(values), 3),
                          "max": round(max(values), 3), "tokens_per_s": round(tokens / median),
                          "speedup": round(base / median, 2)}))  # fmt: skip


if __name__ == "__main__":
    main()
