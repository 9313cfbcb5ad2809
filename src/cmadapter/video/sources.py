"""Where clips come from: a folder of videos (files or frame folders), or a frame cache.

Both kinds answer the same two questions, so datasets and the evaluator never care which one they
hold: ``missing(ids)`` (checked before any training step) and ``read(id, window, sampling, size)``
(a ``Clip`` of uint8 frames). ``open_frame_source`` picks the cache when one is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from ..errors import DataError
from .grid import read_video_clip
from .sampling import Clip, Sampling, Window, exact


class FrameSource(Protocol):
    description: str

    def missing(self, video_ids: Iterable[str]) -> dict[str, str]:
        """The ids that cannot be read, each with the reason."""
        ...

    def read(self, video_id: str, window: Window, sampling: Sampling, image_size: int) -> Clip: ...


class VideoFolder:
    """Raw videos under ``root``, matched to ids by ``datasets.lookup`` (decoded at every read)."""

    def __init__(
        self,
        root: str | Path,
        *,
        aliases: Callable[[str], list[str]] | None = None,
        folder_fps: float | None = None,
        threads: int = 1,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"videos folder not found: {self.root}")
        self.aliases = aliases
        self.folder_fps = exact(folder_fps) if folder_fps else None
        self.threads = threads
        self.paths: dict[str, Path] = {}
        self._absent: set[str] = set()
        self.description = f"videos in {self.root}"

    def locate(self, video_ids: Iterable[str]) -> dict[str, Path]:
        """Paths of the ids found (the folder is walked once per call, for the ids not seen yet)."""
        from .lookup import find_videos

        video_ids = list(video_ids)
        new = [i for i in dict.fromkeys(video_ids) if i not in self.paths and i not in self._absent]
        if new:
            found, missing = find_videos(self.root, new, self.aliases)
            self.paths.update(found)
            self._absent.update(missing)
        return {i: self.paths[i] for i in video_ids if i in self.paths}

    def missing(self, video_ids: Iterable[str]) -> dict[str, str]:
        video_ids = list(video_ids)
        found = self.locate(video_ids)
        return {i: f"no video file or frame folder for {i!r} under {self.root}" for i in video_ids if i not in found}

    def path(self, video_id: str) -> Path:
        found = self.locate([video_id])
        if video_id not in found:
            raise DataError(f"video {video_id!r}: no video file or frame folder under {self.root}")
        return found[video_id]

    def read(self, video_id: str, window: Window, sampling: Sampling, image_size: int) -> Clip:
        return read_video_clip(
            self.path(video_id),
            sampling,
            image_size,
            window,
            video_id=video_id,
            folder_fps=self.folder_fps,
            threads=self.threads,
        )


class VideoPaths(VideoFolder):
    """Videos named by their paths: an id is a path relative to ``root`` (or absolute), as in a captions table.

    Nothing is searched for: ``clips/a.mp4`` is ``root/clips/a.mp4`` (a video file, a frame folder or an image)."""

    def locate(self, video_ids: Iterable[str]) -> dict[str, Path]:
        video_ids = list(video_ids)
        for video_id in dict.fromkeys(video_ids):
            if video_id not in self.paths and video_id not in self._absent:
                path = self.root / video_id  # an absolute id stays itself
                if path.is_file() or path.is_dir():
                    self.paths[video_id] = path
                else:
                    self._absent.add(video_id)
        return {i: self.paths[i] for i in video_ids if i in self.paths}

    def missing(self, video_ids: Iterable[str]) -> dict[str, str]:
        video_ids = list(video_ids)
        found = self.locate(video_ids)
        return {i: f"no file {self.root / i}" for i in video_ids if i not in found}


def open_frame_source(
    *,
    videos: str | Path | None = None,
    cache: str | Path | None = None,
    dataset: str | None = None,
    folder_fps: float | None = None,
) -> FrameSource:
    """The frame cache when ``cache`` is given, else the raw ``videos`` folder (with the dataset's file names,
    or the paths its ids are)."""
    from .cache import FrameCache

    if cache is not None:
        return FrameCache(cache)
    if videos is None:
        raise DataError("give a videos folder or a frame cache (written by `cmadapter prepare`)")
    if dataset is None:
        return VideoFolder(videos, folder_fps=folder_fps)
    from ..datasets import get_dataset

    spec = get_dataset(dataset)
    if spec.ids_are_paths:
        return VideoPaths(videos, folder_fps=folder_fps)
    return VideoFolder(videos, aliases=spec.file_aliases, folder_fps=folder_fps)


def as_frame_source(source: FrameSource | str | Path) -> FrameSource:
    """A source object as is; a path: a frame cache if it holds one, else a videos folder."""
    if isinstance(source, str | Path):
        from .cache import FrameCache

        return FrameCache(source) if FrameCache.holds_cache(source) else VideoFolder(source)
    return source
