"""Reward-model training: TRL's RewardTrainer on preference pairs, exported as a one-label sequence classifier.

Pairs come from `data.path` (TRL's preference formats: `chosen`/`rejected` as messages or text, optional
`prompt`; JSONL/JSON/parquet, a saved `datasets` dir, or a hub id when online) or, with no path, from the
builtin synthetic instruction-following set. Pairs longer than `data.max_seq_len` tokens are dropped, not
cut, since cutting can leave chosen and rejected identical. `final/` holds an
`AutoModelForSequenceClassification` checkpoint (LoRA merged) that `rewards.reward_model` loads, and the
summary reports its accuracy on held-out pairs, scored through that same loader.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from posttrain.config import Config
from posttrain.errors import UserError
from posttrain.run_context import RunContext
from posttrain.stagekit import Stage

Pair = dict[str, Any]
PLOTS = {"loss": ["loss"], "accuracy": ["accuracy"], "margin": ["margin"], "learning_rate": ["learning_rate"]}


@dataclass
class Prepared:
    train: list[Pair]
    heldout: list[Pair]
    counts: dict[str, int]


def check(cfg: Config) -> None:
    """The input checks that need no model: a preference file is readable and has chosen/rejected columns."""
    from posttrain.data.preferences import load_preferences

    if cfg.data.path is not None:
        load_preferences(cfg.data.path)


def _conversations(pair: Pair) -> Pair:
    """Whole chosen/rejected conversations, as TRL tokenises them and the reward model scores them
    (with the synthetic set's `rejected_kind`, which the trainer ignores)."""
    prompt = pair.get("prompt") or []
    return {
        "chosen": prompt + pair["chosen"],
        "rejected": prompt + pair["rejected"],
        "rejected_kind": pair["rejected_kind"],
    }


def _pairs(cfg: Config) -> tuple[list[Pair], list[Pair]]:
    from posttrain.data.preferences import load_preferences, synthetic_preferences

    if cfg.data.path is None:
        train = synthetic_preferences(cfg.data.num_train, cfg.seed)
        heldout = synthetic_preferences(cfg.eval.num_samples, cfg.seed, heldout=True)
        return [_conversations(p) for p in train], [_conversations(p) for p in heldout]
    pairs = load_preferences(cfg.data.path)
    random.Random(cfg.seed).shuffle(pairs)
    # Hold out a slice for the end-of-stage accuracy only when the file is big enough to spare it (as SFT does).
    cut = cfg.eval.num_samples if len(pairs) >= 4 * cfg.eval.num_samples else 0
    return pairs[cut:], pairs[:cut]


def _fits(pair: Pair, tokenizer: Any, max_len: int) -> bool:
    return all(
        len(tokenizer.apply_chat_template(pair[side], tokenize=True, return_dict=True)["input_ids"]) <= max_len
        for side in ("chosen", "rejected")
    )


def prepare(cfg: Config) -> Prepared:
    from posttrain.hf_trainer import check_precision
    from posttrain.models import check_model_path, load_tokenizer

    check_precision(cfg)
    check_model_path(cfg.model.path)
    tokenizer = load_tokenizer(cfg.model.path)
    if not tokenizer.chat_template:
        raise UserError(f"model.path={cfg.model.path!r}: its tokenizer has no chat template to render pairs with")
    train, heldout = _pairs(cfg)
    kept = [p for p in train if _fits(p, tokenizer, cfg.data.max_seq_len)]
    heldout = [p for p in heldout if _fits(p, tokenizer, cfg.data.max_seq_len)]
    if not kept:
        raise UserError(f"no preference pair fits data.max_seq_len={cfg.data.max_seq_len} tokens")
    return Prepared(kept, heldout, {"pairs": len(train), "kept": len(kept), "dropped_too_long": len(train) - len(kept)})


def run(prepared: Prepared, ctx: RunContext) -> dict:
    from datasets import Dataset

    from posttrain.devices import resolve_device
    from posttrain.export import export_final
    from posttrain.hf_trainer import build_reward_trainer
    from posttrain.models import load_reward_model
    from posttrain.models.lora import apply_lora
    from posttrain.plots import plot_metrics
    from posttrain.rewards.base import mean
    from posttrain.rewards.reward_model import RewardModelScorer, preference_wins

    cfg = ctx.cfg
    model, tokenizer = load_reward_model(cfg.model.path, seed=cfg.seed)
    model = apply_lora(model, cfg.model.lora, seed=cfg.seed, task_type="SEQ_CLS")
    if ctx.resume_from is None:  # step 0 is already in the stream of a resumed run
        ctx.metrics.log(0, {f"data/{k}": v for k, v in prepared.counts.items()})
    dataset = Dataset.from_list(prepared.train)
    trainer, callback = build_reward_trainer(ctx, model, tokenizer, dataset)
    trainer.train(resume_from_checkpoint=str(ctx.resume_from) if ctx.resume_from else None)
    export_final(trainer.model, tokenizer, ctx.final)
    scorer = RewardModelScorer(
        str(ctx.final),
        batch_size=cfg.eval.batch_size,
        max_length=cfg.data.max_seq_len,
        device=resolve_device(cfg.device),
    )
    heldout = prepared.heldout
    wins = preference_wins(scorer, heldout)
    accuracy = mean(wins) if heldout else None
    by_kind: dict[str, list[float]] = {}
    for pair, win in zip(heldout, wins, strict=True):
        if "rejected_kind" in pair:  # the synthetic set says how each rejected answer is bad
            by_kind.setdefault(pair["rejected_kind"], []).append(win)
    plot_metrics(ctx.dir / "metrics.jsonl", ctx.plots, PLOTS)
    summary = {
        "stage": "rm",
        "steps": trainer.state.global_step,
        "heldout_accuracy": accuracy,
        "heldout_accuracy_by_kind": {kind: mean(w) for kind, w in sorted(by_kind.items())},
        "heldout_pairs": len(heldout),
        "data": prepared.counts,
        "train_runtime_s": callback.summary.get("train_runtime"),
        "final": str(ctx.final),
    }
    shown = f"{accuracy:.1%} on {len(heldout)} pairs" if accuracy is not None else "n/a (no held-out pairs)"
    print(f"held-out preference accuracy: {shown}; final reward model in {ctx.final}")
    return summary


class RewardModelStage(Stage):
    name = "rm"
    reads = ("model", "data.path", "data.num_train", "data.max_seq_len", "trainer", "eval.num_samples")
    reads += ("eval.batch_size",)

    def check(self, cfg: Config) -> None:
        check(cfg)

    def prepare(self, cfg: Config) -> Prepared:
        return prepare(cfg)

    def run(self, prepared: Prepared, ctx: RunContext) -> dict:
        return run(prepared, ctx)
