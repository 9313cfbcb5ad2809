"""Metrics against hand-worked examples."""

import pytest
import torch

from cmadapter import CmadapterError
from cmadapter.evaluation.metrics import retrieval_metrics, text_to_video_ranks, video_to_text_ranks
from cmadapter.evaluation.postprocess import dual_softmax, inverted_softmax, qb_norm


def test_one_caption_per_video_by_hand():
    # captions (rows) 0,1,2 belong to videos 0,1,2
    sim = torch.tensor(
        [
            [0.9, 0.1, 0.2],  # caption 0: its video first -> rank 1
            [0.8, 0.3, 0.1],  # caption 1: video 0 above its video 1 -> rank 2
            [0.5, 0.6, 0.4],  # caption 2: two above -> rank 3
        ]
    )
    assert text_to_video_ranks(sim, torch.tensor([0, 1, 2])).tolist() == [1, 2, 3]
    # video 0: captions 0 (0.9), 1 (0.8), 2 (0.5) -> its caption 0 first: rank 1
    # video 1: caption 2 (0.6) above caption 1 (0.3) -> rank 2
    # video 2: caption 0 (0.2) above caption 2 (0.4)? no: 0.4 > 0.2, 0.1 -> rank 1
    assert video_to_text_ranks(sim, torch.tensor([0, 1, 2])).tolist() == [1, 2, 1]
    m = retrieval_metrics(sim, [0, 1, 2])
    assert m["t2v"]["R1"] == pytest.approx(100 / 3) and m["t2v"]["R5"] == 100
    assert m["t2v"]["MdR"] == 2 and m["t2v"]["MnR"] == 2
    assert m["v2t"]["R1"] == pytest.approx(200 / 3) and m["v2t"]["MnR"] == pytest.approx(4 / 3)


def test_ties_are_counted_against_the_model():
    sim = torch.zeros(4, 4)  # a model that cannot tell anything apart
    m = retrieval_metrics(sim, [0, 1, 2, 3])
    assert m["t2v"]["R1"] == 0 and m["t2v"]["MdR"] == 4 and m["t2v"]["MnR"] == 4
    assert m["v2t"]["R1"] == 0 and m["v2t"]["MnR"] == 4
    # one tie with a wrong video: rank 2, not 1
    sim = torch.tensor([[0.5, 0.5], [0.1, 0.9]])
    assert text_to_video_ranks(sim, torch.tensor([0, 1])).tolist() == [2, 1]


def test_multi_caption_text_to_video_and_video_to_text():
    # videos 0 and 1; captions 0,1,2 -> video 0; captions 3,4 -> video 1
    caption_video = torch.tensor([0, 0, 0, 1, 1])
    sim = torch.tensor(
        [
            [0.9, 0.2],
            [0.1, 0.3],  # a caption of video 0 preferring video 1
            [0.4, 0.4],  # a tie -> pessimistic rank 2
            [0.2, 0.8],
            [0.7, 0.6],  # a caption of video 1 preferring video 0
        ]
    )
    assert text_to_video_ranks(sim, caption_video).tolist() == [1, 2, 2, 1, 2]
    # video 0 column: 0.9 (c0, correct) is the best correct; wrong captions 0.2, 0.7 below -> rank 1
    # video 1 column: best correct is c3 = 0.8; wrong captions 0.2, 0.3, 0.4 below -> rank 1
    assert video_to_text_ranks(sim, caption_video).tolist() == [1, 1]
    sim[4, 1] = 0.95  # now caption 4 (correct for video 1) is the best: still rank 1
    sim[1, 1] = 0.99  # a wrong caption above every correct one for video 1 -> rank 2
    assert video_to_text_ranks(sim, caption_video).tolist() == [1, 2]


def test_five_captions_per_image_both_directions_and_rsum_by_hand():
    """The image-text protocol (Flickr30K, MSCOCO): images A, B, C with five captions each."""
    caption_image = torch.arange(3).repeat_interleave(5)
    sim = torch.tensor(
        [  # columns: images A, B, C
            [0.9, 0.1, 0.2],  # A's captions: t2i ranks 1, 2, 2 (a tie with B), 3, 1
            [0.5, 0.6, 0.1],
            [0.3, 0.3, 0.0],
            [0.2, 0.4, 0.5],
            [0.7, 0.0, 0.0],
            [0.0, 0.8, 0.0],  # B's captions: 1, 3, 1, 2, 2
            [0.95, 0.2, 0.3],
            [0.1, 0.4, 0.2],
            [0.6, 0.5, 0.0],
            [0.0, 0.1, 0.2],
            [0.0, 0.0, 0.05],  # C's captions: 1, 2, 1, 1, 1
            [0.92, 0.0, 0.01],
            [0.0, 0.0, 0.02],
            [0.0, 0.0, 0.03],
            [0.0, 0.0, 0.04],
        ]
    )
    assert text_to_video_ranks(sim, caption_image).tolist() == [1, 2, 2, 3, 1, 1, 3, 1, 2, 2, 1, 2, 1, 1, 1]
    # i2t, the best of each image's captions among all 15: A's best 0.9 has 0.95 (c6) and 0.92 (c11) above it
    # -> 3; B's best 0.8 has nothing above -> 1; C's best 0.05 has c0 .2, c1 .1, c3 .5, c6 .3, c7 .2, c9 .2 -> 7.
    assert video_to_text_ranks(sim, caption_image).tolist() == [3, 1, 7]
    results = retrieval_metrics(sim, caption_image)
    t2i, i2t = results["t2v"], results["v2t"]
    assert (t2i["R1"], t2i["R5"], t2i["R10"], t2i["MdR"], t2i["MnR"]) == pytest.approx((800 / 15, 100, 100, 1, 1.6))
    assert (i2t["R1"], i2t["R5"], i2t["R10"], i2t["MdR"], i2t["MnR"]) == pytest.approx(
        (100 / 3, 200 / 3, 100, 3, 11 / 3)
    )
    assert results["rsum"] == pytest.approx(800 / 15 + 200 + 100 / 3 + 200 / 3 + 100)
    sim[7, 2] = float("nan")
    with pytest.raises(CmadapterError, match="1 caption rows: 7"):
        retrieval_metrics(sim, caption_image)


def test_clip4clip_group_convention():
    caption_video = torch.tensor([0, 0, 1, 2])
    sim = torch.tensor(
        [
            [0.2, 0.9, 0.0],  # video 0's captions are beaten on video 1's column by caption 0
            [0.3, 0.1, 0.0],
            [0.1, 0.5, 0.0],
            [0.5, 0.0, 0.6],
        ]
    )
    # best-caption: video 1's best correct caption (c2 = 0.5) is below c0 (0.9) -> rank 2
    assert video_to_text_ranks(sim, caption_video, "best-caption").tolist() == [2, 2, 1]
    # groups: video 0 column: group0 max(0.2,0.3)=0.3, group1 0.1, group2 0.5 -> rank 2
    assert video_to_text_ranks(sim, caption_video, "clip4clip").tolist() == [2, 2, 1]
    m = retrieval_metrics(sim, caption_video, v2t="clip4clip")
    assert m["v2t"]["convention"] == "clip4clip" and m["v2t"]["queries"] == 3


def test_nan_rows_are_errors_naming_the_rows():
    sim = torch.rand(4, 3)
    sim[2, 1] = float("nan")
    sim[3, 0] = float("inf")
    with pytest.raises(CmadapterError, match=r"2 caption rows: 2 \('c2'\), 3 \('c3'\)"):
        retrieval_metrics(sim, [0, 1, 2, 0], captions=["c0", "c1", "c2", "c3"])


def test_video_without_caption_is_an_error():
    with pytest.raises(CmadapterError, match="no caption"):
        retrieval_metrics(torch.rand(2, 3), [0, 1])


def test_dual_softmax_discounts_a_hub_video():
    # video 0 is everybody's nearest neighbour (a hub); dual softmax lets caption 1 find its own video.
    sim = torch.tensor([[10.0, 1.0], [9.0, 8.5]])
    assert text_to_video_ranks(sim, torch.tensor([0, 1])).tolist() == [1, 2]
    assert text_to_video_ranks(dual_softmax(sim), torch.tensor([0, 1])).tolist() == [1, 1]


def test_inverted_softmax_and_qb_norm():
    sim = torch.tensor([[10.0, 1.0], [9.0, 8.5]])
    assert text_to_video_ranks(inverted_softmax(sim), torch.tensor([0, 1])).tolist() == [1, 1]
    # qb-norm: both queries' top item (video 0) is activated -> same as inverted softmax here
    assert torch.equal(qb_norm(sim), inverted_softmax(sim))
    # a query whose top item no bank query picks keeps its raw scores
    bank = torch.tensor([[5.0, 0.0], [5.0, 0.0]])
    query = torch.tensor([[0.0, 3.0]])
    assert torch.equal(qb_norm(query, bank), query)
