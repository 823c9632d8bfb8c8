"""Stage 1, SFT: TRL's SFTTrainer on chat data, loss on completion tokens only.

Data comes from `data.path` or is generated with oracle answers; every sample is fitted to
`data.max_seq_len` by answer-preserving trimming before training.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from posttrain.config import Config
from posttrain.errors import UserError
from posttrain.run_context import RunContext
from posttrain.stagekit import Stage

Messages = list[dict[str, str]]
PLOTS = {
    "loss": ["loss"],
    "learning_rate": ["learning_rate"],
    "router_load": ["router/max_load", "router/load_entropy"],  # ZAYA with trainer.router_balancing
}
RL_KEYS = {  # what an RL key means here
    "rl.lr": "trainer.lr",
    "rl.lr_schedule": "trainer.lr_scheduler",
    "rl.warmup_steps": "trainer.warmup_steps",
    "rl.weight_decay": "trainer.weight_decay",
    "rl.max_grad_norm": "trainer.max_grad_norm",
    "rl.grad_accum": "trainer.grad_accum",
    "rl.router_balancing": "trainer.router_balancing",
    "rl.router_balancing_lr": "trainer.router_balancing_lr",
    "problems.datasets": "data.path",
    "envs.names": "data.tasks",
}


@dataclass
class Prepared:
    train: list[Messages]
    heldout: dict[str, list[Messages]]  # per env of data.tasks (or "data": a slice of data.path)
    counts: dict[str, int]


def _aggregation(cfg: Config, tokenizer, count: int) -> tuple[list[Messages], dict[str, int]]:
    """`count` aggregation examples, fitted to data.max_seq_len; a budget that fits none is a config error."""
    from posttrain.data import from_envs
    from posttrain.data.aggregation import AggregationSpec
    from posttrain.data.trimming import fit_all, token_count

    spec = AggregationSpec(cfg.data.aggregation_candidates or cfg.rsa.C, cfg.rsa, tokenizer)
    examples = from_envs.generate_aggregation(cfg.data.tasks, cfg.data.difficulties, count, cfg.seed, spec)
    fitted, counts = fit_all(examples, tokenizer, cfg.data.max_seq_len)
    if not fitted:
        shortest = min(token_count(e, tokenizer) for e in examples)
        raise UserError(
            f"data.max_seq_len={cfg.data.max_seq_len} fits none of the aggregation examples (the shortest is "
            f"{shortest} tokens); raise it, or lower data.aggregation_candidates, or shorten rsa.aggregation_template"
        )
    return fitted, {f"aggregation_{k}": v for k, v in counts.items()}


def prepare(cfg: Config) -> Prepared:
    from posttrain.data import from_envs
    from posttrain.data.sources import load_messages
    from posttrain.data.trimming import fit_all
    from posttrain.hf_trainer import check_precision
    from posttrain.models import check_model_path, load_tokenizer

    check_precision(cfg)
    check_model_path(cfg.model.path)
    tokenizer = load_tokenizer(cfg.model.path)
    aggregation = round(cfg.data.aggregation_fraction * cfg.data.num_train)  # 0 with data.path (schema)
    if cfg.data.path is not None:
        samples = load_messages(cfg.data.path)
        random.Random(cfg.seed).shuffle(samples)
        # Hold out a slice for the end-of-stage accuracy only when the file is big enough to spare it.
        cut = cfg.eval.num_samples if len(samples) >= 4 * cfg.eval.num_samples else 0
        heldout, samples = {"data": samples[:cut]}, samples[cut:]
    else:
        plain = cfg.data.num_train - aggregation
        samples = from_envs.generate(cfg.data.tasks, cfg.data.difficulties, plain, cfg.seed)
        heldout = {
            task: from_envs.heldout(task, cfg.eval.difficulty, cfg.eval.num_samples, cfg.seed)
            for task in dict.fromkeys(cfg.data.tasks)
        }
    train, counts = fit_all(samples, tokenizer, cfg.data.max_seq_len)
    if aggregation:
        examples, aggregation_counts = _aggregation(cfg, tokenizer, aggregation)
        train += examples
        random.Random(cfg.seed).shuffle(train)
        counts |= aggregation_counts
    return Prepared(train, heldout, counts)


def _prompt_completion(sample: Messages) -> dict[str, Messages]:
    return {"prompt": sample[:-1], "completion": sample[-1:]}


def heldout_exact_match(model, tokenizer, heldout: list[Messages], cfg: Config) -> float:
    """Greedy exact match of the extracted answer against the reference turn's, on the held-out samples."""
    from posttrain.envs import Problem
    from posttrain.evaluation import EvalSet, generate_answers, score_set
    from posttrain.rl.scoring import ExactAnswerScorer
    from posttrain.rollout.engine import HFEngine

    if not heldout:
        return float("nan")
    problems = [
        Problem("heldout", i, 0, s[-2]["content"], s[-1]["content"], extra={"messages": s[:-1]})
        for i, s in enumerate(heldout)
    ]
    engine = HFEngine(model, tokenizer)
    answers = generate_answers(
        engine, problems, temperature=0.0, samples=1, max_new_tokens=cfg.eval.max_new_tokens,
        batch_size=cfg.eval.batch_size, seed=cfg.seed,
    )  # fmt: skip
    return score_set(EvalSet("heldout", problems, ExactAnswerScorer()), answers, k=1)["pass@1"]


def run(prepared: Prepared, ctx: RunContext) -> dict:
    from datasets import Dataset

    from posttrain.export import export_final
    from posttrain.hf_trainer import build_sft_trainer
    from posttrain.models import load_model
    from posttrain.models.lora import apply_lora
    from posttrain.plots import plot_metrics

    cfg = ctx.cfg
    model, tokenizer = load_model(cfg.model.path, seed=cfg.seed)
    model = apply_lora(model, cfg.model.lora, seed=cfg.seed)
    if ctx.resume_from is None:  # step 0 is already in the stream of a resumed run
        ctx.metrics.log(0, {f"data/{k}": v for k, v in prepared.counts.items()})
    dataset = Dataset.from_list([_prompt_completion(s) for s in prepared.train])
    trainer, callback = build_sft_trainer(ctx, model, tokenizer, dataset)
    trainer.train(resume_from_checkpoint=str(ctx.resume_from) if ctx.resume_from else None)
    final_model = export_final(trainer.model, tokenizer, ctx.final)
    by_task = {task: heldout_exact_match(final_model, tokenizer, rows, cfg) for task, rows in prepared.heldout.items()}
    counted = [(by_task[task], len(rows)) for task, rows in prepared.heldout.items() if rows]
    total = sum(n for _, n in counted)
    accuracy = sum(a * n for a, n in counted) / total if total else float("nan")
    plot_metrics(ctx.dir / "metrics.jsonl", ctx.plots, PLOTS)
    summary = {
        "stage": "sft",
        "steps": trainer.state.global_step,
        "heldout_exact_match": accuracy,
        "heldout_by_task": by_task,
        "heldout_samples": total,
        "data": prepared.counts,
        "train_runtime_s": callback.summary.get("train_runtime"),
        "final": str(ctx.final),
    }
    tasks = ", ".join(f"{task} {value:.1%}" for task, value in by_task.items()) if len(by_task) > 1 else ""
    detail = f" ({tasks})" if tasks else ""
    shown = f"{accuracy:.1%} on {total} samples{detail}" if total else "n/a (data.path too small to hold any out)"
    print(f"held-out exact match: {shown}; final model in {ctx.final}")
    return summary


class SFT(Stage):
    name = "sft"
    reads = ("model", "data", "trainer", "eval.difficulty", "eval.num_samples", "eval.max_new_tokens")
    # rsa.*: the shape of the aggregation examples (data.aggregation_fraction)
    reads += ("eval.batch_size", "rsa.C", "rsa.tau", "rsa.aggregation_template", "rsa.candidate_template")
    instead = RL_KEYS

    def prepare(self, cfg: Config) -> Prepared:
        return prepare(cfg)

    def run(self, prepared: Prepared, ctx: RunContext) -> dict:
        return run(prepared, ctx)
