"""Your-own-data fixtures: tiny colour videos (real H.264 files), a captions table over them, shards of them.

A video shows one colour (a little noise on every frame, seeded by its index); its captions name the colour.
A long video shows one colour per 2-second segment, and its captions are moments (start/end). A random tiny
CLIP does not know colour names (zero-shot is near chance); adapters learn them in a few dozen steps.
"""

from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path

import numpy as np

COLOURS = {
    "red": (230, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 60, 230),
    "yellow": (240, 230, 30),
    "purple": (150, 40, 200),
    "orange": (250, 140, 10),
    "white": (250, 250, 250),
    "black": (5, 5, 5),
}
TEMPLATES = ("a {} video", "something {} fills the screen")


def colour_frames(colours: list[str], seed: int, size: int = 32, frames_per_colour: int = 2) -> np.ndarray:
    """uint8 [len(colours) * frames_per_colour, size, size, 3]: each colour for ``frames_per_colour`` frames."""
    rng = np.random.default_rng(seed)
    frames = []
    for colour in colours:
        base = np.array(COLOURS[colour], dtype=np.int16)
        for _ in range(frames_per_colour):
            noise = rng.integers(-12, 13, (size, size, 3))
            frames.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    return np.stack(frames)


def write_colour_video(path: Path, colours: list[str], seed: int, size: int = 32) -> Path:
    from cmadapter.demo.dataset_files import write_video

    write_video(path, colour_frames(colours, seed, size), fps=1)
    return path


def write_colour_image(path: Path, colour: str, seed: int, size: int = 32) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(colour_frames([colour], seed, size, 1)[0]).save(path)
    return path


def colour_rows(per_colour: int = 3, *, long_video: bool = True, images: int = 0) -> list[dict]:
    """Rows of a captions table (video, caption, start, end) over the files ``write_colour_files`` makes."""
    rows = []
    for i, colour in enumerate(c for c in COLOURS for _ in range(per_colour)):
        for template in TEMPLATES:
            rows.append({"video": f"clips/{colour}-{i}.mp4", "caption": template.format(colour)})
    for i in range(images):
        colour = list(COLOURS)[i % len(COLOURS)]
        rows.append({"video": f"photos/{colour}-{i}.png", "caption": f"a {colour} photo"})
    if long_video:  # moments: one colour per 2-second segment of one longer video
        for k, colour in enumerate(("red", "blue", "green")):
            rows.append({"video": "long/shots.mp4", "caption": f"a {colour} video", "start": 2 * k, "end": 2 * k + 2})
    return rows


def write_colour_files(videos: Path, rows: list[dict]) -> None:
    """The video (and image) files ``rows`` name, under ``videos``."""
    for index, path in enumerate(dict.fromkeys(r["video"] for r in rows)):
        target = videos / path
        if target.exists():
            continue
        if path == "long/shots.mp4":
            write_colour_video(target, ["red", "blue", "green"], seed=index)
        elif path.endswith(".png"):
            write_colour_image(target, Path(path).stem.split("-")[0], seed=index)
        else:
            write_colour_video(target, [Path(path).stem.split("-")[0]], seed=index)


def write_table(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    """``rows`` as the table format ``path``'s extension names (csv, tsv, jsonl, parquet)."""
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({c: [r.get(c) for r in rows] for c in columns}), path)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps({c: r[c] for c in columns if c in r}) + "\n" for r in rows))
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter="\t" if suffix == ".tsv" else ",", lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([["" if r.get(c) is None else r[c] for c in columns] for r in rows])
        path.write_text(buffer.getvalue())
    return path


def write_shard(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> Path:
    """A tar shard: ``samples`` are (key, {extension: bytes}), written as ``{key}.{extension}`` members."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as archive:
        for key, members in samples:
            for extension, data in members.items():
                info = tarfile.TarInfo(f"{key}.{extension}")
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return path


def colour_shards(folder: Path, videos: Path, per_shard: int, count: int, *, caption_as: str = "txt") -> list[Path]:
    """``count`` colour videos (cycling through the colours) written as shards of ``per_shard`` samples."""
    samples = []
    for i in range(count):
        colour = list(COLOURS)[i % len(COLOURS)]
        video = write_colour_video(videos / f"{i:05d}.mp4", [colour], seed=1000 + i)
        caption = f"a {colour} video".encode()
        text = {"txt": caption} if caption_as == "txt" else {"json": json.dumps({"caption": caption.decode()}).encode()}
        samples.append((f"{i:05d}", {"mp4": video.read_bytes(), **text}))
    return [
        write_shard(folder / f"{n:05d}.tar", samples[start : start + per_shard])
        for n, start in enumerate(range(0, count, per_shard))
    ]
