"""RL step wall time: posttrain's RLLoop against TRL's GRPOTrainer, and our async loop against our sync loop.

    .venv/bin/python bench/rl_step.py [--model DIR|zaya-tiny] [--steps 8 --warmup 2 --runs 5]
                                      [--prompts 16 --group 8 --new-tokens 12 --difficulty 0]

    # today's setting: an SFT'd zaya-tiny, 16 prompts x 8, 12 new tokens (completions of ~4-12 tokens)
    .venv/bin/python bench/rl_step.py --model runs/sft/final
    # generation-heavy: untrained zaya-tiny (EOS comes at random), 128 new tokens: completions average ~70
    .venv/bin/python bench/rl_step.py --model zaya-tiny --new-tokens 128 --steps 5 --warmup 1

Every run builds, in this one process and from the same starting checkpoint, four trainers that are then
timed one after the other (so machine load hits all of them alike, run by run):

* `trl`: TRL `GRPOTrainer` (HF `generate` in-process, no vLLM, fp32, CPU), `loss_type="dapo"`, one optimizer
  step per generation batch of prompts x group samples, reward = `make_env("add").verify` in-process;
* `ours sync`: `posttrain.rl.loop.RLLoop` with one Ray rollout worker, the env process pool,
  `rl.max_staleness=0`, `rl.old_logprobs=behaviour`;
* `ours async`: the same with `rl.max_staleness=1` (generation of step t+1 overlaps learning of step t);
* `ours sync, recompute anchors`: `rl.old_logprobs=recompute`; with one optimizer step per batch the training
  forward's own detached log-probs are the anchors (as in TRL), so it runs no extra pass either.

Both sides use the same problems (env `add` at one fixed difficulty), group size, `max_new_tokens`,
temperature 1.0, top-k/top-p off, AdamW at lr 1e-4, clip 0.2/0.28, no KL, grad-norm clip 1.0, and the
loss TRL's `dapo` computes (PPO clip, token mean, group-normalised advantages): our TRL oracle test checks
that `rl.loss=ppo_clip rl.aggregation=token_mean` equals it. Dynamic sampling is off (its refills would do
extra work). TRL, with one generation per optimizer step, anchors the ratio on the forward it trains with
(no extra pass); `rl.old_logprobs=behaviour` is our equivalent (the worker's log-probs under the same
weights), so the like-for-like ratio is `ours sync` / `trl`.

A step's time is the wall time between consecutive step ends (generation, scoring, learning, weight sync,
logging: everything). The first `--warmup` steps of each run are dropped, and so is the last (async
prefetches nothing for it). The split: ours from the loop's own timers; TRL's from timers wrapped around its
model's `generate`, its reward call and its training step. One torch thread everywhere (OMP_NUM_THREADS=1
here; a rollout worker gets int(rollout.cpus_per_worker) = 1 thread). The machine's load average is printed
at the start and the end: on a shared machine it moves, so compare ratios within one run.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

ENV = "add"
LR, EPS_LOW, EPS_HIGH = 1e-4, 0.2, 0.28
RECOMPUTE = "ours sync, recompute anchors"
SPLIT = ("time/generate", "time/verify", "time/learn", "time/sync")


def problems(count: int, difficulty: int, offset: int) -> list:
    """Distinct `add` problems at one difficulty, never a held-out eval prompt."""
    from posttrain.data.from_envs import is_heldout
    from posttrain.envs import make_env

    env, out, seed = make_env(ENV), [], offset
    while len(out) < count:
        problem = env.generate(seed, difficulty)
        seed += 1
        if not is_heldout(problem.prompt):
            out.append(problem)
    return out


def verify_reward(completions: list, problem: list[str], **_: object) -> list[float]:
    """TRL reward function: the env's own verifier, like our EnvPool uses (here in-process)."""
    from posttrain.envs import Problem, make_env

    env = make_env(ENV)
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [env.verify(Problem.from_dict(json.loads(p)), t).reward for p, t in zip(problem, texts, strict=True)]


# --- TRL ---------------------------------------------------------------------------------------------
TRL_TIMED = {"time/generate": ("model", "generate"), "time/verify": ("trainer", "_calculate_rewards"),
             "prepare": ("trainer", "_prepare_inputs"), "train_step": ("trainer", "training_step")}  # fmt: skip


class TRLClock(TrainerCallback):
    """Step ends and logs of a GRPOTrainer, and where each step's time went: its generation call, its reward
    call, and its training step less the input preparation (generation, scoring, batching) inside it."""

    def __init__(self, trainer) -> None:
        self.steps: list[dict] = []
        self.logs: list[dict] = []
        self.spent = dict.fromkeys(TRL_TIMED, 0.0)
        owners = {"model": trainer.model, "trainer": trainer}  # TRL without vLLM calls the model's own generate
        for key, (owner, name) in TRL_TIMED.items():
            setattr(owners[owner], name, self._timed(key, getattr(owners[owner], name)))  # this instance only

    def _timed(self, key: str, call):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self.spent[key] += time.perf_counter() - start

        return timed

    def on_step_end(self, *_args, **_kwargs) -> None:
        spent = self.spent
        learn = spent["train_step"] - spent["prepare"]  # forward, loss and backward; the optimizer step is "rest"
        self.steps.append({"end": time.perf_counter(), "time/generate": spent["time/generate"],
                           "time/verify": spent["time/verify"], "time/learn": learn})  # fmt: skip
        self.spent = dict.fromkeys(TRL_TIMED, 0.0)

    def on_log(self, *_args, logs: dict | None = None, **_kwargs) -> None:
        self.logs.append(dict(logs or {}))


def run_trl(args: argparse.Namespace, run: int, out_dir: Path) -> list[dict]:
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from posttrain.models import load_model

    batch = args.prompts * args.group
    drawn = problems(args.prompts * args.steps, args.difficulty, offset=10_000 * run)
    dataset = Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": p.prompt}] for p in drawn],
            "problem": [json.dumps(p.to_dict()) for p in drawn],
        }
    )
    config = GRPOConfig(
        output_dir=str(out_dir),
        per_device_train_batch_size=batch,  # one optimizer step sees prompts x group samples
        gradient_accumulation_steps=1,
        generation_batch_size=batch,
        num_generations=args.group,
        max_completion_length=args.new_tokens,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        loss_type="dapo",
        beta=0.0,
        epsilon=EPS_LOW,
        epsilon_high=EPS_HIGH,
        scale_rewards="group",
        learning_rate=LR,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        gradient_checkpointing=False,  # TRL's default is on; our learner does not recompute activations either
        optim="adamw_torch",
        max_steps=args.steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        use_vllm=False,
        seed=run,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    model, tokenizer = load_model(args.model, seed=0)
    trainer = GRPOTrainer(
        model=model, processing_class=tokenizer, reward_funcs=verify_reward, args=config, train_dataset=dataset
    )
    clock = TRLClock(trainer)
    trainer.add_callback(clock)
    trainer.remove_callback(PrinterCallback)  # it prints every step's log dict
    start = time.perf_counter()
    trainer.train()
    for step, log in zip(clock.steps, [entry for entry in clock.logs if "reward" in entry], strict=True):
        step["reward/mean"], step["response_length"] = float(log["reward"]), float(log["completions/mean_length"])
    return _intervals(start, clock.steps, samples=batch)


# --- ours --------------------------------------------------------------------------------------------
def ours_overrides(args: argparse.Namespace, staleness: int, anchors: str, run_dir: Path) -> list[str]:
    return [
        f"model.path={args.model}",
        f"run.dir={run_dir}",
        "device=cpu",
        "logging.progress=false",
        f"envs.names=[{ENV}]",
        "curriculum.kind=fixed",
        f"curriculum.fixed_difficulty={args.difficulty}",
        f"trainer.max_steps={args.steps}",
        "trainer.save_every=1000000",
        f"rl.prompts_per_step={args.prompts}",
        f"rl.group_size={args.group}",
        "rl.loss=ppo_clip",
        "rl.advantage=grpo",
        "rl.aggregation=token_mean",
        "rl.optimizer=adamw",
        f"rl.lr={LR}",
        "rl.param_groups=[]",  # one AdamW group at TRL's lr, not the rlve stage's final-norm group
        "rl.router_balancing=false",  # TRL has none (and the rlve stage turns it off)
        f"rl.epsilon_low={EPS_LOW}",
        f"rl.epsilon_high={EPS_HIGH}",
        "rl.max_grad_norm=1.0",
        "rl.lr_schedule=constant",
        f"rl.old_logprobs={anchors}",
        "rl.dynamic_sampling=false",
        f"rl.max_staleness={staleness}",
        "rl.sync_every=1",
        "rollout.num_workers=1",
        f"rollout.max_new_tokens={args.new_tokens}",
        "rollout.temperature=1.0",
        "rollout.top_p=1.0",
        "rollout.top_k=0",
        f"rollout.batch_size={args.prompts * args.group}",
        f"seed={args.seed}",
    ]


def run_ours(args: argparse.Namespace, staleness: int, anchors: str, run_dir: Path, fleet, pool) -> list[dict]:
    from posttrain.checkpoint import CheckpointManager
    from posttrain.config import compose, to_object
    from posttrain.envs import make_curriculum
    from posttrain.metrics import MetricsLogger
    from posttrain.models import load_model
    from posttrain.rl.learner import Learner
    from posttrain.rl.loop import RLLoop, RLParts
    from posttrain.rl.scoring import EnvScorer
    from posttrain.rl.sources import CurriculumSource
    from posttrain.rl.stage import build_collector
    from posttrain.run_context import RunContext

    cfg = to_object(compose("rlve", ours_overrides(args, staleness, anchors, run_dir)))
    model, tokenizer = load_model(args.model, seed=cfg.seed)
    fleet.sync_weights(model.state_dict(), 0)  # one fleet serves every run: reset it to the start weights
    learner = Learner(model, cfg.rl, total_steps=cfg.trainer.max_steps, device="cpu", seed=cfg.seed)
    source = CurriculumSource(make_curriculum(cfg.curriculum, [ENV], seed=cfg.seed), pool)
    collector = build_collector(cfg, fleet, EnvScorer(pool), None)
    metrics = MetricsLogger(run_dir / "metrics.jsonl")
    ctx = RunContext(cfg, run_dir, CheckpointManager(run_dir / "checkpoints", keep=1), None, False, metrics)
    loop = RLLoop(ctx, RLParts(fleet, learner, source, collector, tokenizer))
    steps: list[dict] = []
    start = time.perf_counter()
    loop.run(on_step=lambda step, m: steps.append({"end": time.perf_counter(), **m}))
    metrics.close()
    return _intervals(start, steps, samples=None)


# --- reporting ---------------------------------------------------------------------------------------
def _intervals(start: float, steps: list[dict], samples: int | None) -> list[dict]:
    """Each step's wall time as the gap between consecutive step ends (the first from the run's start)."""
    out, previous = [], start
    for step in steps:
        record = {key: value for key, value in step.items() if isinstance(value, int | float)}
        record["wall"] = step["end"] - previous
        record["samples"] = samples if samples is not None else step.get("samples_trained", 0)
        previous = step["end"]
        out.append(record)
    return out


def _load(averages: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.1f}" for x in averages)


def median(records: list[dict], key: str) -> float:
    values = [r[key] for r in records if key in r]
    return statistics.median(values) if values else float("nan")


def report(results: dict[str, list[dict]], args: argparse.Namespace) -> None:
    print(
        f"\nmodel={args.model} env={ENV} difficulty={args.difficulty} prompts={args.prompts} group={args.group} "
        f"new_tokens={args.new_tokens} steps={args.steps} (first {args.warmup} of each run dropped) runs={args.runs} "
        f"torch_threads={torch.get_num_threads()} "
        f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} cpus={os.cpu_count()} "
        f"load_avg(1/5/15 min)={_load(args.load_at_start)} at start, {_load(os.getloadavg())} at end "
        f"python={platform.python_version()} torch={torch.__version__}"
    )
    base = median(results["trl"], "wall")
    print("| trainer | step s (median) | min..max | samples/s | ratio to TRL | reward | completion tokens |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, records in results.items():
        wall, walls = median(records, "wall"), [r["wall"] for r in records]
        rate = statistics.median([r["samples"] / r["wall"] for r in records])
        print(
            f"| {name} | {wall:.2f} | {min(walls):.2f}..{max(walls):.2f} | {rate:.0f} | {wall / base:.2f} "
            f"| {median(records, 'reward/mean'):.2f} | {median(records, 'response_length'):.1f} |"
        )
    print("\nmedian seconds per step (async: generation overlaps learning, so the parts do not add up)")
    print("| trainer | generate | verify | learn | sync | rest |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, records in results.items():
        parts = [median(records, key) for key in SPLIT]
        rest = median(records, "wall") - sum(p for p in parts if p == p)
        cells = " | ".join("n/a" if p != p else f"{p:.2f}" for p in parts)
        print(f"| {name} | {cells} | {rest:.2f} |" if name != "ours async" else f"| {name} | {cells} | |")
    sync, lag = results["ours sync"], results["ours async"]
    dropped = sum(r.get("stale_dropped", 0) for r in lag)
    # with a free core per side, an overlapped step costs max(generate + verify, learn) plus the weight load
    bound = median(sync, "wall") / (
        max(median(sync, "time/generate") + median(sync, "time/verify"), median(sync, "time/learn"))
        + median(sync, "time/sync")
        + median(sync, "wall")
        - sum(median(sync, key) for key in SPLIT)
    )
    print(
        f"\nasync/sync throughput: {median(sync, 'wall') / median(lag, 'wall'):.2f}x measured, "
        f"{bound:.2f}x if generation and learning had a core each; stale samples dropped: {dropped:g}"
    )
    print("TRL: 'learn' is its training step less the input preparation; its optimizer step is in 'rest'.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="zaya-tiny", help="preset or HF dir (an SFT'd zaya-tiny is realistic)")
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per run, warm-up included")
    parser.add_argument("--warmup", type=int, default=2, help="steps of each run left out of the medians")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=16, help="rl.prompts_per_step of the rlve stage")
    parser.add_argument("--group", type=int, default=8, help="rl.group_size of the rlve stage")
    parser.add_argument("--new-tokens", type=int, default=12)
    parser.add_argument("--difficulty", type=int, default=0, help="the rlve curriculum starts at 0")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.steps < args.warmup + 2:
        parser.error("--steps must be at least --warmup + 2 (the last step of each run is dropped too)")
    torch.set_num_threads(1)
    args.load_at_start = os.getloadavg()

    from posttrain.config import compose, to_object
    from posttrain.console import quiet_library_progress_bars
    from posttrain.envs import EnvPool
    from posttrain.rollout.fleet import RolloutFleet
    from posttrain.rollout.session import init_ray, shutdown_ray

    quiet_library_progress_bars()
    cfg = to_object(compose("rlve", ours_overrides(args, 0, "behaviour", Path(tempfile.gettempdir()) / "unused")))
    init_ray(cfg.ray)
    # name -> (rl.max_staleness, rl.old_logprobs) for ours
    trainers = {"ours sync": (0, "behaviour"), "ours async": (1, "behaviour"), RECOMPUTE: (0, "recompute")}
    results: dict[str, list[dict]] = {"trl": [], **{name: [] for name in trainers}}
    try:
        with (
            tempfile.TemporaryDirectory(prefix="rl_step_") as tmp,
            EnvPool(cfg.envs, warm=[ENV]) as pool,
            RolloutFleet(args.model, cfg.rollout, cfg.ray, seed=cfg.seed, device="cpu") as fleet,
        ):
            for run in range(args.runs):
                for name in results:
                    run_dir = Path(tmp) / f"{name.replace(' ', '_')}-{run}"
                    if name == "trl":
                        records = run_trl(args, run, run_dir)
                    else:
                        records = run_ours(args, *trainers[name], run_dir, fleet, pool)
                    results[name] += records[args.warmup : -1]  # the last step of async prefetches nothing
                    print(f"run {run} {name}: " + " ".join(f"{r['wall']:.2f}" for r in records), flush=True)
    finally:
        shutdown_ray()
    report(results, args)


if __name__ == "__main__":
    main()
