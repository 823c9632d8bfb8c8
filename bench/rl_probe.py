r"""Does an RL update generalise? The learner on one env, in process, scored on prompts it never trains on.

    .venv/bin/python bench/rl_probe.py runs/sft/final --env add --difficulty 1 --steps 40 --lr 1e-4
    .venv/bin/python bench/rl_probe.py runs/sft/final --env sort --fixed      # the same 32 prompts every step
    .venv/bin/python bench/rl_probe.py runs/sft/final --set optimizer=muon --set advantage=grpo
    .venv/bin/python bench/rl_probe.py runs/sft/final --grad-norms             # which parameters the gradient hits
    .venv/bin/python bench/rl_probe.py runs/sft/final --lr 1e-5 --param-group '^model\.norm\.weight$=5e-2'

Each step samples `--group` completions for `--prompts` problems (fresh ones each step, or one fixed set
with `--fixed`), scores them with the env, drops groups without reward spread and takes one
`Learner.step`. Every `--every` steps it prints the training pass rate and, on `--eval` other problems of
the same env and difficulty, greedy accuracy and pass@1 at the sampling temperature (4 samples each).
No Ray, no curriculum: what is left is the learner and its inputs, which is the point. docs/rl.md ("What
RL does to zaya-tiny") reports what it found.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from posttrain.data.from_envs import heldout_problems, is_heldout
from posttrain.envs import make_env
from posttrain.models import load_model
from posttrain.rl.batch import TrainBatch
from posttrain.rl.config import ParamGroup, RLConfig
from posttrain.rl.filters import informative_groups
from posttrain.rl.learner import Learner
from posttrain.rollout.engine import HFEngine
from posttrain.rollout.types import SamplingParams


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="checkpoint directory or preset")
    parser.add_argument("--env", default="add")
    parser.add_argument("--difficulty", type=int, default=1)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--eval", type=int, default=200, help="held-out problems scored every --every steps")
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--fixed", action="store_true", help="train on one fixed prompt set instead of fresh ones")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other rl.* field")
    parser.add_argument(
        "--param-group", action="append", default=[], metavar="REGEX=LR", help="an rl.param_groups entry"
    )
    parser.add_argument("--grad-norms", action="store_true", help="print per-parameter gradient norms of one batch")
    return parser.parse_args()


def rl_config(args: argparse.Namespace) -> RLConfig:
    fields = {"optimizer": "adamw", "lr": args.lr, "temperature": args.temperature, "router_balancing": False}
    defaults = RLConfig()
    for item in args.set:
        key, value = item.split("=", 1)
        kind = type(getattr(defaults, key))
        fields[key] = value.lower() == "true" if kind is bool else kind(value)
    groups = [item.rsplit("=", 1) for item in args.param_group]
    return RLConfig(**fields, param_groups=[ParamGroup(match, float(lr)) for match, lr in groups])


class Probe:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        model, self.tokenizer = load_model(args.model, seed=0)
        self.env = make_env(args.env)
        self.cfg = rl_config(args)
        self.learner = Learner(model, self.cfg, total_steps=args.steps, device="cpu")
        self.engine = HFEngine(self.learner.model, self.tokenizer, device="cpu")
        # the prompts `posttrain eval` scores; training below skips them, as the RL loop does
        self.heldout = [p for p, _ in heldout_problems(args.env, args.difficulty, args.eval, seed=0)]

    def encode(self, problems: list) -> list[list[int]]:
        chats = [[{"role": "user", "content": p.prompt}] for p in problems]
        texts = [self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
        return [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]

    def sample(self, problems: list, count: int, temperature: float, seed: int) -> tuple[list, list, list[float]]:
        ids = [p for p in self.encode(problems) for _ in range(count)]
        outs = self.engine.generate(ids, SamplingParams(self.args.max_new_tokens, temperature, seed=seed))
        owners = [p for p in problems for _ in range(count)]
        return ids, outs, [float(self.env.verify(p, o.text).correct) for p, o in zip(owners, outs, strict=True)]

    def heldout_scores(self) -> tuple[float, float]:
        greedy = statistics.mean(self.sample(self.heldout, 1, 0.0, 0)[2])
        sampled = statistics.mean(self.sample(self.heldout, 4, self.args.temperature, 99)[2])
        return greedy, sampled

    def batch(self, step: int) -> TrainBatch | None:
        args = self.args
        problems, seed = [], 0 if args.fixed else (step + 1) * 100_000
        while len(problems) < args.prompts:
            problem = self.env.generate(seed, args.difficulty)
            seed += 1
            if not is_heldout(problem.prompt):
                problems.append(problem)
        ids, outs, rewards = self.sample(problems, args.group, args.temperature, step)
        groups = [i // args.group for i in range(len(ids))]
        keep = informative_groups(rewards, groups)
        self.last_reward = statistics.mean(rewards)
        if not keep:
            return None
        return TrainBatch.from_lists(
            [ids[i] for i in keep],
            [outs[i].token_ids for i in keep],
            [outs[i].logprobs for i in keep],
            [rewards[i] for i in keep],
            [groups[i] for i in keep],
            pad_token_id=self.tokenizer.pad_token_id,
            advantage=self.cfg.advantage,
        )

    def grad_norms(self) -> None:
        batch = self.batch(0)
        learner = self.learner
        learner._fill_anchors(batch)
        learner.model.train()
        width = int(batch.completion_mask.sum(-1).max())
        loss, _ = learner._micro_loss(batch, batch.size, float(batch.completion_mask.sum()), width)
        loss.backward()
        norms = sorted(
            ((p.grad.norm().item(), name) for name, p in learner.model.named_parameters() if p.grad is not None),
            reverse=True,
        )
        print(f"total gradient norm {sum(n * n for n, _ in norms) ** 0.5:.2f}; largest:")
        for norm, name in norms[:10]:
            print(f"  {norm:8.3f}  {name}")

    def run(self) -> None:
        greedy, sampled = self.heldout_scores()
        print(f"step 0: held-out greedy {greedy:.3f}, pass@1 {sampled:.3f}", flush=True)
        for step in range(self.args.steps):
            batch = self.batch(step)
            metrics = self.learner.step(batch) if batch is not None else {}
            if (step + 1) % self.args.every == 0:
                greedy, sampled = self.heldout_scores()
                print(
                    f"step {step + 1}: train pass rate {self.last_reward:.3f}, held-out greedy {greedy:.3f}, "
                    f"pass@1 {sampled:.3f}, entropy {metrics.get('entropy', float('nan')):.3f}",
                    flush=True,
                )


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    probe = Probe(args)
    probe.grad_norms() if args.grad_norms else probe.run()


if __name__ == "__main__":
    main()
