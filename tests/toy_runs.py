"""Runs tests/toy_training.py in its own process, alone or under torchrun (test_train.py, conftest's toy_runs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("toy_training.py")


def run_script(*args: str, torchrun: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        if torchrun
        else [sys.executable]
    )
    return subprocess.run([*launcher, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=600)
