"""`posttrain serve`: an OpenAI-compatible server for a preset or checkpoint, with Markovian RSA per request.

    posttrain serve model.path=runs/sft/final [serve.port=8000 serve.num_workers=2 ...]

Config, model path and port are checked before the model loads; the server prints one line with its URL
once it accepts connections (with serve.port=0 that line names the port the system chose).
"""

from __future__ import annotations

import argparse
from typing import Any

from posttrain.cli import add_override_command
from posttrain.errors import UserError

EXAMPLES = """\
examples:
  posttrain serve                                          # zaya-tiny on http://127.0.0.1:8000/v1
  posttrain serve model.path=runs/sft/final serve.port=8080
  posttrain serve model.path=runs/rlve/final serve.num_workers=2   # two Ray rollout workers
  posttrain serve serve.rsa=true rsa.N=8 rsa.T=3           # Markovian RSA on every chat request
  posttrain serve serve.port=0                             # any free port (printed)
"""


def register(subparsers: Any) -> None:
    add_override_command(
        subparsers,
        "serve",
        serve_command,
        help="OpenAI-compatible server with Markovian RSA: posttrain serve model.path=... [key=value ...]",
        description=(
            "Serve a preset or checkpoint over an OpenAI-compatible HTTP API (/v1/models, /v1/chat/completions, "
            "/v1/completions, /tokenize, /detokenize, /health). Keys: model.path, serve.*, rsa.*, rollout.*, ray.*."
        ),
        epilog=EXAMPLES,
    )


def serve_command(args: argparse.Namespace) -> int:
    from posttrain.config import compose, to_object
    from posttrain.models import check_model_path, load_tokenizer
    from posttrain.rollout.cli import context_limit
    from posttrain.rollout.engine import check_engine
    from posttrain.serve.server import bind, build_runner, run

    cfg = to_object(compose("serve", args.overrides, layer_files=["commands/serve.yaml"]))
    if cfg.model.path is None:
        raise UserError("model.path is required (a preset such as zaya-tiny, or an HF checkpoint directory)")
    check_model_path(cfg.model.path)
    check_engine(cfg.rollout.engine, cfg.device)
    sock = bind(cfg.serve.host, cfg.serve.port)
    try:
        tokenizer = load_tokenizer(cfg.model.path)
        limit = context_limit(cfg.model.path, tokenizer)
        runner = build_runner(cfg)
        try:
            from posttrain.serve.app import build_app
            from posttrain.serve.state import ServerState

            name = cfg.serve.model_name or cfg.model.path
            app = build_app(ServerState(cfg, name, tokenizer, limit, runner))
            host, port = sock.getsockname()[:2]
            url = f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"
            run(app, sock, announce=f"posttrain serve: {name} on {url}", drain_timeout_s=cfg.serve.drain_timeout_s)
        finally:
            if hasattr(runner, "shutdown"):
                runner.shutdown()
    finally:
        sock.close()
    return 0
