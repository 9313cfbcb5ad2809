"""Decoding beside encoding: how an index run turns its planned files into features on this machine.

Decoder threads (``decode_workers``, default 1) take the planned files in turn, stream each one's grid frames
(``video.grid.stream_path_grid``: one frame in memory at a time), crop them to the model's input and put them
on a bounded queue. The encoder, in the calling thread (it holds the model), takes frames off the queue,
encodes them in batches of ``batch_size`` with every adapter a frame's file misses (frames of several small
files share a batch) and hands each file back once its last frame is encoded. FFmpeg, Pillow and torch all
release the GIL, so decoding and encoding overlap on separate cores, and memory is the queue plus one batch
whatever the videos' lengths.

``skip_similar`` (gray levels, 0 = off): a frame whose 16x16 gray thumbnail differs from that of the last
frame encoded for its file by less than this on average (mean absolute difference, 0-255) is not encoded; it
gets that frame's features. A static shot (a lecture, a screen recording, a surveillance camera) then costs
one encoding per change of picture. See docs/BENCHMARKS.md for what it skips and what it changes.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..video.grid import stream_path_grid
from ..video.preprocess import fit_frame
from ..video.stream import RESTART
from .encoder import Encoded, encode_with_adapters

_THUMB = 16  # thumbnail side for the similarity test


@dataclass
class PipelineOptions:
    batch_size: int = 64  # frames per encoder batch
    precision: str = "fp32"
    decode_workers: int = 1  # decoder threads
    queue_frames: int | None = None  # frames decoded ahead of the encoder (default: two batches)
    skip_similar: float = 0.0  # see the module doc; 0 encodes every frame


@dataclass
class _File:
    """One file in flight: its frames' times, and per adapter the features encoded so far."""

    times: list[float] = field(default_factory=list)
    features: dict[str, list[np.ndarray]] = field(default_factory=dict)
    last: dict[str, np.ndarray] = field(default_factory=dict)  # the last frame's features (for skipped frames)
    skipped: int = 0
    decode_seconds: float = 0.0
    encode_seconds: float = 0.0
    ended: bool = False


def encode_works(
    model,
    works: list,
    rate: Fraction,
    options: PipelineOptions,
    *,
    started: Callable | None = None,
    decoded: Callable | None = None,
) -> Iterator[tuple[object, Encoded | Exception]]:
    """(work, Encoded or the file's error) for each planned work, in the order files finish.

    ``works`` have ``.item.path`` and ``.missing`` (adapter names loaded on ``model``); ``started(work)`` and
    ``decoded(work)`` run in a decoder thread before a file's first frame is decoded and after its last one. An
    exception that is not an ``Exception`` (the process being stopped) ends the whole run, here."""
    if not works:
        return
    image_size = model.image_size
    frames: queue.Queue = queue.Queue(maxsize=options.queue_frames or 2 * options.batch_size)
    stop = threading.Event()
    turn = iter(range(len(works)))
    turn_lock = threading.Lock()

    def put(message) -> bool:
        while not stop.is_set():
            try:
                frames.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def decode() -> None:
        try:
            while not stop.is_set():
                with turn_lock:
                    index = next(turn, None)
                if index is None:
                    return
                work = works[index]
                if started is not None:
                    started(work)
                if not put(("start", index)):
                    return
                _decode_file(work, index, rate, image_size, options.skip_similar, put)
                if decoded is not None:
                    decoded(work)
        except BaseException as exc:  # not one file's problem: the run's
            put(("fatal", None, exc))
        finally:
            put(("done",))

    workers = [threading.Thread(target=decode, daemon=True) for _ in range(max(1, options.decode_workers))]
    for worker in workers:
        worker.start()
    try:
        yield from _encode(model, works, frames, len(workers), options)
    finally:
        stop.set()
        while any(w.is_alive() for w in workers):  # unblock decoders waiting on a full queue
            with contextlib.suppress(queue.Empty):
                frames.get(timeout=0.05)
        for worker in workers:
            worker.join()


def _decode_file(work, index: int, rate: Fraction, image_size: int, skip_similar: float, put) -> None:
    """Stream one file's frames onto the queue; a frame like the last encoded one goes as None (reuse)."""
    began = time.perf_counter()
    reference = None  # the thumbnail of the last frame sent for encoding
    try:
        for item in stream_path_grid(Path(work.item.path), rate, image_size):
            if item is RESTART:
                reference = None
                if not put(("restart", index)):
                    return
                continue
            point, frame = item
            frame = fit_frame(frame, image_size)
            thumbnail = _thumbnail(frame) if skip_similar > 0 else None
            if reference is not None and float(np.abs(thumbnail - reference).mean()) < skip_similar:
                frame = None
            else:
                reference = thumbnail
            seconds = time.perf_counter() - began
            if not put(("frame", index, float(Fraction(point) / rate), frame, seconds)):
                return
            began = time.perf_counter()  # waiting for room on the queue is not decoding
        put(("end", index, time.perf_counter() - began))
    except Exception as exc:  # anything about one file is that file's problem
        put(("error", index, exc))


def _thumbnail(frame: np.ndarray) -> np.ndarray:
    """A 16x16 gray picture of a square uint8 frame, by striding (nearly free next to decoding)."""
    step = max(1, frame.shape[0] // _THUMB)
    return frame[::step, ::step][:_THUMB, :_THUMB].astype(np.float32).mean(axis=-1)


def _encode(model, works, frames: queue.Queue, decoders: int, options: PipelineOptions):
    files: dict[int, _File] = {}
    batch: list[tuple[int, np.ndarray | None]] = []  # (file, frame or None for "as the last one")
    finished = 0
    while finished < decoders:
        message = frames.get()
        kind, index = message[0], message[1] if len(message) > 1 else None
        if kind == "done":
            finished += 1
        elif kind == "fatal":
            raise message[2]
        elif kind == "start":
            files[index] = _File(features={a: [] for a in works[index].missing})
        elif kind == "frame":
            _, _, seconds, frame, decode_seconds = message
            files[index].times.append(seconds)
            files[index].decode_seconds += decode_seconds
            files[index].skipped += frame is None
            batch.append((index, frame))
            if sum(f is not None for _, f in batch) >= options.batch_size:
                _encode_batch(model, works, files, batch, options)
                yield from _finished(works, files, batch)
        elif kind == "restart":  # the decoder starts this file over another way: drop what it gave
            batch[:] = [(i, f) for i, f in batch if i != index]
            files[index] = _File(features={a: [] for a in works[index].missing})
        elif kind == "end":
            files[index].ended = True
            files[index].decode_seconds += message[2]
            yield from _finished(works, files, batch)
        elif kind == "error":
            batch[:] = [(i, f) for i, f in batch if i != index]
            files.pop(index, None)
            yield works[index], message[2]
    if batch:
        _encode_batch(model, works, files, batch, options)
    yield from _finished(works, files, batch)


def _encode_batch(model, works, files: dict[int, _File], batch: list, options: PipelineOptions) -> None:
    """Encode the batch's frames with each adapter some of their files miss; skipped frames copy the last."""
    real = [(i, f) for i, f in batch if f is not None]
    adapters = sorted({a for i, _ in batch for a in works[i].missing})
    began = time.perf_counter()
    encoded: dict[str, dict[int, np.ndarray]] = {}
    for adapter in adapters:
        rows = [k for k, (i, _) in enumerate(real) if adapter in works[i].missing]
        if rows:
            out = encode_with_adapters(
                model, np.stack([real[k][1] for k in rows]), [adapter], options.batch_size, options.precision
            )[adapter]
            encoded[adapter] = dict(zip(rows, out))
    seconds = (time.perf_counter() - began) / max(1, len(real))
    row = 0
    for index, frame in batch:
        state = files[index]
        for adapter in works[index].missing:
            if frame is not None:
                state.last[adapter] = encoded[adapter][row]
            state.features[adapter].append(state.last[adapter])
        if frame is not None:
            state.encode_seconds += seconds
            row += 1
    batch.clear()


def _finished(works, files: dict[int, _File], batch: list):
    """The files whose last frame came and was encoded (none of theirs waits in ``batch``)."""
    waiting = {i for i, _ in batch}
    for index in [i for i, state in files.items() if state.ended and i not in waiting]:
        state = files.pop(index)
        features = {a: np.stack(rows) for a, rows in state.features.items()}
        times = np.asarray(state.times, np.float64)
        yield works[index], Encoded(times, features, state.decode_seconds, state.encode_seconds, state.skipped)
