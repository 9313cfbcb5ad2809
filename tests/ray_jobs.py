"""Job wrappers that Ray workers import (this folder is on their PYTHONPATH in test_cluster.py)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from cmadapter.video.cache import cache_video


def cache_video_dying_once(video_id, path, target, spec, folder_fps, allow_truncated=False):
    """``cache_video``, but the first worker to reach the video named in $CMADAPTER_TEST_DIE_ON dies (SIGKILL)."""
    marker = Path(os.environ["CMADAPTER_TEST_DIE_MARKER"])
    if video_id == os.environ["CMADAPTER_TEST_DIE_ON"] and not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return cache_video(video_id, path, target, spec, folder_fps, allow_truncated)


def decode_item_dying_once(path, kind, rate, image_size):
    """``decode_item``, but the first worker to reach the file named in $CMADAPTER_TEST_DIE_ON dies (SIGKILL)."""
    from cmadapter.search.encoder import decode_item

    marker = Path(os.environ["CMADAPTER_TEST_DIE_MARKER"])
    if Path(path).name == os.environ["CMADAPTER_TEST_DIE_ON"] and not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return decode_item(path, kind, rate, image_size)
