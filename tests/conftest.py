"""Fixtures shared by the tests; shared plain helpers live in helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from helpers import tiny_state_dict

# Tiny tensors: a second thread costs more than it gives (test_training_learns_the_toy_task took 52 s of CPU with
# torch's two threads, 6 s with one, on a busy 2-core machine), and pytest-xdist runs one worker per core.
# Subprocesses (training scripts, torchrun, the demo's runs) inherit the setting.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's worker reads the groups
def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` are skipped, with the reason, where torch sees no CUDA device.

    Under pytest-xdist's ``--dist loadgroup`` (``make test``), the tests of a module that share one of its
    module-scoped fixtures (a trained run, an index, a server, a local Ray) go to one worker, which builds the
    fixture once, instead of each worker building its own.
    """
    if config.getoption("loadgroup", False):  # set in pytest-xdist's workers under --dist loadgroup
        for item in items:
            if uses_module_fixture(item):
                item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def uses_module_fixture(item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(d.scope == "module" for name in info.names_closure for d in info.name2fixturedefs.get(name, ()))


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A plain OpenAI-layout state dict of a tiny CLIP, as `torch.save` writes it."""
    path = tmp_path_factory.mktemp("weights") / "tiny-clip.pt"
    torch.save(tiny_state_dict(), path)
    return path


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (see tests/browser.py); skips with install instructions when it is missing."""
    from browser import launch_chromium

    with launch_chromium() as chromium:
        yield chromium


@pytest.fixture(scope="session")
def toy_runs(tmp_path_factory, tiny_weights):
    """Single-process runs of tests/toy_training.py that several tests compare against, each made once a session
    (per pytest-xdist worker): ``toy_runs("grads")``, ``toy_runs("train", "--save-every", "4")``; returns the
    run's folder (``grads.pt``, or ``toy/``)."""
    from toy_runs import run_script

    made: dict[tuple[str, ...], Path] = {}

    def get(*args: str) -> Path:
        if args not in made:
            out = tmp_path_factory.mktemp("toy-run")
            done = run_script(*args, "--weights", str(tiny_weights), "--out", str(out))
            assert done.returncode == 0, done.stderr[-3000:]
            made[args] = out
        return made[args]

    return get
