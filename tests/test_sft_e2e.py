"""End to end through the real CLI: train, export, reload, resume after SIGKILL, LoRA, other architectures."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from posttrain.answers import extract_answer
from posttrain.data import from_envs
from posttrain.metrics import read_metrics
from tests.conftest import run_cli, run_until_killed

pytestmark = pytest.mark.slow
SMALL = ["stage=sft", "data.num_train=600", "trainer.batch_size=16", "eval.num_samples=20", "logging.progress=off"]


def weights(final_dir):
    return load_file(str(final_dir / "model.safetensors"))


def test_sft_run_produces_a_loadable_final_model_metrics_plots_and_checkpoints(tmp_path):
    balanced = "trainer.router_balancing=true"
    result = run_cli("run", *SMALL, "trainer.max_steps=12", "trainer.save_every=4", balanced, f"run.root={tmp_path}")
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "sft"
    assert "held-out exact match" in result.stdout
    assert (run_dir / "config.yaml").is_file()
    steps = [r["step"] for r in read_metrics(run_dir / "metrics.jsonl")]
    assert steps == list(range(13))  # step 0 holds the data counts
    assert read_metrics(run_dir / "metrics.jsonl")[0]["data/kept"] == 600
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("step-*")) == ["step-12", "step-8"]
    assert (run_dir / "plots" / "loss.png").is_file() and (run_dir / "plots" / "router_load.png").is_file()
    rows = read_metrics(run_dir / "metrics.jsonl")[1:]
    assert all(0.0 < r["router/max_load"] <= 1.0 and "router/layer0/skip_frac" in r for r in rows)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 12 and 0.0 <= summary["heldout_exact_match"] <= 1.0

    model = AutoModelForCausalLM.from_pretrained(run_dir / "final")
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "final")
    assert type(model).__name__ == "ZayaForCausalLM"
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is 1+2?"}], add_generation_prompt=True)
    ids = tokenizer(prompt if isinstance(prompt, str) else tokenizer.decode(prompt), return_tensors="pt").input_ids
    # final/ holds every weight: the same architecture fed the raw safetensors gives the same logits
    # (a weight from_pretrained could not find would be freshly initialised, differently in each model).
    rebuilt = AutoModelForCausalLM.from_config(model.config)
    missing, unexpected = rebuilt.load_state_dict(weights(run_dir / "final"), strict=False)
    assert unexpected == [] and set(missing) <= ({"lm_head.weight"} if model.config.tie_word_embeddings else set())
    rebuilt.tie_weights()
    with torch.no_grad():  # float noise only: a freshly initialised weight would move logits by whole units
        torch.testing.assert_close(model.eval()(ids).logits, rebuilt.eval()(ids).logits, rtol=0, atol=1e-5)

    # ZAYA's routers were balanced after every step: the expert biases left their zero init.
    assert any(bool(b[:-1].abs().gt(0).any()) for name, b in weights(run_dir / "final").items() if "balancing" in name)

    # The held-out figure, recounted here with plain transformers `generate` (one left-padded greedy batch, as
    # the stage's engine runs it) and the answer tags compared as text.
    heldout = from_envs.heldout("add", 1, 20, 0)  # SMALL's task, eval difficulty, eval.num_samples and seed
    texts = [tokenizer.apply_chat_template(m[:-1], tokenize=False, add_generation_prompt=True) for m in heldout]
    tokenizer.padding_side = "left"
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=16, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    answers = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    hits = sum(extract_answer(a) is not None and extract_answer(a) == m[-1]["content"][8:-9] for a, m in zip(
        answers, heldout, strict=True))  # fmt: skip
    assert summary["heldout_exact_match"] == hits / 20

    # A second run into the same directory must not clobber it without consent ...
    again = run_cli("run", *SMALL, "trainer.max_steps=12", f"run.root={tmp_path}")
    assert again.returncode == 2 and "already holds a run" in again.stderr
    # ... and resuming a finished run says so and changes nothing.
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    resumed = run_cli("run", *SMALL, "trainer.max_steps=12", f"run.root={tmp_path}", "resume=auto")
    assert resumed.returncode == 0 and "already finished its 12 steps" in resumed.stdout, resumed.stderr
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == before


def test_resume_after_sigkill_is_bit_identical(tmp_path):
    common = [*SMALL, "trainer.max_steps=30", "trainer.save_every=5", "trainer.keep_checkpoints=3", "seed=3"]
    common.append("trainer.router_balancing=true")  # its Adam moments must survive the kill too
    reference = run_cli("run", *common, f"run.root={tmp_path / 'straight'}")
    assert reference.returncode == 0, reference.stderr

    interrupted_root = tmp_path / "killed"
    step_10 = interrupted_root / "sft" / "checkpoints" / "step-10"
    run_until_killed("run", *common, f"run.root={interrupted_root}", when=step_10)
    assert not (interrupted_root / "sft" / "final").exists()

    resumed = run_cli("run", *common, f"run.root={interrupted_root}", "resume=auto")
    assert resumed.returncode == 0, resumed.stderr
    straight, killed = weights(tmp_path / "straight" / "sft" / "final"), weights(interrupted_root / "sft" / "final")
    assert straight.keys() == killed.keys()
    for name in straight:
        assert torch.equal(straight[name], killed[name]), name
    steps = [r["step"] for r in read_metrics(interrupted_root / "sft" / "metrics.jsonl")]
    assert steps == list(range(31))
    losses = {r["step"]: r.get("loss") for r in read_metrics(tmp_path / "straight" / "sft" / "metrics.jsonl")}
    resumed_losses = {r["step"]: r.get("loss") for r in read_metrics(interrupted_root / "sft" / "metrics.jsonl")}
    assert losses == resumed_losses


def test_router_balancing_off_leaves_the_biases_at_their_init(tmp_path):
    result = run_cli("run", *SMALL, "trainer.max_steps=3", f"run.root={tmp_path}")  # the sft stage's default
    assert result.returncode == 0, result.stderr
    biases = [b for name, b in weights(tmp_path / "sft" / "final").items() if "balancing" in name]
    assert biases and all(torch.equal(b[:-1], torch.zeros_like(b[:-1])) for b in biases)
    assert "router/max_load" not in read_metrics(tmp_path / "sft" / "metrics.jsonl")[-1]


def test_lora_run_exports_a_merged_plain_model(tmp_path):
    result = run_cli("run", *SMALL, "trainer.max_steps=6", "model.lora.r=4", f"run.root={tmp_path}")
    assert result.returncode == 0, result.stderr
    final = tmp_path / "sft" / "final"
    tensors = weights(final)
    assert not any("lora" in name for name in tensors)
    assert not (final / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(final)
    from posttrain.models import load_model

    base, _ = load_model("zaya-tiny", seed=0)
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, base.state_dict()[n])]
    assert changed and all("self_attn" in n for n in changed)  # only LoRA-targeted matrices moved


def test_tiny_llama_and_a_checkpoint_directory_as_model_path(tmp_path):
    first = run_cli("run", *SMALL, "trainer.max_steps=4", "model.path=llama-tiny", f"run.root={tmp_path / 'a'}")
    assert first.returncode == 0, first.stderr
    final = tmp_path / "a" / "sft" / "final"
    assert json.loads((final / "config.json").read_text())["model_type"] == "llama"
    second = run_cli("run", *SMALL, "trainer.max_steps=4", f"model.path={final}", f"run.root={tmp_path / 'b'}")
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "b" / "sft" / "final" / "model.safetensors").is_file()
