"""Two Ray nodes started with `ray start`, one rollout worker on each (multinode.py does the work)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import cli_env
from tests.rollout.multinode import BLOCK, FIRST_BLOCK_PORT, _ephemeral_low, port_block


def test_two_nodes_two_workers_generate_and_shut_down_cleanly():
    script = Path(__file__).with_name("multinode.py")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=540, env=cli_env())
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(set(result["nodes"])) == 2  # the per-node rollout_slot resource, not PACK, decided
    assert result["request_ids"] == ["r0", "r1", "r2", "r3"]
    assert result["workers"] == ["w0.0", "w1.0"]
    assert all(1 <= n <= 4 for n in result["lengths"])
    assert result["leftover"] == []  # no Ray process of that cluster outlived the script


def test_port_blocks_are_held_exclusively_below_the_ephemeral_range():
    low = _ephemeral_low()
    with port_block() as first, port_block() as second:
        assert first != second  # a block held by one run is never handed to another
        assert all(p >= FIRST_BLOCK_PORT and p + BLOCK <= low for p in (first, second))
        with socket.socket() as listener:  # the ports of a held block were free when it was taken
            listener.bind(("127.0.0.1", first + 850))
