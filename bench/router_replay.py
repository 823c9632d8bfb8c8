"""Router replay under staleness: how far the learner's log-probs are from the behaviour log-probs, with and without
replaying the rollout's ZAYA routing, when the learner is k updates ahead of the weights that drew the samples.

    .venv/bin/python bench/router_replay.py --model runs/sft/final [--staleness 0 1 2 --lr 1e-4 --repeats 3]
                                            [--router-scale 300]

Per repeat: an in-process fleet (the `hf` engine, which records routing while it decodes) draws a batch with
the starting weights (policy version 0); the learner (the rlve stage's settings, or `--lr` on every parameter)
then trains on fresh batches, and after each of its updates the stale batch is scored by the learner twice,
with `rl.router_replay` on and off. `--router-scale s` multiplies every router's output projection by s first
(fleet and learner alike): routing that depends more sharply on the token, so that updates flip it more
often (zaya-tiny's own routing barely moves). Reported per staleness k, over every completion token of every
repeat:

* mean |Δ|: mean |log π_learner − log μ_behaviour|;
* kl_behaviour: the learner's own metric, k3(μ, π) averaged over completion tokens;
* routing differs: the share of (completion token, layer) pairs whose live routing (a plain forward of the
  learner's current weights) is not the rollout's recorded one; replay removes exactly these;
* mean |Δ| on the rows where some recorded routing differs (where replay can change anything).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import copy
import platform
from collections import defaultdict

import torch

ENV = "add"


def overrides(args: argparse.Namespace) -> list[str]:
    out = [
        f"model.path={args.model}",
        "device=cpu",
        f"envs.names=[{ENV}]",
        "curriculum.kind=fixed",
        "curriculum.fixed_difficulty=0",
        f"rl.prompts_per_step={args.prompts}",
        f"rl.group_size={args.group}",
        f"rollout.max_new_tokens={args.new_tokens}",
        "rollout.backend=local",
        f"rollout.batch_size={args.prompts * args.group}",
    ]
    if args.lr is not None:  # one AdamW group at this lr instead of the rlve stage's groups
        out += [f"rl.lr={args.lr}", "rl.param_groups=[]"]
    return out


def gaps(learner, batch, replay: bool) -> tuple[torch.Tensor, float]:
    """(|Δ| per position, 0 off the completion, [B, L]; kl_behaviour) of the learner's current weights."""
    from posttrain.rl.losses import kl_estimate, masked_mean

    learner.cfg.router_replay = replay
    prepared = learner.prepare(batch)
    with torch.no_grad():
        logps, _ = learner._logprobs(learner.model, prepared)
    kl = masked_mean(kl_estimate(prepared.behaviour_logprobs, logps, "k3"), prepared.completion_mask)
    return (logps - prepared.behaviour_logprobs).abs() * prepared.completion_mask, float(kl)


def routing_flips(model, batch) -> torch.Tensor:
    """[B, L, layers] bool: recorded routing that the current weights route elsewhere."""
    from posttrain.rl.router_replay import record_routing

    with torch.no_grad(), record_routing(model, tuple(batch.input_ids.shape)) as live:
        model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    return (batch.routing >= 0) & (live != batch.routing)


def run(args: argparse.Namespace, repeat: int, pool, results: dict) -> None:
    from posttrain.config import compose, to_object
    from posttrain.envs import make_curriculum
    from posttrain.models import load_model
    from posttrain.models.router_balancing import find_routers
    from posttrain.rl.learner import Learner
    from posttrain.rl.loop import RLLoop, RLParts
    from posttrain.rl.scoring import EnvScorer
    from posttrain.rl.sources import CurriculumSource
    from posttrain.rl.stage import build_collector
    from posttrain.rollout.backend import LocalFleet

    cfg = to_object(compose("rlve", [*overrides(args), f"seed={repeat}"]))
    model, _ = load_model(args.model, seed=cfg.seed)
    for router in find_routers(model):
        router.router_mlp.out_proj.weight.data *= args.router_scale
    fleet = LocalFleet(args.model, cfg.rollout, seed=cfg.seed, device="cpu")
    fleet.sync_weights(model.state_dict(), 0)
    learner = Learner(copy.deepcopy(model), cfg.rl, total_steps=max(args.staleness) + 1, device="cpu", seed=repeat)
    source = CurriculumSource(make_curriculum(cfg.curriculum, [ENV], seed=cfg.seed), pool)
    collector = build_collector(cfg, fleet, EnvScorer(pool), None)
    ctx = type("Ctx", (), {"cfg": cfg})()
    loop = RLLoop(ctx, RLParts(fleet, learner, source, collector, fleet.tokenizer))
    stale = loop.batch(collector.collect(source.draw(args.prompts), step=0, attempt=0)[0])
    for step in range(max(args.staleness) + 1):
        if step in args.staleness:
            flips = routing_flips(learner.model, stale)
            results[step, "flips"].append((int(flips.sum()), int((stale.routing >= 0).sum())))
            flipped_rows = flips.flatten(1).any(1)
            mask = stale.completion_mask > 0
            for replay in (True, False):
                delta, kl = gaps(learner, stale, replay)
                results[step, replay].append((delta[mask], kl, delta[flipped_rows][mask[flipped_rows]]))
        learner.cfg.router_replay = True
        learner.step(loop.batch(collector.collect(source.draw(args.prompts), step=step + 1, attempt=0)[0], step + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="zaya-tiny", help="preset or HF dir (an SFT'd zaya-tiny is realistic)")
    parser.add_argument("--staleness", type=int, nargs="+", default=[0, 1, 2], help="updates the learner is ahead")
    parser.add_argument("--lr", type=float, default=None, help="AdamW lr on every parameter (default: rlve's groups)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--router-scale", type=float, default=1.0, help="multiply the routers' output projections")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=12)
    args = parser.parse_args()
    if min(args.staleness) < 0:
        parser.error("--staleness values must be >= 0")
    torch.set_num_threads(1)

    from posttrain.config import compose, to_object
    from posttrain.console import quiet_library_progress_bars
    from posttrain.envs import EnvPool

    quiet_library_progress_bars()
    cfg = to_object(compose("rlve", overrides(args)))
    results: dict = defaultdict(list)
    with EnvPool(cfg.envs, warm=[ENV]) as pool:
        for repeat in range(args.repeats):
            run(args, repeat, pool, results)
    lr = f"{args.lr:g} on every parameter" if args.lr is not None else "the rlve stage's (1e-5, final norm 5e-2)"
    print(
        f"model={args.model} prompts={args.prompts} group={args.group} new_tokens={args.new_tokens} "
        f"repeats={args.repeats} router_scale={args.router_scale:g} lr={lr} optimizer={cfg.rl.optimizer} "
        f"loss={cfg.rl.loss} "
        f"load_avg={'/'.join(f'{x:.1f}' for x in os.getloadavg())} python={platform.python_version()} "
        f"torch={torch.__version__}"
    )
    print(
        "| learner ahead by | routing differs | replay | mean abs Δ log-prob | max abs Δ | kl_behaviour "
        "| mean abs Δ, rows with a routing change |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|")
    for k in sorted(args.staleness):
        flips = sum(f for f, _ in results[k, "flips"]) / max(sum(p for _, p in results[k, "flips"]), 1)
        for replay in (True, False):
            deltas = torch.cat([d for d, _, _ in results[k, replay]])
            kl = sum(v for _, v, _ in results[k, replay]) / len(results[k, replay])
            changed = torch.cat([c for _, _, c in results[k, replay]])
            on_changed = f"{float(changed.mean()):.2e} ({len(changed)} tokens)" if len(changed) else "none"
            print(
                f"| {k} | {100 * flips:.2f}% | {'on' if replay else 'off'} | {float(deltas.mean()):.2e} "
                f"| {float(deltas.max()):.2e} | {kl:.2e} | {on_changed} |"
            )


if __name__ == "__main__":
    main()
