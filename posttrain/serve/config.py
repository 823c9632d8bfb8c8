"""The `serve` config section, mounted in posttrain.config.schema; laptop sizes in configs/commands/serve.yaml."""

from __future__ import annotations

from dataclasses import dataclass

from posttrain.errors import require


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000  # 0 lets the system pick a free port; the chosen one is printed when the server is ready
    model_name: str | None = None  # the id in /v1/models, which requests must name; None = model.path
    num_workers: int = 1  # 1: one engine in this process; > 1: that many Ray rollout workers
    batch_window_ms: float = 5.0  # how long the oldest queued request waits for others to share its batch
    max_batch_size: int = 32  # requests per engine call
    max_concurrent_requests: int = 256  # admitted at once; more get HTTP 429 until a slot frees
    default_max_tokens: int = 256  # when a request gives no max_tokens (capped by what the context has left)
    max_rsa_chains: int = 64  # largest N a request may ask for
    rsa: bool = False  # run Markovian RSA (the rsa section) for chat requests that do not say otherwise
    drain_timeout_s: float = 60.0  # on SIGTERM, how long in-flight requests may take to finish

    def __post_init__(self) -> None:
        require(0 <= self.port <= 65535, f"serve.port must be in [0, 65535], got {self.port}")
        require(self.model_name is None or bool(self.model_name.strip()), "serve.model_name must not be empty")
        require(self.num_workers >= 1, "serve.num_workers must be >= 1")
        require(self.batch_window_ms >= 0, "serve.batch_window_ms must be >= 0")
        require(self.max_batch_size >= 1, "serve.max_batch_size must be >= 1")
        require(self.max_concurrent_requests >= 1, "serve.max_concurrent_requests must be >= 1")
        require(self.default_max_tokens >= 1, "serve.default_max_tokens must be >= 1")
        require(self.max_rsa_chains >= 1, "serve.max_rsa_chains must be >= 1")
        require(self.drain_timeout_s > 0, "serve.drain_timeout_s must be > 0")
