"""Stage 1, SFT: TRL's SFTTrainer on chat data, loss on completion tokens only.

Data comes from `data.path` or is generated with oracle answers; every sample is fitted to
`data.max_seq_len` by answer-preserving trimming before training.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from datasets import Dataset

from posttrain.config import Config
from posttrain.data import from_envs
from posttrain.data.sources import load_messages
from posttrain.data.trimming import fit_all
from posttrain.evaluation import exact_match
from posttrain.export import export_final
from posttrain.hf_trainer import build_sft_trainer, check_precision
from posttrain.models import check_model_path, load_model, load_tokenizer
from posttrain.models.lora import apply_lora
from posttrain.plots import plot_metrics
from posttrain.runner import RunContext

Messages = list[dict[str, str]]
PLOTS = {
    "loss": ["loss"],
    "learning_rate": ["learning_rate"],
    "router_load": ["router/max_load", "router/load_entropy"],  # ZAYA with trainer.router_balancing
}


@dataclass
class Prepared:
    train: list[Messages]
    heldout: list[Messages]
    counts: dict[str, int]


def prepare(cfg: Config) -> Prepared:
    check_precision(cfg)
    check_model_path(cfg.model.path)
    tokenizer = load_tokenizer(cfg.model.path)
    if cfg.data.path is not None:
        samples = load_messages(cfg.data.path)
        random.Random(cfg.seed).shuffle(samples)
        # Hold out a slice for the end-of-stage accuracy only when the file is big enough to spare it.
        cut = cfg.eval.num_samples if len(samples) >= 4 * cfg.eval.num_samples else 0
        heldout, samples = samples[:cut], samples[cut:]
    else:
        samples = from_envs.generate(cfg.data.tasks, cfg.data.difficulties, cfg.data.num_train, cfg.seed)
        heldout = from_envs.heldout(cfg.data.tasks[0], cfg.eval.difficulty, cfg.eval.num_samples, cfg.seed)
    train, counts = fit_all(samples, tokenizer, cfg.data.max_seq_len)
    return Prepared(train, heldout, counts)


def _prompt_completion(sample: Messages) -> dict[str, Messages]:
    return {"prompt": sample[:-1], "completion": sample[-1:]}


def run(prepared: Prepared, ctx: RunContext) -> dict:
    cfg = ctx.cfg
    model, tokenizer = load_model(cfg.model.path, seed=cfg.seed)
    model = apply_lora(model, cfg.model.lora)
    if ctx.resume_from is None:  # step 0 is already in the stream of a resumed run
        ctx.metrics.log(0, {f"data/{k}": v for k, v in prepared.counts.items()})
    dataset = Dataset.from_list([_prompt_completion(s) for s in prepared.train])
    trainer, callback = build_sft_trainer(ctx, model, tokenizer, dataset)
    trainer.train(resume_from_checkpoint=str(ctx.resume_from) if ctx.resume_from else None)
    final_model = export_final(trainer.model, tokenizer, ctx.final)
    accuracy = exact_match(
        final_model,
        tokenizer,
        prepared.heldout,
        max_new_tokens=cfg.eval.max_new_tokens,
        batch_size=cfg.eval.batch_size,
    )
    plot_metrics(ctx.dir / "metrics.jsonl", ctx.plots, PLOTS)
    summary = {
        "stage": "sft",
        "steps": trainer.state.global_step,
        "heldout_exact_match": accuracy,
        "heldout_samples": len(prepared.heldout),
        "data": prepared.counts,
        "train_runtime_s": callback.summary.get("train_runtime"),
        "final": str(ctx.final),
    }
    print(f"held-out exact match: {accuracy:.1%} on {len(prepared.heldout)} samples; final model in {ctx.final}")
    return summary
