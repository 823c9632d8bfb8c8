"""Markovian RSA per chat request: our `rsa` object or the flat keys of Zyphra's published proxy.

`rsa: false` bypasses RSA, `rsa: true` runs the server's `rsa` config section, and `rsa: {N, C, T, beta, tau,
final_temperature, final_top_p, final_top_k}` overrides any of its values. Zyphra's keys map onto the same
fields (table in docs/serve.md); `rsa_t: 0` passes through, as the proxy does. Keys of the proxy that
would change the algorithm into something this server does not run (summaries, PaCoRe prompts) are a 400,
never silently ignored.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from posttrain.errors import UserError
from posttrain.rollout.config import RSAConfig
from posttrain.rollout.markovian_rsa import RSATree, aggregation_prompt, max_prompt_tokens
from posttrain.serve.errors import APIError

OUR_FIELDS = {"N": int, "C": int, "T": int, "beta": int, "tau": int}
OUR_FIELDS |= {"final_temperature": float, "final_top_p": float, "final_top_k": int}
ZYPHRA_FIELDS = {  # flat key (and the proxy's aliases) -> our field
    "rsa_t": "T",
    "rsa_n": "N",
    "rsa_k": "C",
    "tail_window_len": "tau",
    "rsa_tail_window_len": "tau",
    "short_resp_len": "beta",
    "rsa_short_resp_len": "beta",
    "final_temperature": "final_temperature",
    "rsa_final_temperature": "final_temperature",
    "final_top_p": "final_top_p",
    "rsa_final_top_p": "final_top_p",
    "final_top_k": "final_top_k",
    "rsa_final_top_k": "final_top_k",
}
ZYPHRA_OPTIONS = {  # flat key -> option of the response or the run
    "return_rsa_metadata": "metadata",
    "rsa_return_metadata": "metadata",
    "return_aggregation_prompt": "aggregation_prompt",
    "rsa_return_aggregation_prompt": "aggregation_prompt",
    "rsa_final_n": "choices",
    "final_aggregation_prompts": "choices",
    "rsa_tail_window": "tail_window",
    "rsa_use_tail_window": "tail_window",
}
ZYPHRA_UNSUPPORTED = {"rsa_summarize", "summarize", "use_pacore", "rsa_use_pacore"}
ZYPHRA_UNSUPPORTED |= {"summary_prompt", "rsa_summary_prompt"}
ZYPHRA_IGNORED = {"rsa_max_concurrency", "rsa_debug"}  # the proxy's operational knobs; batching replaces them
ZYPHRA_KEYS = set(ZYPHRA_FIELDS) | set(ZYPHRA_OPTIONS) | ZYPHRA_UNSUPPORTED | ZYPHRA_IGNORED


@dataclass
class RSAPlan:
    cfg: RSAConfig
    choices: int  # final candidates returned, the majority's first
    metadata: bool
    aggregation_prompt: bool
    names: dict[str, str]  # our field -> the key the request used (error messages name what the user wrote)


def _typed(value: Any, kind: type, key: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not float(value).is_integer()):
        raise APIError(f"{key} must be {'an integer' if kind is int else 'a number'}, got {value!r}", param=key)
    return kind(value)


def _flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise APIError(f"{key} must be true or false, got {value!r}", param=key)
    return value


def plan(body: Any, base: RSAConfig, *, default_on: bool, max_chains: int) -> RSAPlan | None:
    """The RSA run a chat request asks for, checked; None for a plain completion."""
    extra = body.model_extra or {}
    flat = {key: extra[key] for key in ZYPHRA_KEYS if key in extra}
    settings = sorted(key for key in flat if key in ZYPHRA_FIELDS)
    if body.rsa is not None and settings:
        raise APIError(f"give RSA settings in rsa or as Zyphra's keys ({', '.join(settings)}), not both", param="rsa")
    if body.rsa is False or (body.rsa is None and not flat and not default_on):
        return None
    overrides: dict[str, Any] = {}
    names = {field: f"rsa.{field}" for field in OUR_FIELDS}
    options = {"metadata": True, "aggregation_prompt": False, "choices": body.n, "tail_window": True}
    if isinstance(body.rsa, dict):
        for key, value in body.rsa.items():
            if key not in OUR_FIELDS:
                raise APIError(f"rsa.{key} is not an RSA setting; use {', '.join(OUR_FIELDS)}", param=f"rsa.{key}")
            overrides[key] = _typed(value, OUR_FIELDS[key], f"rsa.{key}")
    for key, value in flat.items():
        if key in ZYPHRA_UNSUPPORTED:
            if value not in (False, None):
                raise APIError(f"{key} is not supported: this server runs Markovian RSA on tails only", param=key)
        elif key in ZYPHRA_FIELDS:
            field = ZYPHRA_FIELDS[key]
            overrides[field], names[field] = _typed(value, OUR_FIELDS[field], key), key
        elif key in ZYPHRA_OPTIONS:
            option = ZYPHRA_OPTIONS[key]
            options[option] = _typed(value, int, key) if option == "choices" else _flag(value, key)
    if flat and overrides.get("T") == 0:
        return None  # the proxy passes rsa_t=0 straight through
    return _checked(body, base, overrides, options, names, max_chains)


def _checked(
    body: Any, base: RSAConfig, overrides: dict, options: dict, names: dict[str, str], max_chains: int
) -> RSAPlan:
    if body.stream:
        raise APIError("RSA requests cannot be streamed; send stream=false", param="stream")
    if body.logprobs:
        raise APIError("log-probs are not available for RSA requests", param="logprobs")
    # β: the request's token budget when it sets no β of its own; τ then defaults to at most β.
    overrides.setdefault("beta", body.token_budget or base.beta)
    if not options["tail_window"]:
        overrides["tau"] = overrides["beta"]
    overrides.setdefault("tau", min(base.tau, overrides["beta"]))
    try:
        cfg = RSAConfig(**{**asdict(base), **overrides})
    except UserError as exc:
        field = re.match(r"rsa\.(\w+)", str(exc))
        key = names.get(field.group(1), "rsa") if field else "rsa"
        message = str(exc) if key.startswith("rsa") and not key.startswith("rsa_") else f"{key} sets {exc}"
        raise APIError(message, param=key) from None
    if max_chains < cfg.N:
        raise APIError(f"{names['N']}={cfg.N} is more chains than this server allows ({max_chains})", param=names["N"])
    choices = cfg.N if options["choices"] == 0 else options["choices"]
    if not 1 <= choices <= cfg.N:
        raise APIError(f"an RSA request returns between 1 and N={cfg.N} choices, not {choices}", param="n")
    return RSAPlan(cfg, choices, options["metadata"], options["aggregation_prompt"], names)


def problem_of(messages: list[dict[str, str]]) -> str:
    """RSA restates the problem in every aggregation prompt, so it takes exactly one user message."""
    if len(messages) != 1 or messages[0]["role"] != "user" or not messages[0]["content"].strip():
        raise APIError("an RSA request takes exactly one non-empty user message (the problem)", param="messages")
    return messages[0]["content"]


def check_fits(problem: str, tokenizer: Any, rsa: RSAPlan, limit: int | None) -> None:
    if limit is None:
        return
    need = max_prompt_tokens(problem, tokenizer, rsa.cfg) + rsa.cfg.beta
    if need > limit:
        raise APIError(
            f"RSA needs up to {need} tokens per call (problem, {rsa.cfg.C} tails of {rsa.names['tau']}="
            f"{rsa.cfg.tau}, {rsa.names['beta']}={rsa.cfg.beta} new tokens) but the model's context is {limit}",
            param="messages",
        )


def ranked(tree: RSATree) -> list[int]:
    """Final chains, the first one holding the majority answer in front (chain order otherwise)."""
    order = list(range(len(tree.final)))
    majority = tree.majority
    first = next((i for i in order if majority is not None and tree.final[i].answer == majority), 0)
    return [first] + [i for i in order if i != first]


def metadata(tree: RSATree, rsa: RSAPlan) -> dict[str, Any]:
    """Zyphra's `rsa_metadata` fields, plus token totals per round and the vote."""
    per_round = [sum(len(c.rollout.completion_ids) for c in round_) for round_ in tree.rounds]
    cfg = rsa.cfg
    return {
        "rsa_iterations": cfg.T,
        "rsa_n": cfg.N,
        "rsa_k": cfg.C,
        "tail_window_len": cfg.tau,
        "short_resp_len": cfg.beta,
        "final_temperature": cfg.final_temperature,
        "final_top_p": cfg.final_top_p,
        "rsa_token_count_history": [total / cfg.N for total in per_round],
        "completion_tokens_per_round": per_round,
        "majority_answer": tree.majority,
        "votes": tree.votes,
    }


def final_aggregation_prompt(tree: RSATree, rsa: RSAPlan) -> list[dict[str, str]] | None:
    """The first chain's last-round prompt as chat messages (what Zyphra's proxy returns); None when T = 0."""
    if rsa.cfg.T == 0:
        return None
    tails = [tree.rounds[-2][j].carried for j in tree.final[0].parents]
    return [{"role": "user", "content": aggregation_prompt(tree.problem, tails, rsa.cfg)}]
