"""What an index holds: the media files under the given paths, their identity (size, mtime, content hash).

A file with a video extension is a video; a folder named like a video (``clip.mp4/``) holding images is a
frame folder (the layout ``prepare`` and the dataset readers accept); a photo (jpg, png, webp, bmp) is a
one-frame item, searched like a one-frame video. Other files are skipped and counted. Walks are sorted, so
runs see files in one order.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..video.decode import VIDEO_EXTENSIONS
from ..video.frame_folder import list_frames
from ..video.image import is_image_file
from .errors import SearchError
from .schema import Stamp

MEDIA_EXTENSIONS = (*VIDEO_EXTENSIONS, ".mpg", ".mpeg", ".ts", ".m2ts", ".mts", ".flv", ".wmv", ".3gp", ".ogv", ".vob")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class MediaFile:
    path: str  # absolute
    kind: str  # "video", "frames" or "image" (a photo, indexed as a one-frame item)


def is_media_path(path: Path) -> bool:
    return path.suffix.lower() in MEDIA_EXTENSIONS


def _file_kind(path: Path) -> str | None:
    """ "video" or "image" for a file the index takes, None for any other file."""
    if is_media_path(path):
        return "video"
    return "image" if is_image_file(path) else None


def find_media(sources: list[str | Path]) -> tuple[list[MediaFile], int]:
    """Media under ``sources`` (files or folders, walked recursively), and how many other files were skipped."""
    found: dict[str, MediaFile] = {}
    skipped = 0
    for source in sources:
        source = Path(source).absolute()
        if not source.exists():
            raise SearchError(f"{source}: no such file or folder")
        if source.is_file() or (source.is_dir() and is_media_path(source)):
            kind = "frames" if source.is_dir() else (_file_kind(source) or "video")
            found[str(source)] = MediaFile(str(source), kind)
            continue
        for folder, dirs, files in os.walk(source):
            dirs.sort()
            here = Path(folder)
            for name in list(dirs):
                if is_media_path(Path(name)):
                    dirs.remove(name)  # a frame folder is one item, not a place to look for more
                    found[str(here / name)] = MediaFile(str(here / name), "frames")
            for name in sorted(files):
                kind = _file_kind(Path(name))
                if kind is not None:
                    found[str(here / name)] = MediaFile(str(here / name), kind)
                else:
                    skipped += 1
    return sorted(found.values(), key=lambda m: m.path), skipped


def identity(item: MediaFile) -> Stamp:
    """Size, modification and change times, inode (a frame folder: its images' summed sizes, newest times,
    the folder's inode)."""
    path = Path(item.path)
    if item.kind == "frames":
        stats = [p.stat() for p in list_frames(path)]
        folder = path.stat()
        return Stamp(
            sum(s.st_size for s in stats),
            max([s.st_mtime_ns for s in stats] + [folder.st_mtime_ns]),
            max([s.st_ctime_ns for s in stats] + [folder.st_ctime_ns]),
            folder.st_ino,
        )
    stat = path.stat()
    return Stamp(stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)


def display_path(path: str) -> str:
    """A path as people read it: bytes that are not UTF-8 shown as ``\\xff`` escapes (for printing and JSON;
    the index itself keeps the exact bytes)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def content_hash(item: MediaFile) -> str:
    """BLAKE2b of the bytes (a frame folder: of its images' names and bytes, in order)."""
    digest = hashlib.blake2b(digest_size=20)
    paths = list_frames(item.path) if item.kind == "frames" else [Path(item.path)]
    for path in paths:
        if item.kind == "frames":
            digest.update(os.fsencode(path.name) + b"\0")
        with open(path, "rb") as f:
            while block := f.read(_CHUNK):
                digest.update(block)
    return digest.hexdigest()
