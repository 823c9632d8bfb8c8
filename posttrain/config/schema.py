"""The typed schema every config is checked against.

Values live in configs/*.yaml; this file fixes which keys exist and their types, so that OmegaConf
rejects an unknown key or a wrong type before any work starts. `__post_init__` checks ranges, and runs
when the merged config is turned into these dataclasses.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

from posttrain.devices import check_kernels_name, resolve_kernels
from posttrain.envs.config import CurriculumConfig, EnvsConfig
from posttrain.errors import require
from posttrain.rewards.config import RewardsConfig
from posttrain.rl.config import ProblemsConfig, RLConfig, TTCConfig
from posttrain.rollout.config import RayConfig, RolloutConfig, RSAConfig
from posttrain.serve.config import ServeConfig


@dataclass
class RunConfig:
    root: str = "runs"
    dir: str = "${run.root}/${stage}"
    overwrite: bool = False


@dataclass
class LoraConfig:
    r: int = 0
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] | None = None

    def __post_init__(self) -> None:
        require(self.r >= 0, "model.lora.r must be >= 0 (0 disables LoRA)")
        require(0.0 <= self.dropout < 1.0, "model.lora.dropout must be in [0, 1)")


@dataclass
class ModelConfig:
    path: str | None = None
    dtype: str = "float32"
    lora: LoraConfig = field(default_factory=LoraConfig)

    def __post_init__(self) -> None:
        require(
            self.dtype in ("float32", "bfloat16", "float16"), "model.dtype must be one of float32, bfloat16, float16"
        )


@dataclass
class DataConfig:
    path: str | None = None
    tasks: list[str] = field(default_factory=lambda: ["add"])
    difficulties: list[int] = field(default_factory=lambda: [0, 1])
    num_train: int = 40000
    max_seq_len: int = 128
    aggregation_fraction: float = 0.0  # share of generated samples that are RSA aggregation prompts
    aggregation_candidates: int | None = None  # C tails per aggregation prompt; None: rsa.C, as RSA will use

    def __post_init__(self) -> None:
        require(self.num_train >= 1, "data.num_train must be >= 1")
        require(0.0 <= self.aggregation_fraction <= 1.0, "data.aggregation_fraction must be in [0, 1]")
        require(
            self.aggregation_candidates is None or self.aggregation_candidates >= 1,
            "data.aggregation_candidates must be >= 1 (or null for rsa.C)",
        )
        require(
            self.path is None or self.aggregation_fraction == 0,
            "data.aggregation_fraction needs generated data (data.path unset): its examples come from data.tasks",
        )
        require(bool(self.tasks), "data.tasks must name at least one env")
        require(bool(self.difficulties) and min(self.difficulties) >= 0, "data.difficulties must be >= 0")
        require(self.max_seq_len >= 8, "data.max_seq_len must be >= 8")


@dataclass
class TrainerConfig:
    max_steps: int = 600
    batch_size: int = 64
    grad_accum: int = 1
    lr: float = 3e-3
    lr_scheduler: str = "cosine"
    warmup_steps: int = 20
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    save_every: int = 100
    keep_checkpoints: int = 2
    router_balancing: bool = True  # ZAYA only, Trainer-driven stages (SFT); RL stages use rl.router_balancing
    router_balancing_lr: float = 1e-3
    # Trainer-driven stages (sft, rm): recompute activations in the backward pass. TRL turns it on by default,
    # which saves memory on big models; off, a 60-step zaya-tiny stage=rm run took 66 s instead of 91 s.
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        require(self.max_steps >= 1, "trainer.max_steps must be >= 1")
        require(self.router_balancing_lr >= 0, "trainer.router_balancing_lr must be >= 0")
        require(self.batch_size >= 1, "trainer.batch_size must be >= 1")
        require(self.grad_accum >= 1, "trainer.grad_accum must be >= 1")
        require(self.lr > 0, "trainer.lr must be > 0")
        require(self.save_every >= 1, "trainer.save_every must be >= 1")
        require(self.keep_checkpoints >= 1, "trainer.keep_checkpoints must be >= 1")
        schedulers = ("constant", "linear", "cosine")
        require(self.lr_scheduler in schedulers, f"trainer.lr_scheduler must be one of {', '.join(schedulers)}")


# Experiment trackers `logging.report_to` takes (TRL's names): the module each needs and how to install it.
# trackio is not in the `trackers` extra: its releases pin pillow below the version matplotlib's stack uses here.
TRACKER_MODULES = {
    "tensorboard": ("tensorboard", "pip install tensorboard"),
    "wandb": ("wandb", "pip install 'posttrain[trackers]'"),
    "mlflow": ("mlflow", "pip install 'posttrain[trackers]'"),
    "trackio": ("trackio", "pip install trackio"),
}


@dataclass
class LoggingConfig:
    report_to: Any = field(default_factory=list)  # a list of TRACKER_MODULES names, one name, or none
    tensorboard: bool = False  # alias: adds tensorboard to report_to
    progress: str = "auto"

    def __post_init__(self) -> None:
        self.report_to = _tracker_names(self.report_to)
        if self.tensorboard and "tensorboard" not in self.report_to:
            self.report_to.append("tensorboard")
        # YAML reads a bare on/off as a boolean, which OmegaConf hands over as "True"/"False".
        self.progress = {"true": "on", "false": "off"}.get(str(self.progress).lower(), str(self.progress).lower())
        require(self.progress in ("auto", "on", "off"), "logging.progress must be one of auto, on, off")


def _tracker_names(value: Any) -> list[str]:
    """`report_to` as a list of known tracker names whose packages are installed (checked before any work)."""
    names = [value] if isinstance(value, str) else list(value or [])
    names = [str(n).lower() for n in names if str(n).lower() != "none"]
    for name in names:
        require(
            name in TRACKER_MODULES,
            f"logging.report_to: unknown tracker {name!r}; choose from {', '.join(TRACKER_MODULES)}",
        )
        module, install = TRACKER_MODULES[name]
        require(
            importlib.util.find_spec(module) is not None,
            f"logging.report_to={name} needs the {module!r} package, which is not installed: {install}",
        )
    return list(dict.fromkeys(names))


@dataclass
class EvalConfig:
    difficulty: int = 1
    num_samples: int = 200  # held-out prompts per env
    max_new_tokens: int = 16
    batch_size: int = 100
    temperature: float = 0.0  # posttrain eval: 0 = greedy; > 0 = pass@1, the mean over `samples` answers per prompt
    samples: int = 1
    # RL stages' before/after report: pass@1 and pass@k at every temperature of the sweep (greedy and the
    # sampling temperature are always added), `pass_k` samples per prompt
    temperatures: list[float] = field(default_factory=lambda: [0.3, 0.5, 0.7, 1.0])
    pass_k: int = 8

    def __post_init__(self) -> None:
        require(self.temperature >= 0, "eval.temperature must be >= 0 (0 is greedy)")
        require(self.samples >= 1, "eval.samples must be >= 1")
        require(self.temperature > 0 or self.samples == 1, "eval.samples > 1 needs eval.temperature > 0")
        require(self.num_samples >= 0, "eval.num_samples must be >= 0")
        require(self.max_new_tokens >= 1, "eval.max_new_tokens must be >= 1")
        require(self.batch_size >= 1, "eval.batch_size must be >= 1")
        require(all(t >= 0 for t in self.temperatures), "eval.temperatures must be >= 0")
        require(self.pass_k >= 1, "eval.pass_k must be >= 1")


@dataclass
class Config:
    stage: str = "sft"
    seed: int = 0
    resume: str = "false"
    device: str = "auto"
    plugins: list[str] = field(default_factory=list)  # modules or .py files imported first (their registrations)
    kernels: str = "auto"  # auto | triton | torch (docs/kernels.md)
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    envs: EnvsConfig = field(default_factory=EnvsConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    rewards: RewardsConfig = field(default_factory=RewardsConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    rsa: RSAConfig = field(default_factory=RSAConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    problems: ProblemsConfig = field(default_factory=ProblemsConfig)
    ttc: TTCConfig = field(default_factory=TTCConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)

    def __post_init__(self) -> None:
        require(self.device in ("auto", "cpu", "cuda"), "device must be one of auto, cpu, cuda")
        check_kernels_name(self.kernels)
        if self.kernels == "triton":  # an unusable kernels=triton fails here, before any work (auto cannot fail)
            resolve_kernels(self.kernels, self.device)
