"""Dynamic batching: requests that arrive within a short window and sample alike share one engine call.

Every HTTP handler (and every RSA round) puts its prompts in one queue. The oldest queued job waits at
most `window` for company; then it leaves with up to `max_batch_size` jobs of the same kind: generation
with equal `SamplingParams`, or scoring at equal settings. Batches run one at a time on a single engine
thread, against the runner every other part of posttrain uses: an in-process `RolloutWorker` or a
`RolloutFleet` of Ray workers, both `generate(requests) -> rollouts`. While a batch runs, new requests
queue up and leave together as the next one.

A job whose caller went away (a client that disconnected) is dropped before its batch leaves; one
already in a running batch finishes there and its result is thrown away.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from posttrain.rollout.types import Request, Rollout, TokenScores


@dataclass
class _Job:
    key: Hashable  # ("generate", params) or ("score", temperature, top_logprobs)
    item: Any  # a Request, or a token sequence to score
    future: asyncio.Future
    arrived: float


class DynamicBatcher:
    def __init__(self, runner: Any, *, window_s: float, max_batch_size: int) -> None:
        self.runner, self.window_s, self.max_batch_size = runner, window_s, max_batch_size
        self._jobs: deque[_Job] = deque()
        self._wake = asyncio.Event()
        self._engine = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self._ids = itertools.count()
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run())
        self.busy = False
        self.engine_calls = 0
        self.largest_batch = 0

    @property
    def queued(self) -> int:
        return sum(not job.future.done() for job in self._jobs)

    async def generate(self, requests: Sequence[Request]) -> list[Rollout]:
        """One rollout per request, in order; request ids need not be unique (they are restored on the way out)."""
        rollouts = await self._gather([(("generate", r.params), r) for r in requests])
        return [replace(rollout, request_id=r.id) for r, rollout in zip(requests, rollouts, strict=True)]

    def generate_blocking(self, requests: Sequence[Request]) -> list[Rollout]:
        """`generate` for code running in another thread (Markovian RSA's rounds)."""
        return asyncio.run_coroutine_threadsafe(self.generate(requests), self._loop).result()

    async def score(
        self, sequences: Sequence[Sequence[int]], *, temperature: float, top_logprobs: int
    ) -> list[TokenScores]:
        return await self._gather([(("score", temperature, top_logprobs), list(s)) for s in sequences])

    async def _gather(self, keyed_items: list[tuple[Hashable, Any]]) -> list[Any]:
        now = self._loop.time()
        jobs = [_Job(key, item, self._loop.create_future(), now) for key, item in keyed_items]
        self._jobs.extend(jobs)
        self._wake.set()
        # Cancelling the caller cancels these futures too, which takes the jobs out of the queue.
        return list(await asyncio.gather(*(job.future for job in jobs)))

    def _take(self) -> list[_Job]:
        """The oldest live job and up to max_batch_size - 1 more of its key, in arrival order."""
        while self._jobs and self._jobs[0].future.done():
            self._jobs.popleft()
        if not self._jobs:
            return []
        key, batch, rest = self._jobs[0].key, [], deque()
        for job in self._jobs:
            if job.future.done():
                continue
            (batch if job.key == key and len(batch) < self.max_batch_size else rest).append(job)
        self._jobs = rest
        return batch

    async def _run(self) -> None:
        while True:
            if not any(not job.future.done() for job in self._jobs):
                self._jobs.clear()
                self._wake.clear()
                await self._wake.wait()
                continue
            oldest = next(job for job in self._jobs if not job.future.done())
            wait = oldest.arrived + self.window_s - self._loop.time()
            if wait > 0 and self.queued < self.max_batch_size:
                await asyncio.sleep(wait)
                continue
            batch = self._take()
            self.busy = True
            try:
                results = await self._loop.run_in_executor(self._engine, self._execute, batch)
            except Exception as exc:  # the batch's callers get the error; the server carries on
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
            else:
                for job, result in zip(batch, results, strict=True):
                    if not job.future.done():
                        job.future.set_result(result)
            finally:
                self.busy = False

    def _execute(self, batch: list[_Job]) -> list[Any]:
        """Runs on the engine thread: one runner call for the whole batch."""
        self.engine_calls += 1
        self.largest_batch = max(self.largest_batch, len(batch))
        kind, *settings = batch[0].key
        if kind == "score":
            temperature, top_logprobs = settings
            return self.runner.score([job.item for job in batch], temperature=temperature, top_logprobs=top_logprobs)
        # Ids only need to be unique within one runner call (the fleet checks); callers get theirs back.
        return self.runner.generate([replace(job.item, id=f"b{next(self._ids)}") for job in batch])

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        for job in self._jobs:
            job.future.cancel()
        await self._loop.run_in_executor(None, self._engine.shutdown)
