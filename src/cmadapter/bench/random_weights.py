"""One random draw of an open_clip backbone, saved as a weights file: every index a benchmark builds, and every
server it starts, then loads the same model (each build from a bare ``--backbone`` name would draw its own)."""

from __future__ import annotations

from pathlib import Path


def save_random_weights(backbone: str, path: str | Path, seed: int = 0) -> Path:
    import open_clip
    import torch

    torch.manual_seed(seed)
    model = open_clip.create_model(backbone, pretrained=None, precision="fp32")
    torch.save(model.state_dict(), path)
    return Path(path)
