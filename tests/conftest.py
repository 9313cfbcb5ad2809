"""Fixtures shared by the tests; shared plain helpers live in helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import tiny_state_dict


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
