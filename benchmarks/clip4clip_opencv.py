"""The baseline for ``cmadapter bench decode``: frame sampling the way CLIP4Clip's extractor does it.

CLIP4Clip (``dataloaders/rawvideo_util.py``) opens the file with ``cv2.VideoCapture``, reads the frame
count and an integer frame rate, and for every second of the video sets ``CAP_PROP_POS_FRAMES`` to
``second * fps`` and reads one frame (OpenCV seeks back to a keyframe and decodes forward, for every
sample). Each frame read is converted BGR -> RGB and preprocessed; when there are more than
``max_frames``, its data loader keeps ``max_frames`` of them chosen with ``linspace``.

This file re-implements that procedure (not CLIP4Clip's code), with the same resize/crop/normalisation
as cmadapter, so the benchmark compares the decoding strategies and nothing else.
"""

from __future__ import annotations

import cv2
import numpy as np

from cmadapter.video.preprocess import fit_frame, to_model_input
from cmadapter.video.sampling import uniform_subset


def read_clip(path: str, fps: float, max_frames: int, image_size: int, threads: int = 1):
    """(frames float [max_frames, 3, S, S], mask [max_frames]) of a video, CLIP4Clip-style."""
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads])
    if not capture.isOpened():
        raise OSError(f"OpenCV cannot open {path}")
    try:
        frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        video_fps = int(capture.get(cv2.CAP_PROP_FPS))  # CLIP4Clip truncates the rate to an integer
        seconds = (frame_count + video_fps - 1) // video_fps
        step = max(int(video_fps // fps), 1)  # frames between samples
        frames = []
        for position in range(0, (seconds + 1) * video_fps, step):
            capture.set(cv2.CAP_PROP_POS_FRAMES, position)
            ok, bgr = capture.read()
            if not ok:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            frames.append(fit_frame(rgb, image_size))  # every frame read is preprocessed, as CLIP4Clip does
    finally:
        capture.release()
    if not frames:
        raise OSError(f"OpenCV read no frames from {path}")
    kept = [frames[i] for i in uniform_subset(range(len(frames)), max_frames)]
    return to_model_input(np.stack(kept), max_frames)
