"""Reward models (a real tiny checkpoint on disk) and LLM judges: scripted replies from a real HTTP server on
127.0.0.1 (the real urllib client, no mock) and from a real local Llama wired to answer a fixed text."""

from __future__ import annotations

import itertools
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
)

from posttrain.errors import UserError
from posttrain.models import build_char_tokenizer
from posttrain.rewards import make_reward
from posttrain.rewards.compose import check_ready
from posttrain.rewards.judge import HFBackend, HttpBackend, JudgeError, PairwiseJudge, PointwiseJudge
from posttrain.rewards.reward_model import build_tiny_reward_model


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_reward_model(tmp_path_factory.mktemp("rm"), seed=1)


def test_reward_model_scores_match_an_unbatched_forward(tiny_rm: Path) -> None:
    prompts = ["What is 2+2?", "Say hi", "x"]
    completions = ["4", "hello there, friend " * 5, "\x00\xff binary"]
    batched = make_reward("reward_model", path=str(tiny_rm), batch_size=3)(prompts, completions)
    single = make_reward("reward_model", path=str(tiny_rm), batch_size=1)(prompts, completions)
    tokenizer = AutoTokenizer.from_pretrained(tiny_rm)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_rm).eval()
    expected = []
    for prompt, completion in zip(prompts, completions, strict=True):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}], tokenize=False
        )
        with torch.no_grad():
            expected.append(model(**tokenizer(text, return_tensors="pt")).logits[0, 0].item())
    assert batched.scores == pytest.approx(expected, abs=1e-4)
    assert single.scores == pytest.approx(expected, abs=1e-4)
    assert len(set(batched.scores)) == 3


def test_sigmoid_squashes_the_reward_models_logit_into_0_1(tiny_rm: Path) -> None:
    import math

    prompts, completions = ["Say hi", "x"], ["hello", "\x00 no"]
    raw = make_reward("reward_model", path=str(tiny_rm))(prompts, completions).scores
    squashed = make_reward("reward_model", path=str(tiny_rm), sigmoid=True)(prompts, completions).scores
    assert squashed == pytest.approx([1 / (1 + math.exp(-r)) for r in raw], abs=1e-9)
    with pytest.raises(ValueError, match="normalize or sigmoid"):
        make_reward("reward_model", path=str(tiny_rm), sigmoid=True, normalize=True)


def test_a_gate_over_components_that_can_score_below_its_closed_0_is_refused() -> None:
    """A passing sample with a negative raw logit would earn less than a failing one (0)."""
    from posttrain.rewards.bounds import gate_error
    from posttrain.rewards.config import RewardsConfig, RewardSpec

    def rewards(**kwargs):
        return RewardsConfig(components=[RewardSpec("reward_model", kwargs=kwargs)], gate=RewardSpec("ifeval"))

    assert "can score as low as -inf" in gate_error(rewards(path="rm"))
    assert gate_error(rewards(path="rm", sigmoid=True)) is None
    assert gate_error(RewardsConfig(components=[RewardSpec("reward_model", kwargs={"path": "rm"})])) is None  # no gate
    shifted = RewardsConfig(components=[RewardSpec("ifeval", weight=-1.0)], gate=RewardSpec("ifeval"))
    assert "as low as -1" in gate_error(shifted)


def test_reward_model_rejects_multi_label_checkpoints(tiny_rm: Path, tmp_path: Path) -> None:
    config = LlamaConfig.from_pretrained(tiny_rm)
    config.num_labels = 2
    LlamaForSequenceClassification(config).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_rm).save_pretrained(tmp_path)
    with pytest.raises(UserError, match="num_labels=2"):
        make_reward("reward_model", path=str(tmp_path))
    with pytest.raises(UserError):
        make_reward("reward_model", path=str(tmp_path / "missing"))


def test_behavioural_gate_with_a_real_reward_model(tiny_rm: Path) -> None:
    rm = make_reward("reward_model", path=str(tiny_rm))
    completions = ["all lowercase", "Has Capitals"]
    gated = make_reward("gated", reward=rm, gate={"name": "ifeval"})(
        ["", ""], completions, constraints=[{"type": "lowercase"}]
    )
    assert gated.scores == [rm([""], completions[:1]).scores[0], 0.0]


class _Server:
    """A real OpenAI-compatible endpoint on 127.0.0.1 whose replies come from `answer(content) -> (code, body)`."""

    def __init__(self, answer: Callable[[str], tuple[int, str]]) -> None:
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                code, reply = answer(body["messages"][-1]["content"])
                payload = (
                    reply
                    if code != 200 or reply.startswith("RAW:")
                    else json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]})
                )
                data = payload.removeprefix("RAW:").encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[str], tuple[int, str]]], _Server]]:
    servers: list[_Server] = []

    def start(answer: Callable[[str], tuple[int, str]]) -> _Server:
        servers.append(_Server(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _rate(content: str) -> tuple[int, str]:
    response = content.split("[Response]\n", 1)[1]
    if response.startswith("GOOD"):
        return 200, "Clear and correct.\nScore: 9"
    if response.startswith("BAD"):
        return 200, "Unhelpful. [[2]]"
    return 200, "I cannot decide."


def test_pointwise_judge_over_http(serve: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUDGE_KEY", "k-123")
    server = serve(_rate)
    judge = make_reward("judge", base_url=server.url + "/v1", api_key_env="JUDGE_KEY", rubric="Be strict.")
    out = judge(["q1", "q2", "q3"], ["GOOD answer", "BAD answer", "WEIRD"])
    assert out.scores == pytest.approx([8 / 9, 1 / 9, 0.0])
    assert out.metrics["judge/failures"] == 1.0 and out.metrics["judge/rating"] == pytest.approx(5.5)
    assert {r["path"] for r in server.requests} == {"/v1/chat/completions"}
    assert {r["auth"] for r in server.requests} == {"Bearer k-123"}
    assert all("Be strict." in r["body"]["messages"][0]["content"] for r in server.requests)


def test_http_backend_retries_server_errors_but_not_client_errors(serve: Callable) -> None:
    calls = {"n": 0}

    def flaky(content: str) -> tuple[int, str]:
        calls["n"] += 1
        return (503, "busy") if calls["n"] <= 2 else (200, "Score: 7")

    server = serve(flaky)
    assert HttpBackend(server.url, retries=3, backoff_s=0.01).complete([{"role": "user", "content": "x"}]) == "Score: 7"
    assert calls["n"] == 3
    rejecting = serve(lambda content: (400, "bad request"))
    with pytest.raises(JudgeError, match="HTTP 400"):
        HttpBackend(rejecting.url, retries=3, backoff_s=0.01).complete([{"role": "user", "content": "x"}])
    assert len(rejecting.requests) == 1


def _free_port() -> int:
    """A port nothing listens on: bound by the OS, then released (nothing in this test binds it again)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_http_backend_times_out_and_survives_malformed_replies(serve: Callable) -> None:
    slow = serve(lambda content: (time.sleep(1.0), (200, "Score: 5"))[1])
    with pytest.raises(JudgeError, match="timed out"):
        HttpBackend(slow.url, timeout_s=0.2, retries=1, backoff_s=0.01).complete([{"role": "user", "content": "x"}])
    garbled = serve(lambda content: (200, 'RAW:{"choices": []}'))
    judge = PointwiseJudge(HttpBackend(garbled.url, retries=0), failure_score=-1.0)
    assert judge(["q"], ["a"]).scores == [-1.0]
    unreachable = PointwiseJudge(HttpBackend(f"http://127.0.0.1:{_free_port()}", retries=0, timeout_s=1))
    assert unreachable(["q"], ["a"]).metrics["judge/failures"] == 1.0


def test_failed_samples_score_zero_are_logged_and_counted_and_never_raise(
    serve: Callable, caplog: pytest.LogCaptureFixture
) -> None:
    def reply(content: str) -> tuple[int, str]:
        response = content.split("[Response]\n", 1)[1]
        if response.startswith("SLOW"):
            time.sleep(1.0)
        if response.startswith("BROKEN"):
            return 500, "internal error"
        if response.startswith("GARBAGE"):
            return 200, "I would rather not say."
        if response.startswith("BADJSON"):
            return 200, "RAW:not json at all"
        return 200, "Score: 10"

    server = serve(reply)
    judge = PointwiseJudge(HttpBackend(server.url, timeout_s=0.3, retries=0), max_concurrency=4)
    with caplog.at_level(logging.WARNING, logger="posttrain.rewards.judge"):
        out = judge(["q"] * 5, ["GOOD", "SLOW", "BROKEN", "GARBAGE", "BADJSON"])
    assert out.scores == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert out.metrics["judge/failures"] == 4.0 and out.metrics["judge/rating"] == 10.0
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 4
    assert {w.split(",")[0] for w in warnings} == {f"judge failed on sample {i}" for i in (1, 2, 3, 4)}
    assert any("timed out" in w for w in warnings) and any("HTTP 500" in w for w in warnings)
    assert any("I would rather not say." in w for w in warnings) and any("malformed reply" in w for w in warnings)


def test_pairwise_sample_with_an_unjudged_order_is_a_failure(serve: Callable) -> None:
    def prefer(content: str) -> tuple[int, str]:
        first = content.split("[Response A]\n", 1)[1]
        if first.startswith("ODD"):
            return 200, "Both are fine, really."  # no verdict, only when the completion is in slot A
        return 200, "Preferred: B"

    judge = PairwiseJudge(HttpBackend(make_url(serve(prefer))), reference_column="ref")
    out = judge(["q", "q"], ["ODD answer", "plain answer"], ref=["reference", "reference"])
    assert out.scores == [0.0, 0.5]  # sample 0: one order unjudged; sample 1: always slot B, so 0 + 1 averaged
    assert out.metrics["judge/failures"] == 1.0 and out.metrics["pairwise/win_rate"] == 0.5


def make_url(server: _Server) -> str:
    return server.url + "/v1"


def test_check_refuses_an_unreachable_or_incompatible_endpoint_before_any_work(serve: Callable) -> None:
    with pytest.raises(UserError, match="unreachable") as error:
        make_reward("judge", base_url=f"http://127.0.0.1:{_free_port()}", timeout_s=2).check()
    assert "\n" not in str(error.value)
    not_found = serve(lambda content: (404, "no such route"))
    with pytest.raises(UserError, match="HTTP 404"):
        make_reward("pairwise_judge", base_url=not_found.url).check()
    assert len(not_found.requests) == 1  # the probe does not retry
    healthy = serve(lambda content: (200, "OK"))
    make_reward("judge", base_url=healthy.url).check()
    assert healthy.requests[0]["body"]["max_tokens"] == 1
    nested = make_reward(
        "gated",
        reward={"name": "judge", "kwargs": {"base_url": f"http://127.0.0.1:{_free_port()}", "timeout_s": 2}},
        gate={"name": "ifeval"},
    )
    with pytest.raises(UserError, match="unreachable"):
        check_ready(nested)
    with pytest.raises(UserError, match="must start with http"):
        make_reward("judge", base_url="localhost:8000")
    with pytest.raises(UserError, match="'http' or 'hf'"):
        make_reward("judge", backend="grpc")


def test_a_constitution_is_sent_as_numbered_principles(serve: Callable) -> None:
    server = serve(lambda content: (200, "[[8]]"))
    judge = make_reward("judge", base_url=server.url, rubric=["Be honest.", "Be brief."])
    assert judge(["q"], ["a"]).scores == [pytest.approx(7 / 9)]
    sent = server.requests[0]["body"]["messages"][0]["content"]
    assert sent.startswith("Judge the response against these principles:\n1. Be honest.\n2. Be brief.\n")


def test_pairwise_judge_cancels_position_bias(serve: Callable) -> None:
    def prefer(content: str) -> tuple[int, str]:
        a = content.split("[Response A]\n", 1)[1].split("[Response B]", 1)[0]
        b = content.split("[Response B]\n", 1)[1]
        if "GOOD" in a:
            return 200, "Preferred: A"
        if "GOOD" in b:
            return 200, "Response B is better"
        return 200, "[[B]]"  # a judge that always favours the second slot when it cannot tell

    server = serve(prefer)
    judge = PairwiseJudge(HttpBackend(server.url), reference_column="reference")
    out = judge(["q", "q"], ["GOOD one", "so-so"], reference=["plain", "plain"])
    assert out.scores == [1.0, 0.5]
    assert len(server.requests) == 4
    unswapped = PairwiseJudge(HttpBackend(server.url), swap=False)(["q"], ["so-so"], reference="plain")
    assert unswapped.scores == [0.0]


def scripted_llama(directory: Path, reply: str) -> Path:
    """A real Llama checkpoint whose greedy reply to any chat prompt is `reply`.

    Attention and MLP outputs are zeroed, so the last hidden state is the current token's embedding (one-hot);
    the output head maps each token of `<|assistant|> reply <|im_end|>` to the next one: a bigram chain.
    """
    tokenizer = build_char_tokenizer()
    chain = ["<|assistant|>", *reply, tokenizer.eos_token]
    assert len(set(chain)) == len(chain), "a bigram chain needs distinct tokens"
    vocab, hidden = len(tokenizer), 128
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    ids = tokenizer.convert_tokens_to_ids(chain)
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(torch.eye(vocab, hidden))
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()
        for current, following in itertools.pairwise(ids):
            model.lm_head.weight[following, current] = 1.0
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_scripted_local_judge_scores_locally_and_behind_http_with_no_failures(serve: Callable, tmp_path: Path) -> None:
    backend = HFBackend(str(scripted_llama(tmp_path / "scorer", "Score: 7")), max_new_tokens=16)
    local = PointwiseJudge(backend)(["What is 2+2?", "Say hi"], ["4", ""])
    assert local.scores == [pytest.approx(6 / 9)] * 2
    assert local.metrics["judge/failures"] == 0.0 and local.metrics["judge/rating"] == 7.0
    server = serve(lambda content: (200, backend.complete([{"role": "user", "content": content}])))
    remote = PointwiseJudge(HttpBackend(server.url))(["What is 2+2?", "Say hi"], ["4", ""])
    assert remote.scores == local.scores and remote.metrics["judge/failures"] == 0.0
    assert len(server.requests) == 2


def test_a_judge_that_always_picks_the_first_slot_scores_one_half_when_both_orders_are_judged(tmp_path: Path) -> None:
    backend = HFBackend(str(scripted_llama(tmp_path / "first", "Pick A")), max_new_tokens=16)
    both = PairwiseJudge(backend)(["q", "r"], ["mine", "other"], reference=["ref", "ref"])
    assert both.scores == [0.5, 0.5] and both.metrics["judge/failures"] == 0.0
    one_order = PairwiseJudge(backend, swap=False)(["q"], ["mine"], reference="ref")
    assert one_order.scores == [1.0]
