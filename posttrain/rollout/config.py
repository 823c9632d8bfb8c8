"""Config sections of the rollout fleet (`ray`, `rollout`, `rsa`), mounted in posttrain.config.schema.

Range checks run in `__post_init__`, so an impossible combination (C > N, τ > β, β < 1) fails with one
line before Ray starts or a model loads. Paper defaults and Zyphra's public proxy defaults are listed in
docs/rollout.md; configs/commands/rsa.yaml shrinks them to what a laptop CPU runs in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from posttrain.errors import require

DEFAULT_AGGREGATION_TEMPLATE = (
    "{problem}\n\n"
    "Here are the closing parts of {count} earlier attempts at this problem. Any, all or none of them may "
    "be right, and they may be cut off. Compare them, keep the reasoning that holds up, repair what does "
    "not, and finish with one complete answer.\n\n"
    "{candidates}"
)
DEFAULT_CANDIDATE_TEMPLATE = "Attempt {index}:\n{tail}\n\n"
STRATEGIES = ("single", "markovian_rsa")
BACKENDS = ("ray", "local")
WEIGHT_SYNC_BACKENDS = ("object_store", "collective")
PLACEMENT_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


@dataclass
class RayConfig:
    address: str | None = None  # None: start a local Ray; "auto" or host:port: join that cluster
    num_cpus: int | None = None  # local Ray only; None = every core of this machine
    num_gpus: int | None = None  # local Ray only
    placement_strategy: str = "PACK"  # how worker bundles spread over nodes (STRICT_SPREAD: one per node)
    namespace: str = "posttrain"

    def __post_init__(self) -> None:
        require(self.num_cpus is None or self.num_cpus >= 1, "ray.num_cpus must be >= 1")
        require(self.num_gpus is None or self.num_gpus >= 0, "ray.num_gpus must be >= 0")
        require(
            self.placement_strategy in PLACEMENT_STRATEGIES,
            f"ray.placement_strategy must be one of {', '.join(PLACEMENT_STRATEGIES)}",
        )


@dataclass
class RolloutConfig:
    backend: str = "ray"  # ray: worker actors on a Ray cluster; local: one engine in the driver process
    num_workers: int = 1
    engine: str = "hf"
    strategy: str = "single"
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 disables top-k
    stop: list[str] = field(default_factory=list)
    batch_size: int = 16  # requests per engine call; also the unit of work a dead worker loses
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    resources_per_worker: dict[str, float] = field(default_factory=dict)  # custom Ray resources, e.g. a node tag
    weight_sync: str = "object_store"
    max_worker_restarts: int = 3  # per worker and per generate() call; a worker that keeps dying is a bug

    def __post_init__(self) -> None:
        require(self.backend in BACKENDS, f"rollout.backend must be one of {', '.join(BACKENDS)}")
        require(self.num_workers >= 1, "rollout.num_workers must be >= 1")
        require(self.backend == "ray" or self.num_workers == 1, "rollout.backend=local runs one engine: num_workers=1")
        require(self.strategy in STRATEGIES, f"rollout.strategy must be one of {', '.join(STRATEGIES)}")
        require(self.max_new_tokens >= 1, "rollout.max_new_tokens must be >= 1")
        require(self.temperature >= 0, "rollout.temperature must be >= 0 (0 is greedy)")
        require(0 < self.top_p <= 1, "rollout.top_p must be in (0, 1]")
        require(self.top_k >= 0, "rollout.top_k must be >= 0 (0 disables it)")
        require(all(self.stop), "rollout.stop must not contain empty strings")
        require(self.batch_size >= 1, "rollout.batch_size must be >= 1")
        require(self.cpus_per_worker > 0, "rollout.cpus_per_worker must be > 0")
        require(self.gpus_per_worker >= 0, "rollout.gpus_per_worker must be >= 0")
        require(
            self.weight_sync in WEIGHT_SYNC_BACKENDS,
            f"rollout.weight_sync must be one of {', '.join(WEIGHT_SYNC_BACKENDS)}",
        )
        require(self.max_worker_restarts >= 0, "rollout.max_worker_restarts must be >= 0")


@dataclass
class RSAConfig:
    """Markovian RSA: N chains, C tails per aggregation prompt, T aggregation rounds, β budget, τ tail."""

    N: int = 16
    C: int = 4
    T: int = 2
    beta: int = 4096  # new tokens per call (the thinking budget)
    tau: int = 2048  # tokens of each trace carried into the next round
    full_chain: bool = False  # carry each chain's whole history instead of its tail (unbounded; for comparison)
    aggregation_template: str = DEFAULT_AGGREGATION_TEMPLATE
    candidate_template: str = DEFAULT_CANDIDATE_TEMPLATE
    final_temperature: float = 0.6  # the last round, whose candidates are the answers
    final_top_p: float = 0.95  # earlier rounds sample with rollout.temperature / top_p / top_k
    final_top_k: int | None = None  # None: the earlier rounds' top-k; 0 disables top-k in the last round
    train_rounds: list[int] = field(default_factory=lambda: [0, 1])  # RL trains on these rounds (ZAYA1: 0 and 1)

    def __post_init__(self) -> None:
        require(self.N >= 1, f"rsa.N must be >= 1, got {self.N}")
        require(1 <= self.C <= self.N, f"rsa.C must be in [1, rsa.N={self.N}], got {self.C}")
        require(self.T >= 0, f"rsa.T must be >= 0, got {self.T}")
        require(self.beta >= 1, f"rsa.beta must be >= 1, got {self.beta}")
        require(1 <= self.tau <= self.beta, f"rsa.tau must be in [1, rsa.beta={self.beta}], got {self.tau}")
        for key in ("{problem}", "{candidates}"):
            require(key in self.aggregation_template, f"rsa.aggregation_template must contain {key}")
        require("{tail}" in self.candidate_template, "rsa.candidate_template must contain {tail}")
        require(self.final_temperature >= 0, "rsa.final_temperature must be >= 0 (0 is greedy)")
        require(0 < self.final_top_p <= 1, "rsa.final_top_p must be in (0, 1]")
        require(self.final_top_k is None or self.final_top_k >= 0, "rsa.final_top_k must be >= 0 (0 disables it)")
        require(all(t >= 0 for t in self.train_rounds), "rsa.train_rounds must be >= 0 (rounds past rsa.T are skipped)")
