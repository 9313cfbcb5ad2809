"""Folders of tiny videos, broken files and adapters for the search tests."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from cmadapter.model import build_model
from helpers import TINY, tiny_state_dict
from media import write_video


def video(path: Path, seconds: int, shift: int = 0, rate: int = 4) -> Path:
    """A ``seconds``-long video (``rate`` frames per second) whose greys start at ``shift``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = seconds * rate
    write_video(path, frames, rate=rate, size=(48, 32))
    if shift:  # different bytes and pictures: re-encode with the grey levels moved along
        from media import picture

        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
            for i in range(frames):
                frame = av.VideoFrame.from_ndarray(picture(i + shift, 48, 32, marker=True), format="rgb24")
                frame.pts, frame.time_base = i, Fraction(1, rate)
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
    return path


def audio_only(path: Path) -> Path:
    """A file with one audio stream and no video."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(10):
            samples = (0.1 * np.sin(np.arange(1024) / 10.0 + i)).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def adapter_file(weights: Path, path: Path, seed: int = 3) -> Path:
    """A cross-modal adapter on the backbone in ``weights``, moved off its initial values."""
    model = build_model(pretrained=str(weights), method="cross-modal", r=4, shared_dim=4)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.method.trainable_tensors().values():
            tensor.add_(0.05 * torch.randn(tensor.shape, generator=generator))
    model.save_adapter(path)
    return path


def other_backbone_adapter(folder: Path) -> Path:
    """An adapter trained on a different (wider) tiny backbone."""
    weights = folder / "other-clip.pt"
    torch.save(tiny_state_dict(replace(TINY, vision_width=96, text_width=96)), weights)
    return adapter_file(weights, folder / "other.safetensors")


def index_contents(root: Path) -> dict:
    """Everything an index stores, keyed by path (row ids may differ between two builds)."""
    db = sqlite3.connect(root / "index.sqlite")
    files = {r[0]: r[1:] for r in db.execute("SELECT path, kind, size, hash, frame_count, times, id FROM files")}
    path_of = {row[-1]: path for path, row in files.items()}
    segments = sorted(
        (path_of[r[0]], *r[1:]) for r in db.execute('SELECT file_id, first, stop, start, "end" FROM segments')
    )
    frames: dict[tuple[int, str], bytes] = {}
    for file_id, adapter, data in db.execute(
        "SELECT file_id, adapter, data FROM frames ORDER BY file_id, adapter, chunk"
    ):
        frames[file_id, adapter] = frames.get((file_id, adapter), b"") + data
    features = sorted(
        (path_of[r[0]], r[1], frames.get((r[0], r[1])), r[2])
        for r in db.execute("SELECT file_id, adapter, segments FROM features")
    )
    assert len(frames) == len(features), "frame chunks without stage-1 vectors, or the other way round"
    problems = sorted(db.execute("SELECT path, reason FROM problems"))
    db.close()
    return {
        "files": {p: row[:-1] for p, row in files.items()},
        "segments": segments,
        "features": features,
        "problems": problems,
    }


def count_encoded(monkeypatch) -> list[int]:
    """Frames decoded and encoded per file by index runs (a file comes back once, with every adapter it missed)."""
    from cmadapter.search import pipeline as pipeline_module  # build imports it when it has work

    calls = []
    real = pipeline_module.encode_works

    def counting(*args, **kwargs):
        for work, outcome in real(*args, **kwargs):
            if not isinstance(outcome, Exception):
                calls.append(len(outcome.times))
            yield work, outcome

    monkeypatch.setattr(pipeline_module, "encode_works", counting)
    return calls
