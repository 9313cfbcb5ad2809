"""The web server: a JSON API over an index (OpenAPI at ``/docs``) and the static page that uses it.

    app = create_app("my_index")          # uvicorn.run(app, host="127.0.0.1", port=8000)

Routes: ``/api/search``, ``/api/adapters``, ``/api/media/{video_id}`` (HTTP Range, so a browser can seek),
``/api/thumbs/{segment_id}/{frame}.jpg``, ``/api/clip/{segment_id}``; the page at ``/``. The index and the
model load once; queries run in FastAPI's thread pool, so slow media requests never block a search.
"""

from __future__ import annotations

import mimetypes
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from ..errors import CmadapterError
from ..search.api import VideoIndex
from .media import MediaLibrary, MediaNotFound

MAX_QUERY_CHARACTERS = 1000
MAX_RESULTS = 100
MAX_OFFSET = 1000


def create_app(index: str | Path | VideoIndex, *, device: str = "cpu") -> FastAPI:
    video_index = index if isinstance(index, VideoIndex) else VideoIndex.open(index, device=device)
    media = MediaLibrary(video_index.root)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        media.close()

    app = FastAPI(title="cmadapter search", version="1", lifespan=lifespan)
    app.state.index, app.state.media = video_index, media

    @app.exception_handler(MediaNotFound)
    async def not_found(request, exc: MediaNotFound):
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.get("/api/adapters")
    def adapters() -> dict:
        """The adapters this index was built with (``zero-shot`` is the plain backbone), default first."""
        return {"adapters": video_index.adapters, "default": video_index.default_adapter}

    @app.get("/api/search")
    def search(
        q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARACTERS, description="the text to find")],
        k: Annotated[int, Query(ge=1, le=MAX_RESULTS, description="videos per page")] = 10,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="videos to skip (paging)")] = 0,
        adapter: Annotated[str | None, Query(description="one of /api/adapters; default: the index's")] = None,
    ) -> dict:
        if not q.strip():
            raise HTTPException(status_code=422, detail="the query is empty")
        if adapter is not None and adapter not in video_index.adapters:
            known = ", ".join(video_index.adapters)
            raise HTTPException(status_code=422, detail=f"unknown adapter {adapter!r}; this index has: {known}")
        try:
            # One more than asked for tells the page whether a next page exists.
            found = video_index.search(q, k=offset + k + 1, adapter=adapter)
        except CmadapterError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        page = found.results[offset : offset + k]
        return {
            "query": found.query,
            "adapter": found.adapter,
            "offset": offset,
            "k": k,
            "more": len(found.results) > offset + k,
            "seconds": {name: round(value, 4) for name, value in found.seconds.items()},
            "results": [_with_links(result.to_dict()) for result in page],
        }

    @app.get("/api/media/{video_id}")
    def video(video_id: int) -> FileResponse:
        path = media.video_file(video_id)
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=kind, content_disposition_type="inline", filename=path.name)

    @app.get("/api/thumbs/{segment_id}/{frame}.jpg")
    def thumbnail(segment_id: int, frame: int) -> Response:
        data = media.thumbnail(segment_id, frame)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/clip/{segment_id}")
    def clip(segment_id: int) -> FileResponse:
        try:
            path, name = media.clip(segment_id)
        except MediaNotFound:
            raise
        except CmadapterError as exc:
            raise HTTPException(status_code=500, detail=str(exc)) from exc
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=kind, filename=name)

    static = files("cmadapter.serve") / "static"
    app.mount("/", StaticFiles(directory=str(static), html=True), name="page")
    return app


def _with_links(result: dict) -> dict:
    """Add the URLs the page needs: the video, each frame's thumbnail, the clip (for every hit)."""

    def links(hit: dict) -> dict:
        segment = hit["segment_id"]
        return {
            **hit,
            "media_url": f"/api/media/{hit['video_id']}",
            "thumb_urls": [f"/api/thumbs/{segment}/{i}.jpg" for i in range(len(hit["frame_times"]))],
            "clip_url": None if hit.get("kind") == "image" else f"/api/clip/{segment}",
            "name": Path(hit["video"]).name,
        }

    return {**links(result), "other_hits": [links(hit) for hit in result.get("other_hits", [])]}
