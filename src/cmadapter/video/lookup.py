"""Finding each video's file by its id: any common extension, in a flat folder or nested ones.

A video ``id`` is found as a file named ``id`` itself (DiDeMo ids carry their extension), ``id.<ext>``
for ``ext`` in ``VIDEO_EXTENSIONS``, or a frame folder named ``id`` or ``id.<ext>`` (a directory of
images). A dataset may add other names (ActivityNet ids carry a ``v_`` prefix their files may lack).
The folder tree is walked once for all ids. When a name occurs twice, files beat frame folders, then
the extension listed first, then the shorter path, so the choice never depends on the walk order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import DataError
from .decode import VIDEO_EXTENSIONS

log = logging.getLogger(__name__)

Aliases = Callable[[str], list[str]]


def names_for(video_id: str, aliases: Aliases | None = None) -> list[str]:
    """The file or folder names (without a video extension) that may hold ``video_id``."""
    names = [video_id]
    stem, ext = os.path.splitext(video_id)
    if ext.lower() in VIDEO_EXTENSIONS and stem:
        names.append(stem)
    if aliases is not None:
        names += [name for name in aliases(video_id) if name not in names]
    return names


def find_videos(
    root: str | Path, video_ids: Iterable[str], aliases: Aliases | None = None
) -> tuple[dict[str, Path], list[str]]:
    """``({id: path}, [ids not found])`` for the videos under ``root`` (files or frame folders)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"videos folder not found: {root}")
    video_ids = list(dict.fromkeys(video_ids))
    wanted = {name for video_id in video_ids for name in names_for(video_id, aliases)}
    candidates: dict[str, tuple[tuple, Path]] = {}
    for name, rank, path in _walk(root, wanted):
        best = candidates.get(name)
        if best is None or rank < best[0]:
            if best is not None:
                log.debug("%s: choosing %s over %s", name, path, best[1])
            candidates[name] = (rank, path)
    found, missing = {}, []
    for video_id in video_ids:
        hits = [candidates[name] for name in names_for(video_id, aliases) if name in candidates]
        if hits:
            found[video_id] = min(hits)[1]
        else:
            missing.append(video_id)
    return found, missing


def _walk(root: Path, wanted: set[str]):
    """(name, rank, path) for every file or folder under ``root`` whose name could hold a wanted id."""
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            log.warning("cannot list %s: %s", folder, exc)
            continue
        for entry in entries:
            stem, ext = os.path.splitext(entry.name)
            is_video_ext = ext.lower() in VIDEO_EXTENSIONS
            names = [entry.name] + ([stem] if is_video_ext else [])
            hit = next((n for n in names if n in wanted), None)
            is_dir = entry.is_dir()
            if hit is not None:
                ext_rank = VIDEO_EXTENSIONS.index(ext.lower()) if is_video_ext else len(VIDEO_EXTENSIONS)
                rank = (is_dir, ext_rank, len(entry.path), entry.path)
                yield hit, rank, Path(entry.path)
                if is_dir:
                    continue  # a frame folder: its images are not videos
            if is_dir:
                stack.append(Path(entry.path))
