"""The grid / window / max_frames rules every frame source shares."""

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cmadapter.video.sampling import (
    Sampling,
    clip_points,
    exact,
    grid_count,
    uniform_subset,
    window_after_video,
    window_points,
)


def test_grid_count_includes_time_zero_and_the_last_frame_time():
    assert grid_count(Fraction(0), Fraction(1)) == 1  # a single frame
    assert grid_count(Fraction(1, 2), Fraction(1)) == 1  # shorter than one interval: its first frame
    assert grid_count(Fraction(249, 25), Fraction(1)) == 10  # 250 frames at 25 fps: 0 … 9 s
    assert grid_count(Fraction(10), Fraction(1)) == 11  # a frame exactly at 10 s
    assert grid_count(Fraction(249, 25), Fraction(2)) == 20


def test_decimal_rates_and_times_are_exact():
    assert exact(0.3) == Fraction(3, 10)
    # 0.3 s at 10 fps is grid point 3, not 2 (0.3 * 10 is 2.9999999999999996 in binary floats).
    assert window_points(10, exact(10), (0.3, None))[0] == 3


def test_window_keeps_the_intervals_it_overlaps():
    one = Fraction(1)
    assert list(window_points(10, one)) == list(range(10))
    assert list(window_points(10, one, (2.0, 5.0))) == [2, 3, 4]
    assert list(window_points(10, one, (2.5, 5.5))) == [2, 3, 4, 5]
    assert list(window_points(10, one, (2.5, 2.9))) == [2]  # inside one interval: that interval
    assert list(window_points(10, one, (4.0, 4.0))) == [4]  # empty window: the interval holding it
    assert list(window_points(10, one, (None, 3.0))) == [0, 1, 2]
    assert list(window_points(10, one, (-3.0, 1.0))) == [0]
    assert list(window_points(10, one, (8.0, 30.0))) == [8, 9]  # end past the video


def test_window_after_the_video_keeps_its_last_point_and_says_so(caplog):
    assert list(window_points(10, Fraction(1), (12.0, 15.0))) == [9]
    assert window_after_video(10, Fraction(1), (12.0, 15.0))
    assert not window_after_video(10, Fraction(1), (9.5, 15.0))
    points = clip_points(10, Sampling(1.0, 12), (12.0, 15.0), name="video 'x'")
    assert points == [9]
    assert "video 'x'" in caplog.text and "after the video" in caplog.text


def test_window_with_end_before_start_is_an_error():
    with pytest.raises(ValueError, match="before its start"):
        window_points(10, Fraction(1), (5.0, 2.0))


def test_uniform_subset_is_clip4clips_linspace():
    assert uniform_subset(range(5), 12) == [0, 1, 2, 3, 4]
    assert uniform_subset(range(20), 12) == [0, 1, 3, 5, 6, 8, 10, 12, 13, 15, 17, 19]
    assert uniform_subset(range(100, 130), 3) == [100, 114, 129]


@given(
    count=st.integers(1, 400),
    rate=st.sampled_from([Fraction(1), Fraction(2), Fraction(1, 2), Fraction(3, 10)]),
    start=st.one_of(st.none(), st.floats(-5, 500)),
    length=st.one_of(st.none(), st.floats(0, 300)),
    max_frames=st.integers(1, 64),
)
def test_a_clip_is_never_empty_and_stays_in_the_video(count, rate, start, length, max_frames):
    end = None if length is None else (start or 0.0) + length
    points = clip_points(count, Sampling(float(rate), max_frames), (start, end))
    assert 1 <= len(points) <= max_frames
    assert points == sorted(set(points))
    assert points[0] >= 0 and points[-1] < count


def test_sampling_options_are_checked():
    with pytest.raises(ValueError, match="fps"):
        Sampling(fps=0)
    with pytest.raises(ValueError, match="max_frames"):
        Sampling(max_frames=0)
