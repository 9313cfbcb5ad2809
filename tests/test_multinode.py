"""Multi-node training: two torchrun "nodes" on this machine (a c10d rendezvous on 127.0.0.1, one process
each) compute the same first-step loss and gradients as one process on the whole global batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import assert_same_first_step

SCRIPT = Path(__file__).with_name("toy_training.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_nodes(nodes: int, script_args: list[str]) -> list[subprocess.CompletedProcess]:
    """``nodes`` torchrun agents, as on ``nodes`` machines: same rendezvous endpoint and id, one process each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    endpoint = f"127.0.0.1:{free_port()}"
    command = [
        sys.executable, "-m", "torch.distributed.run",
        f"--nnodes={nodes}", "--nproc-per-node=1",
        "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}", "--rdzv-id=cmadapter-test",
        str(SCRIPT), *script_args,
    ]  # fmt: skip
    agents = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(nodes)
    ]
    results = []
    for agent in agents:
        out, _ = agent.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(command, agent.returncode, out, ""))
    return results


@pytest.mark.slow
def test_two_nodes_match_one_process_on_the_global_batch(tiny_weights, toy_runs, tmp_path):
    (tmp_path / "one").symlink_to(toy_runs("grads"))  # one process's first step, made once (test_train too)
    (tmp_path / "nodes").mkdir()
    for node in launch_nodes(2, ["grads", "--weights", str(tiny_weights), "--out", str(tmp_path / "nodes")]):
        assert node.returncode == 0, node.stdout[-3000:]
    assert_same_first_step(tmp_path / "one" / "grads.pt", tmp_path / "nodes" / "grads.pt", world_size=2)
