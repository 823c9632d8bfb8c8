"""The dynamic batcher against a real in-process worker, whose engine calls are recorded."""

from __future__ import annotations

import asyncio

import pytest

from posttrain.rollout.types import Request, SamplingParams
from posttrain.rollout.worker import RolloutWorker
from posttrain.serve.batcher import DynamicBatcher


class Recording:
    """A real worker; records the size and sampling params of every runner call."""

    def __init__(self) -> None:
        self.worker = RolloutWorker("test", "zaya-tiny", device="cpu")
        self.calls: list[tuple[str, int, object]] = []

    def generate(self, requests):
        self.calls.append(("generate", len(requests), {r.params for r in requests}))
        return self.worker.generate(requests)

    def score(self, sequences, *, temperature, top_logprobs):
        self.calls.append(("score", len(sequences), (temperature, top_logprobs)))
        return self.worker.score(sequences, temperature=temperature, top_logprobs=top_logprobs)


@pytest.fixture(scope="module")
def shared_runner():
    return Recording()


@pytest.fixture
def runner(shared_runner):
    shared_runner.calls.clear()
    return shared_runner


def run(runner, callers):
    """`callers(batcher)` inside a fresh event loop, with a 0.2 s window and batches of at most 4."""

    async def main():
        batcher = DynamicBatcher(runner, window_s=0.2, max_batch_size=4)
        try:
            return await callers(batcher)
        finally:
            await batcher.close()

    return asyncio.run(main())


def request(name: str, prompt: tuple[int, ...], **params) -> Request:
    return Request(id=name, prompt_ids=prompt, params=SamplingParams(max_new_tokens=3, **params))


def test_concurrent_requests_with_equal_params_share_one_call_and_keep_their_ids(runner):
    prompts = [(10, 11), (12,), (13, 14, 15)]

    async def three_callers(batcher):
        return await asyncio.gather(*(batcher.generate([request("same", p)]) for p in prompts))

    results = run(runner, three_callers)
    assert [call[:2] for call in runner.calls] == [("generate", 3)]
    assert [r[0].prompt_ids for r in results] == [list(p) for p in prompts]  # each caller got its own prompt back
    assert all(r[0].request_id == "same" for r in results)  # duplicate ids are fine: they are restored


def test_different_params_go_in_separate_calls_and_max_batch_size_splits(runner):
    async def callers(batcher):
        greedy = [batcher.generate([request(str(i), (20 + i,), temperature=0.0)]) for i in range(5)]
        sampled = batcher.generate([request("s", (30,), temperature=1.0)])
        return await asyncio.gather(*greedy, sampled)

    run(runner, callers)
    sizes = sorted((call[1], next(iter(call[2])).temperature) for call in runner.calls)
    assert sizes == [(1, 0.0), (1, 1.0), (4, 0.0)]  # 5 greedy = 4 + 1 (max_batch_size=4), the sampled one alone
    assert all(len(call[2]) == 1 for call in runner.calls)  # one SamplingParams per engine call


def test_a_cancelled_caller_is_dropped_before_its_batch_leaves(runner):
    async def cancel_one(batcher):
        kept = asyncio.ensure_future(batcher.generate([request("kept", (40,))]))
        dropped = asyncio.ensure_future(batcher.generate([request("dropped", (41, 42))]))
        await asyncio.sleep(0)  # both are queued; the window (0.2 s) has not closed
        dropped.cancel()
        return await kept

    (result,) = run(runner, cancel_one)
    assert result.prompt_ids == [40]
    assert [call[:2] for call in runner.calls] == [("generate", 1)]


def test_scoring_batches_by_settings_and_an_engine_error_reaches_only_that_batch(runner):
    async def mixed(batcher):
        scores = batcher.score([[5, 6, 7], [8, 9]], temperature=1.0, top_logprobs=2)
        too_long = batcher.score([[5] * 5000], temperature=1.0, top_logprobs=0)
        return await asyncio.gather(scores, too_long, return_exceptions=True)

    scores, error = run(runner, mixed)
    assert [len(s.logprobs) for s in scores] == [2, 1] and all(len(t) == 2 for s in scores for t in s.top)
    assert "does not fit the model's context" in str(error)
