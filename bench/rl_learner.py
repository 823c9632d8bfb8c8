"""Learner benchmarks: the log-prob pass at several chunk sizes, and one learner step on tiny models.

    .venv/bin/python bench/rl_learner.py logprobs [--vocab 32768 --batch 4 --length 1024 --chunks 256 1024 0]
    .venv/bin/python bench/rl_learner.py step [--preset zaya-tiny --batch 32 --prompt 32 --completion 96]

`logprobs` builds a llama-tiny with a large vocabulary (ZAYA1's is 262k) and runs forward + backward of the
completion log-probs, chunked (chunk > 0 tokens per LM-head chunk, each checkpointed) and naive (chunk 0 = full
[B, L, V] logits). It reports the median
wall time and the peak bytes of any single LM-head output, measured by a forward hook.
`step` times `Learner.step` (forward for old log-probs, then the updates) and reports trained tokens/s.
Each median is over `--runs` runs after one warm-up; one torch thread, like a 1-CPU learner.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def bench_logprobs(args: argparse.Namespace) -> list[dict]:
    from transformers import AutoConfig, AutoModelForCausalLM

    from posttrain.rl.logprobs import token_logprobs

    config = AutoConfig.for_model(
        "llama",
        vocab_size=args.vocab,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=args.length,
        tie_word_embeddings=True,
    )
    model = AutoModelForCausalLM.from_config(config)
    ids = torch.randint(0, args.vocab, (args.batch, args.length))
    attention = torch.ones_like(ids)
    peak = [0]
    model.get_output_embeddings().register_forward_hook(
        lambda m, i, out: peak.__setitem__(0, max(peak[0], out.numel() * out.element_size()))
    )
    rows = []
    for chunk in args.chunks:
        times = []
        for run in range(args.runs + 1):
            peak[0] = 0
            start = time.perf_counter()
            if chunk > 0:
                logps, _ = token_logprobs(model, ids, attention, chunk_size=chunk)
            else:
                logits = model(input_ids=ids, attention_mask=attention).logits.float()
                logps = torch.log_softmax(logits, -1)[:, :-1].gather(-1, ids[:, 1:, None])
            logps.sum().backward()
            model.zero_grad(set_to_none=True)
            if run:
                times.append(time.perf_counter() - start)
        rows.append({"chunk": chunk or "naive", "seconds": statistics.median(times), "peak_head_MiB": peak[0] / 2**20})
    return rows


def bench_step(args: argparse.Namespace) -> list[dict]:
    from posttrain.models import load_model
    from posttrain.rl.batch import TrainBatch
    from posttrain.rl.config import RLConfig
    from posttrain.rl.learner import Learner

    model, tokenizer = load_model(args.preset)
    gen = torch.Generator().manual_seed(0)
    vocab = len(tokenizer)
    prompts = [torch.randint(5, vocab, (args.prompt,), generator=gen).tolist() for _ in range(args.batch)]
    completions = [torch.randint(5, vocab, (args.completion,), generator=gen).tolist() for _ in range(args.batch)]
    rewards = [float(i % 2) for i in range(args.batch)]
    groups = [i // 4 for i in range(args.batch)]
    batch = TrainBatch.from_lists(
        prompts, completions, [[-3.0] * args.completion] * args.batch, rewards, groups, pad_token_id=0
    )
    learner = Learner(model, RLConfig(minibatches=args.minibatches), device="cpu")
    rows = []
    metrics = [learner.step(batch) for _ in range(args.runs + 1)][1:]
    rows.append(
        {
            "preset": args.preset,
            "batch": args.batch,
            "tokens": args.prompt + args.completion,
            "step_seconds": statistics.median(m["train_seconds"] for m in metrics),
            "train_tokens_per_s": statistics.median(m["train_tokens_per_s"] for m in metrics),
        }
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    lp = sub.add_parser("logprobs")
    lp.add_argument("--vocab", type=int, default=32768)
    lp.add_argument("--batch", type=int, default=4)
    lp.add_argument("--length", type=int, default=1024)
    lp.add_argument("--chunks", type=int, nargs="+", default=[256, 1024, 0])
    lp.add_argument("--runs", type=int, default=3)
    st = sub.add_parser("step")
    st.add_argument("--preset", default="zaya-tiny")
    st.add_argument("--batch", type=int, default=32)
    st.add_argument("--prompt", type=int, default=32)
    st.add_argument("--completion", type=int, default=96)
    st.add_argument("--minibatches", type=int, default=2)
    st.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = bench_logprobs(args) if args.command == "logprobs" else bench_step(args)
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
