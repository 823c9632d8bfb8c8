"""`posttrain rsa`: Markovian RSA inference on the rollout fleet.

    posttrain rsa prompt="What is 2+3?" [model.path=DIR] [rsa.N=8 rsa.T=3 ...]
    posttrain rsa data.path=prompts.jsonl [output=results.jsonl]

Every input is checked before Ray starts: the config ranges, the model path, the prompts, and whether
the longest prompt RSA can build plus β new tokens fits the model's context (prompts are never truncated).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from posttrain.cli import add_override_command
from posttrain.errors import UserError

EXAMPLES = """\
examples:
  posttrain rsa prompt="What is 12+34?"                       # zaya-tiny, N=4 C=2 T=2 (configs/commands/rsa.yaml)
  posttrain rsa model.path=runs/sft/final prompt="What is 3*7?" rsa.N=8 rsa.T=3
  posttrain rsa data.path=prompts.jsonl output=answers.jsonl  # one {"prompt": ...} object per line
  posttrain rsa prompt="..." rsa.T=0                          # plain parallel sampling
"""
COMMAND_KEYS = ("prompt", "output")


def register(subparsers: Any) -> None:
    add_override_command(
        subparsers,
        "rsa",
        rsa_command,
        help="Markovian RSA inference: posttrain rsa prompt=... [key=value ...]",
        description="Run Markovian RSA (N chains, C tails, T rounds) on the rollout fleet and vote on the answers.",
        epilog=EXAMPLES,
        overrides_help="prompt=, output= and config overrides",
    )


def _split(overrides: list[str]) -> tuple[dict[str, str], list[str]]:
    command, config = {}, []
    for item in overrides:
        key, _, value = item.partition("=")
        if key in COMMAND_KEYS:
            command[key] = value
        else:
            config.append(item)
    return command, config


def read_prompts(path: str) -> list[str]:
    """The `prompt` column of a JSONL file."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"data.path={path!r} does not exist")
    prompts = []
    for number, line in enumerate(file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"{path}:{number}: not a JSON object") from None
        prompt = record.get("prompt") if isinstance(record, dict) else None
        if not isinstance(prompt, str) or not prompt.strip():
            raise UserError(f"{path}:{number}: needs a non-empty string 'prompt'")
        prompts.append(prompt)
    if not prompts:
        raise UserError(f"data.path={path!r} holds no prompts")
    return prompts


def context_limit(model_path: str, tokenizer: Any) -> int | None:
    from transformers import AutoConfig

    from posttrain.models import PRESETS
    from posttrain.models.presets import preset_config

    config = preset_config(model_path, tokenizer) if model_path in PRESETS else AutoConfig.from_pretrained(model_path)
    return getattr(config, "max_position_embeddings", None)


def check_fits(prompts: list[str], tokenizer: Any, cfg: Any, limit: int | None) -> None:
    from posttrain.rollout.markovian_rsa import max_prompt_tokens

    if limit is None:
        return
    for index, prompt in enumerate(prompts):
        need = max_prompt_tokens(prompt, tokenizer, cfg.rsa) + cfg.rsa.beta
        if need > limit:
            raise UserError(
                f"prompt {index + 1} needs up to {need} tokens (prompt, {cfg.rsa.C} tails of rsa.tau={cfg.rsa.tau}, "
                f"rsa.beta={cfg.rsa.beta} new tokens) but the model's context is {limit}; shorten it or lower them"
            )


def _printable(text: str) -> str:
    """Model output on one terminal line: control characters escaped, never interpreted."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def rsa_command(args: argparse.Namespace) -> int:
    from posttrain.config import compose, to_object
    from posttrain.models import check_model_path, load_tokenizer
    from posttrain.rollout.engine import check_engine
    from posttrain.runner import progress_enabled

    command, overrides = _split(args.overrides)
    cfg = to_object(compose("rsa", overrides, layer_files=["commands/rsa.yaml"]))
    check_engine(cfg.rollout.engine, cfg.device)
    if ("prompt" in command) == (cfg.data.path is not None):
        raise UserError('give exactly one of prompt="..." and data.path=FILE.jsonl')
    if "prompt" in command and not command["prompt"].strip():
        raise UserError("prompt is empty")
    prompts = [command["prompt"]] if "prompt" in command else read_prompts(cfg.data.path)
    output = command.get("output") or (f"{Path(cfg.data.path).with_suffix('')}.rsa.jsonl" if cfg.data.path else None)
    if cfg.model.path is None:
        raise UserError("model.path is required (a preset such as zaya-tiny, or an HF checkpoint directory)")
    check_model_path(cfg.model.path)
    tokenizer = load_tokenizer(cfg.model.path)
    check_fits(prompts, tokenizer, cfg, context_limit(cfg.model.path, tokenizer))

    from tqdm import tqdm

    from posttrain.rollout.fleet import RolloutFleet

    with (
        RolloutFleet(
            cfg.model.path, cfg.rollout, cfg.ray, seed=cfg.seed, dtype=cfg.model.dtype, device=cfg.device
        ) as fleet,
        tqdm(
            total=cfg.rsa.T + 1, desc="RSA rounds", unit="round", disable=not progress_enabled(cfg.logging.progress)
        ) as bar,
    ):
        trees = fleet.run_rsa(prompts, cfg.rsa, seed=cfg.seed, on_round=lambda _: bar.update(1))
    for tree in trees:
        print(f"problem: {_printable(tree.problem)}")
        for number, candidate in enumerate(tree.final, start=1):
            print(
                f"  candidate {number} [{candidate.rollout.finish_reason}] answer={candidate.answer!r}: "
                f"{_printable(candidate.rollout.text)}"
            )
        top = tree.votes.get(tree.majority, 0) if tree.majority is not None else 0
        print(f"majority: {tree.majority!r} ({top}/{len(tree.final)} votes)")
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        with Path(output).open("w") as file:
            for tree in trees:
                file.write(json.dumps(tree.to_dict()) + "\n")
        print(f"wrote {len(trees)} results to {output}")
    return 0
