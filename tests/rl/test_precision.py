"""rl.precision=bf16: the fp32 islands hold under autocast (checked on CPU, whose autocast has bf16 matmuls too),
and bf16 is refused where no GPU runs it."""

from __future__ import annotations

import pytest
import torch

from posttrain.errors import UserError
from posttrain.models import load_model
from posttrain.rl.config import RLConfig
from posttrain.rl.learner import Learner
from posttrain.rl.logprobs import token_logprobs
from posttrain.rl.precision import check_precision, use_bf16_autocast

FP32_MODULES = ("ZayaRMSNorm", "ZayaResidualScaling", "ZayaRouter")


def output_dtypes(model, run) -> dict[str, set[torch.dtype]]:
    """Module class (and 'q_proj', 'out_proj', 'lm_head' by name) -> dtypes of the float tensors it returned."""
    seen: dict[str, set[torch.dtype]] = {}
    names = {"q_proj", "out_proj", "lm_head"}

    def record(key):
        def hook(_module, _inputs, output):
            outputs = output if isinstance(output, tuple) else (output,)
            seen.setdefault(key, set()).update(t.dtype for t in outputs if torch.is_tensor(t) and t.is_floating_point())

        return hook

    handles = []
    for name, module in model.named_modules():
        short = name.rsplit(".", 1)[-1]
        key = type(module).__name__ if type(module).__name__ in FP32_MODULES else short if short in names else None
        if key is not None:
            handles.append(module.register_forward_hook(record(key)))
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return seen


def ids_and_mask():
    ids = torch.randint(7, 60, (2, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    return ids, mask


def test_bf16_autocast_keeps_router_head_norms_and_residuals_in_fp32():
    model, _ = load_model("zaya-tiny", seed=0)
    ids, mask = ids_and_mask()
    with torch.no_grad():
        reference, _ = token_logprobs(model, ids, mask)

    def forward_backward():
        logps, _ = token_logprobs(model, ids, mask, chunk_size=4)
        logps[:, 1:].sum().backward()
        return logps

    restore = use_bf16_autocast(model, "cpu")
    result = {}
    seen = output_dtypes(model, lambda: result.setdefault("logps", forward_backward()))
    assert seen["q_proj"] == {torch.bfloat16}  # autocast is on in the decoder
    for island in (*FP32_MODULES, "out_proj", "lm_head"):  # out_proj: the router's logits
        assert seen[island] == {torch.float32}, island
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
    close = mask.bool()
    close[:, 0] = False
    assert (result["logps"].detach() - reference)[close].abs().max() < 0.1  # bf16 matmuls, same model

    restore()
    assert output_dtypes(model, lambda: token_logprobs(model, ids, mask))["q_proj"] == {torch.float32}


def test_plain_autocast_without_the_islands_computes_router_and_head_in_bf16():
    """What the islands change: autocast alone gives bf16 router logits and LM-head logits."""
    model, _ = load_model("zaya-tiny", seed=0)
    ids, mask = ids_and_mask()

    def forward():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            token_logprobs(model, ids, mask)

    seen = output_dtypes(model, forward)
    assert seen["out_proj"] == {torch.bfloat16} and seen["lm_head"] == {torch.bfloat16}


def test_bf16_needs_a_gpu():
    with pytest.raises(UserError, match=r"^rl.precision=bf16 needs a GPU, but device resolves to cpu"):
        check_precision("bf16", "cpu")
    check_precision("bf16", "cuda")
    check_precision("fp32", "cpu")
    with pytest.raises(UserError, match=r"rl\.precision must be one of fp32, bf16"):
        RLConfig(precision="fp16")
    model, _ = load_model("zaya-tiny", seed=0)
    with pytest.raises(UserError, match="needs a GPU"):
        Learner(model, RLConfig(precision="bf16"), device="cpu")


def test_bf16_on_a_cpu_is_one_line_and_exit_2_before_any_work(cli, tmp_path):
    result = cli("run", "stage=rlve", "rl.precision=bf16", "device=cpu", f"run.root={tmp_path / 'runs'}")
    assert result.returncode == 2
    expected = "error: rl.precision=bf16 needs a GPU, but device resolves to cpu; use rl.precision=fp32"
    assert result.stderr.strip() == expected
    assert not (tmp_path / "runs").exists()
