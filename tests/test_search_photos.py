"""Photos in the search index: a folder of mixed photos and videos; photos are one-frame items."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cmadapter.search.api import VideoIndex
from cmadapter.search.build import BuildOptions
from search_fixtures import adapter_file, video


def photo(path, level: int, size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((size[1], size[0], 3), level, dtype=np.uint8)
    pixels[: size[1] // 3, : size[0] // 3] = (255, 40, 40)
    Image.fromarray(pixels).save(path)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, tiny_weights):
    root = tmp_path_factory.mktemp("mixed")
    media = root / "media"
    video(media / "clips" / "a.mp4", 4)
    video(media / "clips" / "b.mp4", 6, shift=5)
    photo(media / "photos" / "red.jpg", 60)
    photo(media / "photos" / "grey.png", 160)
    photo(media / "photos" / "nested" / "dark.webp", 20)
    (media / "photos" / "notes.txt").write_text("not media")
    adapter = adapter_file(tiny_weights, root / "demo.safetensors")
    options = BuildOptions(window=2, stride=1, progress=False, precision="fp32")  # cosines checked in fp32
    report = VideoIndex.build(
        [media], root / "index", pretrained=str(tiny_weights), adapters={"demo": adapter}, options=options
    )
    return root, report


def test_photos_and_videos_are_indexed_and_both_kinds_come_back(mixed):
    root, report = mixed
    assert report.files == 5 and not report.problems
    with VideoIndex.open(root / "index") as index:
        found = index.search("a red square in the corner", k=10).results
        kinds = {r.best.kind for r in found}
        assert kinds == {"video", "image"}, [(r.best.video, r.best.kind) for r in found]
        photos = [r.best for r in found if r.best.kind == "image"]
        assert len(photos) == 3
        for hit in photos:  # one frame, at 0 s, weighted 1
            assert hit.frame_times == [0.0] and hit.frame_weights == pytest.approx([1.0])
            assert hit.best_frame_time == 0.0 and not hit.video.endswith(".txt")
        assert found[0].to_dict()["kind"] in ("video", "image")


def test_a_photo_is_the_plain_cosine_of_its_one_frame(mixed, tiny_weights):
    import torch

    from cmadapter.model import build_model

    root, _ = mixed
    with VideoIndex.open(root / "index") as index:
        hit = next(r.best for r in index.search("a grey picture", k=10).results if r.best.video.endswith("grey.png"))
    model = build_model(pretrained=str(tiny_weights), adapter=str(root / "demo.safetensors"))
    from cmadapter.video.image import load_image
    from cmadapter.video.preprocess import fit_frame, to_model_input

    frame = fit_frame(load_image(root / "media" / "photos" / "grey.png", model.image_size), model.image_size)
    images, _ = to_model_input(frame[None])
    with torch.no_grad():
        text = model.encode_text(model.tokenize(["a grey picture"]))
        image = model.encode_images(images)
    cosine = torch.nn.functional.cosine_similarity(text, image).item()
    assert hit.score == pytest.approx(cosine, abs=2e-3)  # fp16 storage of the frame feature


def test_the_server_shows_photos_without_a_clip(mixed):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from cmadapter.serve.app import create_app

    root, _ = mixed
    with TestClient(create_app(root / "index"), base_url="http://127.0.0.1") as client:  # a Host the server answers
        results = client.get("/api/search", params={"q": "a red square", "k": 10}).json()["results"]
        photo_result = next(r for r in results if r["kind"] == "image")
        assert photo_result["clip_url"] is None
        media = client.get(photo_result["media_url"])
        assert media.status_code == 200 and media.headers["content-type"].startswith("image/")
        assert client.get(photo_result["thumb_urls"][0]).status_code == 200
        response = client.get(f"/api/clip/{photo_result['segment_id']}")
        assert response.status_code == 404 and "photo" in response.json()["detail"]
