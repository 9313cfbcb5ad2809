"""The web server: a JSON API over an index (OpenAPI at ``/docs``) and the static page that uses it.

    app = create_app("my_index")          # uvicorn.run(app, host="127.0.0.1", port=8000)

Routes: ``/api/search`` (words, or ``like=SEGMENT_ID&t=SECONDS``: a moment of an indexed video),
``POST /api/search/image`` (a picture, multipart), ``/api/adapters``, ``/api/media/{video_id}`` (HTTP Range, so a
browser can seek; HEAD too), ``/api/thumbs/{segment_id}/{frame}.jpg``, ``/api/clip/{segment_id}``, ``/metrics``
(Prometheus), ``/healthz``; the page at ``/``; with a token, ``/api/login`` and ``/api/logout``. The index and the
model load once; queries run in FastAPI's thread pool, so slow media requests never block a search, and
concurrent text queries share forwards of the text tower (``search.batching``). Every request passes
``metrics.MetricsMiddleware`` (counted), ``security.RequestGuard`` (the Host check, no cross-site requests but to
the page) and, with a token, ``auth.TokenGuard``. The server never writes to the index.
"""

from __future__ import annotations

import sqlite3
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from ..errors import CmadapterError
from ..search.api import SearchResults, VideoIndex
from ..search.batching import BatchOptions
from ..search.errors import NotInIndex
from .auth import HEALTH, LOGIN, LOGOUT, TokenGuard, add_login_routes, check_token
from .exports import ClipLimits, ExportsBusy
from .file_response import OpenFileResponse
from .media import MAX_ID, MediaLibrary, MediaNotFound
from .metrics import MetricsMiddleware, ServeMetrics
from .security import HostPolicy, RequestGuard
from .uploads import MAX_UPLOAD_BYTES, UploadError, read_picture_upload

MAX_QUERY_CHARACTERS = 1000
MAX_RESULTS = 100
MAX_OFFSET = 1000
CLIP_REQUESTS = 16  # clip requests in threads at once (each waits for an export slot, or cuts)
PICTURE_SEARCHES = 4  # picture uploads read and searched at once: their memory is bounded
PICTURE_WAIT_SECONDS = 20.0  # beyond that, a 503 with Retry-After
PICTURE_FORM = {  # the upload's form in the OpenAPI document (the route reads the body itself, within a cap)
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {"image": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


class PicturesBusy(CmadapterError):
    """Every picture-search slot stayed busy for the whole wait (HTTP 503)."""


@dataclass(frozen=True)
class ServeOptions:
    """How a server may be reached, and how much work clip exports may take."""

    allowed_hosts: tuple[str, ...] = ()  # Host names besides localhost and loopback (`--allow-host`; see security.py)
    bound_host: str = "127.0.0.1"  # the address the server listens on (its own Host is allowed)
    clips: ClipLimits = field(default_factory=ClipLimits)
    token: str | None = field(default=None, repr=False)  # every API and media request needs it (auth.py)
    batching: BatchOptions = field(default_factory=BatchOptions)  # text queries sharing a forward (index from a path)
    max_upload_bytes: int = MAX_UPLOAD_BYTES  # a picture sent to /api/search/image


def create_app(index: str | Path | VideoIndex, *, device: str = "cpu", options: ServeOptions | None = None) -> FastAPI:
    options = options or ServeOptions()
    policy = HostPolicy(tuple(options.allowed_hosts), options.bound_host)  # a bad --allow-host fails before loading
    if options.token is not None:
        check_token(options.token)
    video_index = (
        index if isinstance(index, VideoIndex) else VideoIndex.open(index, device=device, batching=options.batching)
    )
    media = MediaLibrary(video_index.root, clips=options.clips)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        media.close()

    app = FastAPI(title="cmadapter search", version="1", lifespan=lifespan)
    metrics = ServeMetrics(video_index)
    app.state.index, app.state.media, app.state.metrics = video_index, media, metrics
    if options.token is not None:
        add_login_routes(app, options.token)

    @app.exception_handler(MediaNotFound)
    async def not_found(request, exc: MediaNotFound):
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(ExportsBusy)
    @app.exception_handler(PicturesBusy)
    async def busy(request, exc: CmadapterError):
        return JSONResponse(status_code=503, content={"detail": str(exc)}, headers={"Retry-After": "5"})

    @app.get("/api/adapters")
    def adapters() -> dict:
        """The adapters this index was built with (``zero-shot`` is the plain backbone), default first."""
        return {"adapters": video_index.adapters, "default": video_index.default_adapter}

    @app.get("/api/search")
    def search(
        q: Annotated[
            str | None, Query(min_length=1, max_length=MAX_QUERY_CHARACTERS, description="the words to look for")
        ] = None,
        like: Annotated[
            int | None, Query(ge=0, le=MAX_ID, description="or: moments like one of this segment's video")
        ] = None,
        t: Annotated[
            float | None, Query(ge=0, le=1e7, description="the moment, seconds (default: the segment's start)")
        ] = None,
        k: Annotated[int, Query(ge=1, le=MAX_RESULTS, description="videos per page")] = 10,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="videos to skip (paging)")] = 0,
        adapter: Annotated[str | None, Query(description="one of /api/adapters; default: the index's")] = None,
    ) -> dict:
        """Videos for words (``q``), or like a moment (``like=SEGMENT_ID``, ``t=SECONDS``) of an indexed video."""
        if (q is None) == (like is None):
            raise HTTPException(status_code=422, detail="give either q (words) or like (a segment id), not both")
        if q is not None and not q.strip():
            raise HTTPException(status_code=422, detail="the query is empty")
        if t is not None and like is None:
            raise HTTPException(status_code=422, detail="t (seconds) goes with like=SEGMENT_ID")
        check_adapter(adapter)
        # One more than asked for tells the page whether a next page exists.
        if like is not None:
            found = answer(lambda: video_index.search_like_segment(like, t, k=offset + k + 1, adapter=adapter))
        else:
            found = answer(lambda: video_index.search(q, k=offset + k + 1, adapter=adapter))
        return page(found, offset, k)

    @app.post("/api/search/image", responses={422: {}, 503: {}}, openapi_extra=PICTURE_FORM)
    async def search_image(
        request: Request,
        k: Annotated[int, Query(ge=1, le=MAX_RESULTS, description="videos per page")] = 10,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="videos to skip (paging)")] = 0,
        adapter: Annotated[str | None, Query(description="one of /api/adapters; default: the index's")] = None,
    ) -> dict:
        """Videos most like a picture (JPEG, PNG, WebP, BMP or GIF in the multipart field ``image``)."""
        check_adapter(adapter)
        admitted = False
        with anyio.move_on_after(PICTURE_WAIT_SECONDS):
            await picture_searches.acquire()
            admitted = True
        if not admitted:
            raise PicturesBusy(f"{PICTURE_SEARCHES} picture searches are already running; try again shortly")
        try:  # each holds its upload (up to the cap) and its decoded picture (up to 40 MP) in memory
            data, name = await read_picture_upload(request, options.max_upload_bytes)
            name = Path(name.replace("\\", "/")).name[:200] or "picture"
            run = lambda: answer(lambda: video_index.search_image(data, k=offset + k + 1, adapter=adapter, name=name))
            return page(await anyio.to_thread.run_sync(run), offset, k)
        except UploadError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        finally:
            picture_searches.release()

    picture_searches = anyio.CapacityLimiter(PICTURE_SEARCHES)

    def check_adapter(adapter: str | None) -> None:
        if adapter is not None and adapter not in video_index.adapters:
            known = ", ".join(video_index.adapters)
            raise HTTPException(status_code=422, detail=f"unknown adapter {adapter!r}; this index has: {known}")

    def answer(search) -> SearchResults:
        try:
            return search()
        except NotInIndex as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        except CmadapterError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc

    def page(found: SearchResults, offset: int, k: int) -> dict:
        return {
            "query": found.query,
            "kind": found.kind,
            "adapter": found.adapter,
            "generation": found.generation,
            "files": found.files,
            "offset": offset,
            "k": k,
            "more": len(found.results) > offset + k,
            "seconds": {name: round(value, 4) for name, value in found.seconds.items()},
            "results": [_with_links(result.to_dict()) for result in found.results[offset : offset + k]],
        }

    @app.get(HEALTH)
    def healthz() -> dict:
        """Whether the index can be read (no token needed; says nothing else)."""
        try:
            video_index.check_adapter(None)  # reads the newest generation
        except (CmadapterError, sqlite3.Error, OSError) as exc:
            raise HTTPException(status_code=503, detail="the index cannot be read") from exc
        return {"status": "ok"}

    @app.get("/metrics", response_class=Response)
    def prometheus() -> Response:
        """Requests and latency per route, index generation, model load time, text batching (Prometheus)."""
        data, media_type = metrics.exposition()
        return Response(data, media_type=media_type)

    file_route = {"response_class": OpenFileResponse, "status_code": 200, "responses": {404: {}, 416: {}}}

    @app.head("/api/media/{video_id}", **file_route)  # what GET answers, without the body
    @app.get("/api/media/{video_id}", **file_route)
    def video(video_id: int) -> OpenFileResponse:
        return OpenFileResponse(media.open_video(video_id), disposition="inline")

    @app.get("/api/thumbs/{segment_id}/{frame}.jpg")
    def thumbnail(segment_id: int, frame: int) -> Response:
        data = media.thumbnail(segment_id, frame)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    # Clip requests wait for an export slot in threads of their own, never in the pool that searches, thumbnails
    # and media use: a flood of exports cannot stall a search. Beyond CLIP_REQUESTS at once they wait here (no
    # thread) as long as for a slot, then get 503 too.
    clip_requests, clip_threads = anyio.CapacityLimiter(CLIP_REQUESTS), anyio.CapacityLimiter(CLIP_REQUESTS)

    @app.get("/api/clip/{segment_id}", response_class=OpenFileResponse, status_code=200, responses={404: {}, 503: {}})
    async def clip(segment_id: int) -> OpenFileResponse:
        admitted = False
        with anyio.move_on_after(options.clips.wait_seconds):
            await clip_requests.acquire()
            admitted = True
        if not admitted:
            raise ExportsBusy(f"{CLIP_REQUESTS} clip requests are already waiting or running; try again shortly")
        try:
            opened = await anyio.to_thread.run_sync(media.clip, segment_id, limiter=clip_threads)
        except (MediaNotFound, ExportsBusy):
            raise
        except CmadapterError as exc:
            raise HTTPException(status_code=500, detail=str(exc)) from exc
        finally:
            clip_requests.release()
        return OpenFileResponse(opened, disposition="attachment")

    static = files("cmadapter.serve") / "static"
    app.mount("/", StaticFiles(directory=str(static), html=True), name="page")
    page_paths = {"/", *(f"/{entry.name}" for entry in static.iterdir() if entry.is_file())}
    if options.token is not None:  # innermost: a request refused by the Host check never reaches it
        public = frozenset({*page_paths, LOGIN, LOGOUT, HEALTH})
        app.add_middleware(TokenGuard, token=options.token, public_paths=public)
    app.add_middleware(RequestGuard, policy=policy, page_paths=page_paths)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=lambda: app.routes)
    return app


def _with_links(result: dict) -> dict:
    """Add the URLs the page needs: the video, each frame's thumbnail, the clip (for every hit). A folder of
    frames has neither a playable file nor a clip; a photo has no clip."""

    def links(hit: dict) -> dict:
        segment, kind = hit["segment_id"], hit.get("kind")
        return {
            **hit,
            "media_url": None if kind == "frames" else f"/api/media/{hit['video_id']}",
            "thumb_urls": [f"/api/thumbs/{segment}/{i}.jpg" for i in range(len(hit["frame_times"]))],
            "clip_url": None if kind in ("image", "frames") else f"/api/clip/{segment}",
            "name": Path(hit["video"]).name,
        }

    return {**links(result), "other_hits": [links(hit) for hit in result.get("other_hits", [])]}
