"""LLM-as-a-judge rewards (RLAIF): pointwise scores against a rubric or constitution, and pairwise preferences
against a reference answer.

Backends answer chat messages with text: `HttpBackend` talks to any OpenAI-compatible
`/v1/chat/completions` endpoint (vLLM, posttrain's server) with stdlib `urllib`, a per-request timeout and
retries with backoff on network errors, 429 and 5xx; `HFBackend` runs a local causal LM greedily. Judges
parse replies leniently. A sample whose judge times out, errors or replies with no usable verdict scores
`failure_score` (0 by default), is logged with the reason, and counts in `judge/failures`; it never raises.
`check()` is the start-up probe a stage calls before any work: an unreachable endpoint is a `UserError`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from posttrain.errors import UserError
from posttrain.rewards.base import RewardOutput, as_text, mean, per_sample, register_reward
from posttrain.rewards.compose import check_ready

logger = logging.getLogger(__name__)

DEFAULT_RUBRIC = "Judge how helpful, honest and harmless the response is, and how well it follows the request."
POINTWISE_TEMPLATE = (
    "{rubric}\n\n[User request]\n{prompt}\n\n[Response]\n{response}\n\n"
    "Rate the response from 1 to 10. End your reply with a line of the form `Score: N`."
)
PAIRWISE_TEMPLATE = (
    "{rubric}\n\n[User request]\n{prompt}\n\n[Response A]\n{a}\n\n[Response B]\n{b}\n\n"
    "Which response is better? End your reply with a line of the form `Preferred: A` or `Preferred: B`."
)
MAX_FIELD_CHARS = 16_000  # a runaway completion must not blow up the judge's context


class JudgeError(RuntimeError):
    """The backend gave no usable reply after all retries."""


class Backend(Protocol):
    def complete(self, messages: list[dict[str, str]]) -> str: ...


def parse_score(reply: str, low: int = 1, high: int = 10) -> float | None:
    """The judge's score: `[[7]]`, `Score: 7`, `7/10` (last one wins), else the last bare number in range."""
    text = as_text(reply)[-4000:]
    number = r"(\d+(?:\.\d+)?)"
    patterns = (rf"\[\[\s*{number}\s*\]\]", rf"score\s*(?:is|of|[:=])?\s*\**\s*{number}", rf"{number}\s*/\s*{high}\b")
    for pattern in patterns:
        found = re.findall(pattern, text, re.IGNORECASE)
        if found:
            value = float(found[-1])
            return value if low <= value <= high else None
    bare = [float(x) for x in re.findall(rf"(?<![\w.]){number}(?![\w.])", text) if low <= float(x) <= high]
    return bare[-1] if bare else None


def parse_preference(reply: str) -> str | None:
    """'A' or 'B': `[[A]]`, `Preferred: B`, `Response A is better`, else the last standalone A/B."""
    text = as_text(reply)[-4000:]
    for pattern in (
        r"\[\[\s*([AB])\s*\]\]",
        r"prefer(?:red|ence)?\s*(?:response)?\s*[:=]?\s*\**\s*([AB])\b",
        r"(?:response|answer)\s+([AB])\s+is\s+better",
    ):
        found = re.findall(pattern, text, re.IGNORECASE)
        if found:
            return found[-1].upper()
    bare = re.findall(r"\b([AB])\b", text)
    return bare[-1] if bare else None


class HttpBackend:
    """OpenAI-compatible chat completions over HTTP; `base_url` like `http://host:8000` or `.../v1`."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str = "judge",
        api_key_env: str | None = None,
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> None:
        if not str(base_url).startswith(("http://", "https://")):
            raise UserError(f"judge base_url must start with http:// or https://, got {base_url!r}")
        root = base_url.rstrip("/")
        self.url = root + ("/chat/completions" if root.endswith("/v1") else "/v1/chat/completions")
        self.model, self.timeout_s, self.retries, self.backoff_s = model, timeout_s, retries, backoff_s
        self.api_key = os.environ.get(api_key_env) if api_key_env else None
        self.max_tokens, self.temperature = max_tokens, temperature

    def complete(self, messages: list[dict[str, str]]) -> str:
        return self._post(messages, self.max_tokens, self.retries)

    def check(self) -> None:
        """One tiny request, no retries: an endpoint that cannot answer it is refused before any work."""
        try:
            self._post([{"role": "user", "content": "Reply with OK."}], 1, 0)
        except JudgeError as exc:
            raise UserError(f"judge endpoint unreachable or not OpenAI-compatible: {exc}") from None

    def _post(self, messages: list[dict[str, str]], max_tokens: int, retries: int) -> str:
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": self.temperature}
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last_error = "no attempt"
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            request = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    payload = json.loads(response.read(4_000_000))
                return str(payload["choices"][0]["message"]["content"])
            except urllib.error.HTTPError as exc:
                last_error = f"HTTP {exc.code}"
                if exc.code != 429 and exc.code < 500:
                    break  # a client error will not fix itself
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                last_error = f"malformed reply: {exc!r}"
        raise JudgeError(f"{self.url}: {last_error}")


class HFBackend:
    """A local causal LM (a preset such as `zaya-tiny` or an HF directory), decoding greedily through posttrain's
    engine: the same generation path and chat encoding as RL rollouts, evaluation and `posttrain serve`."""

    def __init__(self, model_path: str, *, max_new_tokens: int = 32, seed: int = 0) -> None:
        from posttrain.rollout.engine import build_engine

        self.engine = build_engine("hf", model_path, seed=seed)
        self.max_new_tokens = max_new_tokens

    def check(self) -> None:
        """Nothing to probe: the model was loaded (or refused with a `UserError`) when the backend was built."""

    def complete(self, messages: list[dict[str, str]]) -> str:
        from posttrain.rollout.chat import encode_messages
        from posttrain.rollout.types import SamplingParams

        prompt = encode_messages(self.engine.tokenizer, messages)
        (completion,) = self.engine.generate([prompt], SamplingParams(self.max_new_tokens, temperature=0.0))
        return completion.text


def make_backend(backend: str, **kwargs: Any) -> Backend:
    """`http` (kwargs of `HttpBackend`) or `hf` (kwargs of `HFBackend`)."""
    if backend == "http":
        return HttpBackend(**kwargs)
    if backend == "hf":
        return HFBackend(**kwargs)
    raise UserError(f"judge backend must be 'http' or 'hf', got {backend!r}")


def render_rubric(rubric: str | Sequence[str]) -> str:
    """A rubric is free text; a constitution (a list of principles) becomes a numbered list to judge against."""
    if isinstance(rubric, str):
        return rubric
    principles = "\n".join(f"{i}. {p}" for i, p in enumerate(rubric, 1))
    return f"Judge the response against these principles:\n{principles}"


class _Judge:
    def __init__(
        self, backend: Backend | str, rubric: str | Sequence[str], max_concurrency: int, backend_kwargs: dict
    ) -> None:
        self.backend = make_backend(backend, **backend_kwargs) if isinstance(backend, str) else backend
        self.rubric, self.max_concurrency = render_rubric(rubric), max_concurrency

    def check(self) -> None:
        """Refuse an unreachable judge before any work (a `UserError`); see `HttpBackend.check`."""
        check_ready(self.backend)

    def _ask_all(self, contents: list[str]) -> list[str | JudgeError]:
        """The reply to each request, or the error that stood in for it; nothing a backend does escapes."""

        def ask(content: str) -> str | JudgeError:
            try:
                return self.backend.complete([{"role": "user", "content": content}])
            except JudgeError as exc:
                return exc
            except Exception as exc:  # a local model or a custom backend must not take the run down either
                return JudgeError(f"{type(exc).__name__}: {exc}")

        if isinstance(self.backend, HFBackend) or self.max_concurrency <= 1:
            return [ask(c) for c in contents]
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            return list(pool.map(ask, contents))


def _parsed(replies: list[str | JudgeError], parse: Any, what: str) -> list[Any]:
    """Each reply's verdict, or None, logging why a sample got none (it will score `failure_score`)."""
    verdicts = []
    for index, reply in enumerate(replies):
        verdict = None if isinstance(reply, JudgeError) else parse(reply)
        if verdict is None:
            reason = str(reply) if isinstance(reply, JudgeError) else f"no {what} in reply {reply[-200:]!r}"
            logger.warning("judge failed on sample %d, scored as a failure: %s", index, reason)
        verdicts.append(verdict)
    return verdicts


def _clip(text: Any) -> str:
    return as_text(text)[:MAX_FIELD_CHARS]


@register_reward("judge")
class PointwiseJudge(_Judge):
    """Score in [0, 1] from the judge's 1-10 rating, (s - 1) / 9; `failure_score` when no rating is found."""

    def __init__(
        self,
        backend: Backend | str = "http",
        *,
        rubric: str | Sequence[str] = DEFAULT_RUBRIC,
        failure_score: float = 0.0,
        max_concurrency: int = 8,
        **backend_kwargs: Any,
    ) -> None:
        super().__init__(backend, rubric, max_concurrency, backend_kwargs)
        self.failure_score = failure_score

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> RewardOutput:
        contents = [
            POINTWISE_TEMPLATE.format(rubric=self.rubric, prompt=_clip(p), response=_clip(c))
            for p, c in zip(prompts, completions, strict=True)
        ]
        ratings = _parsed(self._ask_all(contents), parse_score, "score")
        scores = [(r - 1) / 9 if r is not None else self.failure_score for r in ratings]
        valid = [r for r in ratings if r is not None]
        metrics = {"judge/rating": mean(valid), "judge/score": mean(scores)}
        return RewardOutput(scores, {**metrics, "judge/failures": float(len(ratings) - len(valid))})


@register_reward("pairwise_judge")
class PairwiseJudge(_Judge):
    """P(completion preferred over the `reference_column` answer): 1 or 0 per order judged.

    With `swap`, each pair is also judged in the other order and the two verdicts averaged, which cancels a
    judge's preference for a position (one that always picks the first slot scores 0.5). A sample with any
    order unjudged (error, timeout, no verdict) scores `failure_score` and counts in `judge/failures`.
    """

    def __init__(
        self,
        backend: Backend | str = "http",
        *,
        rubric: str | Sequence[str] = DEFAULT_RUBRIC,
        reference_column: str = "reference",
        swap: bool = True,
        failure_score: float = 0.0,
        max_concurrency: int = 8,
        **backend_kwargs: Any,
    ) -> None:
        super().__init__(backend, rubric, max_concurrency, backend_kwargs)
        self.reference_column, self.swap, self.failure_score = reference_column, swap, failure_score

    def prefer(self, prompts: Sequence[str], first: Sequence[str], second: Sequence[str]) -> list[str | None]:
        """'A' (first better), 'B' (second better) or None, one per pair, judged in the order given."""
        contents = [
            PAIRWISE_TEMPLATE.format(rubric=self.rubric, prompt=_clip(p), a=_clip(a), b=_clip(b))
            for p, a, b in zip(prompts, first, second, strict=True)
        ]
        return _parsed(self._ask_all(contents), parse_preference, "preference")

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> RewardOutput:
        references = [as_text(r) for r in per_sample(columns, self.reference_column, len(completions), "")]
        orders = [[{"A": 1.0, "B": 0.0}.get(v) for v in self.prefer(prompts, completions, references)]]
        if self.swap:
            orders.append([{"A": 0.0, "B": 1.0}.get(v) for v in self.prefer(prompts, references, completions)])
        judged = [None if None in wins else mean(wins) for wins in zip(*orders, strict=True)]
        scores = [self.failure_score if w is None else w for w in judged]
        valid = [w for w in judged if w is not None]
        failures = float(len(judged) - len(valid))
        return RewardOutput(
            scores, {"pairwise/win_rate": mean(valid), "judge/score": mean(scores), "judge/failures": failures}
        )
