"""A real `posttrain serve` in a subprocess on 127.0.0.1, and zaya-tiny in the test process for oracles.

The server binds port 0 itself and prints the port it got, so no port is probed and released. Oracles
are computed here with plain forward passes (`log_softmax` of the logits), never with the server's code.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
import torch

from posttrain.models import load_model
from tests.conftest import cli_env

START_TIMEOUT_S = 300  # a loaded 2-core machine can take a minute to import torch and build the model
ANNOUNCE = re.compile(r"posttrain serve: (\S+) on (http://\S+)")


@dataclass
class Server:
    process: subprocess.Popen
    model: str
    url: str  # ends in /v1
    log: Path

    @property
    def root(self) -> str:
        return self.url.removesuffix("/v1")

    def health(self) -> dict:
        return httpx2.get(f"{self.root}/health", timeout=30).json()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 180) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(*overrides: str, log_dir: Path | None = None) -> Server:
    """`posttrain serve serve.port=0 ...`, returned once it has announced its URL."""
    folder = Path(log_dir or tempfile.mkdtemp(prefix="serve-test-"))
    out, err = folder / "stdout.txt", folder / "stderr.txt"
    env = cli_env() | {"OMP_NUM_THREADS": "1"}
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "posttrain.cli", "serve", "serve.port=0", *overrides],
            stdout=stdout,
            stderr=stderr,
            env=env,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        found = ANNOUNCE.search(out.read_text())
        if found:
            return Server(process, found.group(1), found.group(2), err)
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{err.read_text()}")
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server did not announce itself within {START_TIMEOUT_S}s:\n{err.read_text()}")


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One server for the protocol tests; a 20 ms window so that concurrent requests visibly share batches."""
    live = start_server("serve.batch_window_ms=20", log_dir=tmp_path_factory.mktemp("server"))
    yield live
    assert live.stop() == 0, live.stderr()


@pytest.fixture(scope="session")
def tiny():
    """zaya-tiny exactly as the server builds it (seed 0)."""
    model, tokenizer = load_model("zaya-tiny", seed=0)
    return model.eval(), tokenizer


@pytest.fixture
def client(server):
    import openai

    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=300)


def forward_logprobs(model, ids: list[int]) -> torch.Tensor:
    """[len(ids), vocab] log-probs of the next token after each prefix: one plain forward pass."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    return torch.log_softmax(logits, dim=-1)


def teacher_forced(model, prompt: list[int], continuation: list[int]) -> list[float]:
    """log p(continuation[j] | prompt + continuation[:j]) for every j."""
    table = forward_logprobs(model, prompt + continuation)
    return [table[len(prompt) - 1 + j, token].item() for j, token in enumerate(continuation)]


def greedy(model, tokenizer, prompt: list[int], max_new_tokens: int) -> list[int]:
    """Argmax decoding by full forward passes (no cache, no `generate`), stopping after EOS."""
    ids = list(prompt)
    for _ in range(max_new_tokens):
        token = int(forward_logprobs(model, ids)[-1].argmax())
        ids.append(token)
        if token == tokenizer.eos_token_id:
            break
    return ids[len(prompt) :]


def chat_prompt(tokenizer, content: str) -> list[int]:
    """The chat prompt as the model's own template renders it."""
    messages = [{"role": "user", "content": content}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def joined(reasoning: str | None, content: str) -> str:
    """A chat completion's text less its two tags: a stream cannot tell an empty reasoning from none."""
    return (reasoning or "") + content


def chat_text(tokenizer, ids: list[int]) -> str:
    """What `joined(reasoning_content, content)` must give for generated `ids`: the text less a leading
    `<think>` and the first `</think>` (the reasoning split's two tags)."""
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if "</think>" not in text:
        return text
    if text.startswith("<think>"):
        text = text[len("<think>") :]
    return text.replace("</think>", "", 1)
