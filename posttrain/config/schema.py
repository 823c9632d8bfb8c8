"""The typed schema every config is checked against.

Values live in configs/*.yaml; this file fixes which keys exist and their types, so that OmegaConf
rejects an unknown key or a wrong type before any work starts. `__post_init__` checks ranges, and runs
when the merged config is turned into these dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from posttrain.devices import resolve_device, resolve_kernels
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


@dataclass
class LoggingConfig:
    tensorboard: bool = False
    progress: str = "auto"

    def __post_init__(self) -> None:
        # YAML reads a bare on/off as a boolean, which OmegaConf hands over as "True"/"False".
        self.progress = {"true": "on", "false": "off"}.get(str(self.progress).lower(), str(self.progress).lower())
        require(self.progress in ("auto", "on", "off"), "logging.progress must be one of auto, on, off")


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
        resolve_kernels(self.kernels, self.device)  # an unusable kernels=triton fails here, before any work
        from posttrain.rollout.engine import ENGINES

        engine = ENGINES[self.rollout.engine]  # rollout.engine=vllm without vLLM or a GPU fails here too
        problem = engine.unavailable(resolve_device(self.device))
        require(problem is None, f"rollout.engine={self.rollout.engine} {problem}")
