"""The demo's ground truth says where each object is drawn, frame by frame, as the rendered pixels show."""

import numpy as np

from cmadapter.demo.ground_truth import corner_frames, frame_objects, mask_box
from cmadapter.demo.synthetic import COLOURS, SyntheticConfig, render_video, sample_frames, scene, video_specs


def test_masks_and_boxes_match_the_rendered_pixels():
    config = SyntheticConfig.quick(fps=4)
    for spec in video_specs(config)[:12]:
        frames = render_video(spec, config)
        background, _ = scene(spec, config)
        plain = np.rint(background).astype(np.uint8)
        truth = frame_objects(spec, config)
        assert [t.frame for t in truth] == list(range(config.frames_per_video))
        for item in truth:
            frame = frames[item.frame]
            assert item.object == spec.objects[item.frame // config.frames_per_object]
            full, empty = item.mask >= 1.0, item.mask <= 0.0
            assert full.sum() > 0.1 * full.size
            assert (frame[full] == np.asarray(COLOURS[item.object[0]], dtype=np.uint8)).all()
            assert (frame[empty] == plain[empty]).all()
            # Every pixel that differs from the background lies in the mask, and so in the box.
            changed = (frame != plain).any(axis=-1)
            assert not changed[empty].any()
            assert mask_box(item.mask) == item.box
            x0, y0, x1, y1 = item.box
            assert item.mask[:y0].sum() == item.mask[y1:].sum() == 0
            assert item.mask[:, :x0].sum() == item.mask[:, x1:].sum() == 0
            assert item.mask[y0].sum() > 0 and item.mask[y1 - 1].sum() > 0


def test_moving_objects_move_in_the_ground_truth_too():
    config = SyntheticConfig.quick()
    spec = video_specs(config)[0]
    truth = frame_objects(spec, config)
    first, last = truth[0], truth[config.frames_per_object - 1]
    assert first.object == last.object
    shift = np.abs(np.array(first.box) - np.array(last.box)).max()
    assert shift > 0  # drawn where it drifted to, not where it started
    sampled = [truth[i] for i in sample_frames(config, config.objects_per_video)]
    assert [t.object for t in sampled] == list(spec.objects)


def test_corner_frames_hold_one_object_inside_its_quarter():
    config = SyntheticConfig.quick()
    frames = corner_frames(config, per_quarter=3, seed=1)
    assert [f.quarter for f in frames] == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    half = config.frame_size // 2
    for frame in frames:
        row, column = divmod(frame.quarter, 2)
        inside = np.zeros_like(frame.mask, dtype=bool)
        inside[row * half : (row + 1) * half, column * half : (column + 1) * half] = True
        assert frame.mask[~inside].sum() == 0 and frame.mask[inside].sum() > 20  # all of it, and not a speck
        full = frame.mask >= 1.0
        assert (frame.image[full] == np.asarray(COLOURS[frame.object[0]], dtype=np.uint8)).all()
    assert corner_frames(config, per_quarter=3, seed=1)[5].image.tobytes() == frames[5].image.tobytes()
    assert corner_frames(config, per_quarter=3, seed=2)[5].image.tobytes() != frames[5].image.tobytes()
