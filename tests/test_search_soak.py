"""A soak test: `serve` answering a client every ~100 ms while the collection changes under it and `index` runs.

Half the videos are stable (never touched), half are volatile: added, deleted, cut off in place (a broken
re-download), renamed, re-added with other pictures, repaired. After each change `index` runs (in this
process, as a thread next to the server's, with the real store and lock). The client checks every answer:

- every request answers 200/206, or 404 for a volatile file (it may be gone or changed since the search);
- each search lists every file of the one generation it comes from (``k`` exceeds the collection), no more;
- stable files are in every answer, and their thumbnails and media ranges always load;
- right after an `index` run, a search lists exactly the good files on disk: the server followed it.
"""

from __future__ import annotations

import os
import random
import threading
import time

import httpx
import pytest

from cmadapter.search.build import BuildOptions, build_index
from cmadapter.serve.app import create_app
from cmadapter.serve.local_server import running_server
from search_fixtures import video

SOAK_SECONDS = float(os.environ.get("CMADAPTER_SOAK_SECONDS", "25"))
OPTIONS = BuildOptions(fps=1, window=2, stride=1, progress=False)


class Collection:
    """The videos on disk, and which of them are good (decodable) right now."""

    def __init__(self, folder):
        self.folder = folder
        self.good: set[str] = set()
        self.volatile: set[str] = set()
        self.changes = 0
        self.lock = threading.Lock()
        self.shift = 0

    def write(self, name: str, stable: bool = False) -> None:
        self.shift += 3
        target = self.folder / name
        video(self.folder / ".incoming.mp4", 2 + self.shift % 3, shift=self.shift % 20)
        with self.lock:
            if not stable:
                self.volatile.add(name)
            os.replace(self.folder / ".incoming.mp4", target)  # a finished download appears whole
            self.good.add(name)

    def mutate(self, rng: random.Random) -> str:
        with self.lock:
            present = sorted(n for n in self.volatile if (self.folder / n).exists())
        action = rng.choice(["add", "delete", "cut", "rename", "repair"] if present else ["add"])
        name = rng.choice(present) if present else None
        if action == "add":
            self.write(f"v{self.changes}.mp4")
        elif action == "delete":
            with self.lock:
                (self.folder / name).unlink()
                self.good.discard(name)
        elif action == "cut":
            data = (self.folder / name).read_bytes()
            with self.lock:
                (self.folder / name).write_bytes(data[: len(data) // 3])  # in place, as a broken download
                self.good.discard(name)
        elif action == "rename":
            new = f"r{self.changes}.mp4"
            with self.lock:
                self.volatile.add(new)
                os.rename(self.folder / name, self.folder / new)
                if name in self.good:
                    self.good.discard(name)
                    self.good.add(new)
        else:
            self.write(name)
        self.changes += 1
        return action


@pytest.mark.slow
def test_serve_stays_correct_while_the_collection_and_the_index_change(tmp_path, tiny_weights):
    folder = tmp_path / "videos"
    folder.mkdir()
    collection = Collection(folder)
    stable = [f"stable{i}.mp4" for i in range(3)]
    for name in stable:
        collection.write(name, stable=True)
    for i in range(3):
        collection.write(f"start{i}.mp4")
    out = tmp_path / "index"
    build_index([folder], out, pretrained=str(tiny_weights), options=OPTIONS)

    failures: list[str] = []
    counts = {"queries": 0, "requests": 0, "404": 0, "index_runs": 0, "followed": 0}
    stop = threading.Event()

    def check(client, url, name, allowed=(200, 206)) -> None:
        answer = client.get(url, headers={"Range": "bytes=0-99"} if "/media/" in url else {})
        counts["requests"] += 1
        if answer.status_code in allowed:
            return
        if answer.status_code == 404 and name not in stable:
            counts["404"] += 1
            return
        failures.append(f"{url} ({name}): {answer.status_code} {answer.text[:200]}")

    def search(client) -> dict | None:
        answer = client.get("/api/search", params={"q": "a grey picture", "k": 100})
        counts["queries"] += 1
        if answer.status_code != 200:
            failures.append(f"search: {answer.status_code} {answer.text[:300]}")
            return None
        return answer.json()

    def client_loop(url: str) -> None:
        try:
            with httpx.Client(base_url=url, timeout=60) as client:
                client_queries(client)
        except Exception as exc:  # a broken connection, a malformed answer: the test fails with it
            failures.append(f"client: {exc!r}")

    def client_queries(client) -> None:
        while not stop.is_set():
            page = search(client)
            if page is not None:
                listed = [os.path.basename(r["video"]) for r in page["results"]]
                if len(listed) != page["files"] or len(set(listed)) != len(listed):
                    failures.append(f"generation {page['generation']}: {page['files']} files, listed {listed}")
                missing = set(stable) - set(listed)
                if missing:
                    failures.append(f"generation {page['generation']}: stable files missing: {missing}")
                for result in page["results"]:
                    name = os.path.basename(result["video"])
                    check(client, result["thumb_urls"][0], name)
                    check(client, result["media_url"], name)
            time.sleep(0.1)

    rng = random.Random(0)
    with running_server(create_app(out)) as url:
        reader = threading.Thread(target=client_loop, args=(url,), daemon=True)
        reader.start()
        deadline = time.monotonic() + SOAK_SECONDS
        with httpx.Client(base_url=url, timeout=60) as client:
            while time.monotonic() < deadline and not failures:
                for _ in range(rng.randint(1, 3)):
                    collection.mutate(rng)
                build_index([folder], out, options=OPTIONS)
                counts["index_runs"] += 1
                with collection.lock:
                    expected = set(collection.good)
                page = search(client)  # right after the run: exactly the good files on disk
                if page is not None:
                    listed = {os.path.basename(r["video"]) for r in page["results"]}
                    if listed != expected:
                        failures.append(
                            f"after run {counts['index_runs']}: listed {sorted(listed)}, on disk {sorted(expected)}"
                        )
                    counts["followed"] += 1
        stop.set()
        reader.join(timeout=60)
    print(
        f"soak: {collection.changes} file changes, {counts['index_runs']} index runs, {counts['queries']} searches, "
        f"{counts['requests']} thumbnail/media requests, {counts['404']} 404s for changed files, "
        f"{len(failures)} failures"
    )
    assert not failures, failures[:5]
    assert counts["index_runs"] >= 5 and counts["queries"] >= 20 and collection.changes >= 5
