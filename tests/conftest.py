"""Fixtures shared by the tests; shared plain helpers live in helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import tiny_state_dict


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` are skipped, with the reason, where torch sees no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


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
