"""Fixtures shared by the tests; shared plain helpers live in helpers.py."""

from __future__ import annotations

import os
import warnings
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
    fixture once, instead of each worker building its own. pytest-xdist tags each grouped test's id with
    ``@group`` after this hook; `pytest_collection_finish` warns when it did not (pytest 9.2 with pytest-xdist 3.8).
    """
    if config.getoption("loadgroup", False):  # set in pytest-xdist's workers under --dist loadgroup
        for item in items:
            group = xdist_group_of(item)
            if group is not None:
                item.add_marker(pytest.mark.xdist_group(group))
    for item in items:  # what needs a trained demo or a browser is slow whatever its own body costs
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def pytest_collection_finish(session):
    if not session.config.getoption("loadgroup", False):
        return
    untagged = [i.nodeid for i in session.items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid]
    if untagged:
        warnings.warn(
            pytest.PytestWarning(
                f"pytest-xdist did not group {len(untagged)} tests (e.g. {untagged[0]}): their module fixtures are "
                "built on every worker. pytest 9.2 ignores the id pytest-xdist 3.8 sets; see pyproject.toml."
            ),
            stacklevel=1,
        )


# Fixtures that make every test using them slow (`make test-fast` leaves them out).
SLOW_FIXTURES = {"small_demo", "browser"}

# Session fixtures that are expensive and used by tests of several modules: their tests run on one worker.
SHARED_SESSION_FIXTURES = ("small_demo",)


def xdist_group_of(item) -> str | None:
    """The pytest-xdist group ``item`` belongs to: the shared session fixture it uses, else its module when it uses
    one of the module's module-scoped fixtures, else none (any worker)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    for name in SHARED_SESSION_FIXTURES:
        if name in info.names_closure:
            return name
    if any(d.scope == "module" for name in info.names_closure for d in info.name2fixturedefs.get(name, ())):
        return item.module.__name__
    return None


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


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory):
    """The demo at a reduced size, run once for test_demo and test_report: zero-shot and the Cross-Modal Adapter on
    60 training and 30 test videos, a second (stills) domain, the search index and the report. Returns the output
    folder and ``run_demo``'s results; tests only read it."""
    from cmadapter.demo.domains import StillsDomain
    from cmadapter.demo.images import ImageTaskConfig
    from cmadapter.demo.pretrain import PretrainConfig
    from cmadapter.demo.run import DemoSettings, run_demo
    from cmadapter.demo.synthetic import SyntheticConfig

    out = tmp_path_factory.mktemp("small-demo")
    settings = DemoSettings(
        synthetic=SyntheticConfig(num_train=60, num_test=30),
        pretrain=PretrainConfig.quick(steps=100),
        epochs=10,
    )
    stills = StillsDomain(images=ImageTaskConfig(num_train=64, num_test=12), epochs=2)
    methods = ("zero-shot", "cross-modal")
    results = run_demo(out, settings=settings, seed=0, methods=methods, domains=stills, progress=False)
    return out, results
