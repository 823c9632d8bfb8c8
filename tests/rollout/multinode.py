"""Two Ray nodes on this machine (`ray start`), two workers placed one per node by a custom resource.

Run as a script by test_multinode.py so that its cluster never meets the test session's local Ray.
Prints one JSON line with what it saw. Each `ray start --block` runs in its own process group and takes
its Ray processes down when that group is terminated, so nothing outlives the script (no `ray stop`,
which would also stop other people's clusters).

Ports: a node needs ~450 of them, named up front. They come from a block of 1000 below the kernel's
ephemeral range (a port probed free there could be taken as the source port of an outgoing connection
before the node binds it), chosen at random among the blocks no other run on this machine holds (a lock
file per block, held while the cluster lives) and whose ports are all free; a cluster that still fails to
come up is torn down and retried on another block.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

# `ray` through this interpreter: a venv whose packages come from another one has no `ray` script of its own
RAY = [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.exit(main())"]
SLOT = "rollout_slot"


SERVICES = (
    "node-manager-port",
    "object-manager-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "metrics-export-port",
    "runtime-env-agent-port",
)


def node_args(worker_ports: tuple[int, int], first_service_port: int) -> list[str]:
    # Two CPUs would fit both workers on one node; one `rollout_slot` per node is what spreads them.
    return [
        "--num-cpus=2",
        f"--resources={json.dumps({SLOT: 1})}",
        f"--min-worker-port={worker_ports[0]}",
        f"--max-worker-port={worker_ports[1]}",
        *(f"--{name}={first_service_port + i}" for i, name in enumerate(SERVICES)),
        "--node-ip-address=127.0.0.1",
        "--disable-usage-stats",
        "--block",
    ]


def start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    with log.open("w") as out:
        return subprocess.Popen(
            [*RAY, "start", *args], stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the node's process group, then SIGKILL whatever is left of it."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            time.sleep(1)
        except subprocess.TimeoutExpired:
            continue


def wait_for_nodes(address: str, count: int, timeout_s: float = 120) -> None:
    import ray

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sum(node["Alive"] for node in ray.nodes()) >= count:
            return
        time.sleep(0.5)
    raise TimeoutError(f"only {sum(n['Alive'] for n in ray.nodes())} of {count} nodes joined {address}")


BLOCK = 1000
FIRST_BLOCK_PORT = 10_000
ATTEMPTS = 3


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _all_free(first: int, count: int) -> bool:
    for port in range(first, first + count):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


@contextlib.contextmanager
def port_block() -> Iterator[int]:
    """The first port of a free block of BLOCK ports that this process holds until the block is closed."""
    starts = list(range(FIRST_BLOCK_PORT, _ephemeral_low() - BLOCK + 1, BLOCK))
    random.SystemRandom().shuffle(starts)
    for start in starts:
        lock = open(Path(tempfile.gettempdir()) / f"posttrain-ray-ports-{start}.lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        try:
            if _all_free(start, BLOCK - 100):
                yield start
                return
        finally:
            lock.close()  # releases the lock
    raise RuntimeError("no free block of ports below the ephemeral range")


def _start_nodes(temp: Path, first_port: int) -> tuple[list[subprocess.Popen], str] | None:
    """A head and a second node, each offering one SLOT, joined; None (all stopped) if they did not come up."""
    import ray

    # ports first_port .. first_port + 899: workers 400 per node, then each node's services, then the head's
    port = first_port + 850
    address = f"127.0.0.1:{port}"
    head_args = ["--head", f"--port={port}", f"--temp-dir={temp}", "--include-dashboard=false"]
    head_args += [f"--ray-client-server-port={port + 1}", *node_args((first_port, first_port + 399), first_port + 800)]
    temp.mkdir(parents=True)
    nodes = [start(head_args, temp / "head.log")]
    try:
        deadline = time.monotonic() + 120
        while not (temp / "session_latest").exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        second = [f"--address={address}", *node_args((first_port + 400, first_port + 799), first_port + 820)]
        nodes.append(start(second, temp / "second.log"))
        ray.init(address=address, include_dashboard=False, logging_level="WARNING")
        wait_for_nodes(address, 2)
        return nodes, address
    except Exception as exc:  # a port taken after all, a slow start: try another block
        print(f"cluster on ports {first_port}+ did not come up ({exc}); retrying", file=sys.stderr)
        ray.shutdown()
        for process in reversed(nodes):
            stop(process)
        return None


@contextlib.contextmanager
def two_node_cluster(prefix: str) -> Iterator[tuple[str, Path, dict]]:
    """A head and a second node on 127.0.0.1, each offering one SLOT; both stopped on exit.

    Yields (address, temp dir, result dict); on exit the dict gets "leftover": Ray processes still alive.
    """
    temp = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    result: dict = {}
    with contextlib.ExitStack() as ports:
        for attempt in range(ATTEMPTS):
            started = _start_nodes(temp / f"try{attempt}", ports.enter_context(port_block()))
            if started is not None:
                break
        else:
            raise RuntimeError(f"a two-node cluster did not come up in {ATTEMPTS} attempts (logs in {temp})")
        nodes, address = started
        try:
            yield address, temp, result
        finally:
            for process in reversed(nodes):
                stop(process)
    result["leftover"] = subprocess.run(["pgrep", "-f", str(temp)], capture_output=True, text=True).stdout.split()


def main() -> int:
    os.environ["RAY_AUTH_MODE"] = "disabled"
    import ray

    from posttrain.rollout.config import RayConfig, RolloutConfig
    from posttrain.rollout.fleet import RolloutFleet
    from posttrain.rollout.types import Request, SamplingParams

    with two_node_cluster("rmn") as (address, _, result):
        rollout = RolloutConfig(num_workers=2, batch_size=2, resources_per_worker={SLOT: 1})
        fleet = RolloutFleet("zaya-tiny", rollout, RayConfig(address=address, placement_strategy="PACK"), device="cpu")
        try:
            info = fleet.info()
            params = SamplingParams(max_new_tokens=4)
            requests = [
                Request(id=f"r{i}", messages=[{"role": "user", "content": f"{i}+1="}], params=params) for i in range(4)
            ]
            rollouts = fleet.generate(requests)
        finally:
            fleet.shutdown()
        ray.shutdown()
        result.update(
            nodes=sorted(w["node_id"] for w in info),
            request_ids=[r.request_id for r in rollouts],
            workers=sorted({r.worker_id for r in rollouts}),
            lengths=[len(r.completion_ids) for r in rollouts],
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
