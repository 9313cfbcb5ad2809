"""Writing a synthetic dataset to disk: H.264 files and the MSR-VTT annotation files, reused when complete.

root/annotations/MSRVTT_data.json          {"info", "videos": [...], "sentences": [...]}
root/annotations/MSRVTT_train.9k.csv       video_id
root/annotations/MSRVTT_JSFUSION_test.csv  ,key,vid_key,video_id,sentence
root/videos/all/video<i>.mp4               H.264, yuv420p
root/captions.csv                          video,caption,split: the same data as a captions table
                                           (`dataset: captions`, paths relative to root/videos/all)
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CmadapterError
from .synthetic import (
    DATA_JSON,
    GENERATOR_VERSION,
    STAMP,
    TEST_CSV,
    TRAIN_CSV,
    SyntheticConfig,
    SyntheticDataset,
    render_video,
    video_specs,
)

log = logging.getLogger(__name__)

CAPTIONS_TABLE = "captions.csv"


def rgb_to_yuv420p(frame: np.ndarray) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> planar yuv420p [H * 3 / 2, W] (BT.601, limited range, 2x2 chroma means).

    Done here so the encoder's input is plain, reproducible arithmetic rather than whatever converter and
    options the FFmpeg build inside PyAV picks.
    """
    rgb = frame.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    cb = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    cr = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    h, w = y.shape

    def half(plane: np.ndarray) -> np.ndarray:
        return plane.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)).reshape(h // 4, w)

    planes = np.concatenate([y, half(cb), half(cr)], axis=0)
    return np.clip(np.rint(planes), 0, 255).astype(np.uint8)


def write_video(path: Path, frames: np.ndarray, fps: int, crf: int = 20) -> None:
    """An H.264 (yuv420p, BT.601) mp4 of uint8 RGB frames [N, H, W, 3]; the same frames give the same bytes."""
    import av

    height, width = frames.shape[1:3]
    if height % 4 or width % 4:
        raise CmadapterError(f"frame size {width}x{height}: width and height must be multiples of 4")
    path.parent.mkdir(parents=True, exist_ok=True)
    # One encoder thread, no macroblock tree, bit-exact muxing (no version strings or times): the same
    # frames give the same bytes, run after run.
    with av.open(str(path), mode="w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {
            "crf": str(crf),
            "preset": "medium",
            "tune": "stillimage",
            "threads": "1",
            "flags": "+bitexact",
            # mbtree=0: with x264's macroblock-tree rate control on, the same frames encoded twice in one
            # process came out different (about one video in three at 64 px); without it, never in our runs.
            # The colour tags say which matrix `rgb_to_yuv420p` used, so every decoder converts back alike.
            "x264-params": "mbtree=0:colorprim=smpte170m:transfer=smpte170m:colormatrix=smpte170m:range=tv",
        }
        for index, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(array), format="yuv420p")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def generate_dataset(
    root: str | Path, config: SyntheticConfig | None = None, *, overwrite: bool = False, progress: bool = True
) -> SyntheticDataset:
    """Write the dataset under ``root`` (videos and MSR-VTT annotation files) and describe it.

    A folder already generated with the same config (and generator version) is reused as it is; one
    generated otherwise is an error. ``overwrite`` regenerates in place whatever the folder holds.
    """
    config = config or SyntheticConfig()
    root = Path(root)
    specs = video_specs(config)
    dataset = SyntheticDataset(root=root, config=config, videos=tuple(specs))
    stamp = root / STAMP
    if stamp.is_file() and not overwrite:
        if json.loads(stamp.read_text()) == _stamp(config) and _complete(dataset):
            log.info("reusing the synthetic dataset in %s", root)
            if not (root / CAPTIONS_TABLE).is_file():  # a folder written before the table was
                write_captions_table(dataset)
            return dataset
        raise CmadapterError(
            f"{root} holds a synthetic dataset made with other settings or another generator version "
            f"(see {stamp}); pass overwrite=True or choose another folder"
        )
    stamp.unlink(missing_ok=True)  # an interrupted regeneration must not look complete
    _remove_generated(dataset)
    from tqdm.auto import tqdm

    for spec in tqdm(specs, desc="synthetic videos", unit="video", disable=not progress):
        write_video(dataset.video_path(spec.video_id), render_video(spec, config), config.fps, config.crf)
    write_annotations(dataset)
    write_captions_table(dataset)
    # Written last: its presence means the folder is complete.
    stamp.write_text(json.dumps(_stamp(config), indent=1, sort_keys=True) + "\n")
    return dataset


def _remove_generated(dataset: SyntheticDataset) -> None:
    # Only what this module writes (so a smaller regeneration leaves no stale videos); nothing else.
    for path in dataset.video_dir.glob("video*.mp4"):
        if path.stem[len("video") :].isdigit():
            path.unlink()
    for name in (DATA_JSON, TRAIN_CSV, TEST_CSV):
        (dataset.annotations / name).unlink(missing_ok=True)
    (dataset.root / CAPTIONS_TABLE).unlink(missing_ok=True)


def _stamp(config: SyntheticConfig) -> dict[str, Any]:
    return {"generator_version": GENERATOR_VERSION, "config": config.to_dict()}


def _complete(dataset: SyntheticDataset) -> bool:
    names = (DATA_JSON, TRAIN_CSV, TEST_CSV)
    return all((dataset.annotations / n).is_file() for n in names) and all(
        dataset.video_path(v.video_id).is_file() for v in dataset.videos
    )


def write_annotations(dataset: SyntheticDataset) -> None:
    """``MSRVTT_data.json``, ``MSRVTT_train.9k.csv`` and ``MSRVTT_JSFUSION_test.csv``, as MSR-VTT ships them."""
    config = dataset.config
    folder = dataset.annotations
    folder.mkdir(parents=True, exist_ok=True)
    duration = config.frames_per_video / config.fps
    data = {
        "info": {
            "description": "cmadapter synthetic text-video retrieval dataset (MSR-VTT layout)",
            "generator": "cmadapter.synthetic",
            "config": config.to_dict(),
        },
        "videos": [
            {
                "category": 0,
                "url": "",
                "video_id": v.video_id,
                "start time": 0.0,
                "end time": duration,
                "split": v.split,
                "id": v.index,
            }
            for v in dataset.videos
        ],
        "sentences": [],
    }
    sen_id = 0
    for v in dataset.videos:
        for text in v.captions:
            data["sentences"].append({"caption": text, "video_id": v.video_id, "sen_id": sen_id})
            sen_id += 1
    (folder / DATA_JSON).write_text(json.dumps(data, indent=1) + "\n")
    with open(folder / TRAIN_CSV, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["video_id"])
        writer.writerows([v.video_id] for v in dataset.split("train"))
    with open(folder / TEST_CSV, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["", "key", "vid_key", "video_id", "sentence"])
        for row, v in enumerate(dataset.split("test")):
            writer.writerow([row, f"ret{row}", f"msr{v.index}", v.video_id, v.captions[0]])


def write_captions_table(dataset: SyntheticDataset) -> None:
    """``captions.csv``: one row per caption (video path relative to the videos folder, caption, split)."""
    with open(dataset.root / CAPTIONS_TABLE, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["video", "caption", "split"])
        for v in dataset.videos:
            path = dataset.video_path(v.video_id).relative_to(dataset.video_dir).as_posix()
            writer.writerows([path, text, v.split] for text in v.captions)
