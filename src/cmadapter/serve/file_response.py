"""A file sent from one descriptor opened before the response starts: HTTP Range, HEAD, and no surprises.

Starlette's ``FileResponse`` takes a path and opens it again when it sends; between the route's checks and
that open the file can be replaced, and a file rewritten while it is sent goes out half old, half new. Here
the route opens the file once (``open_file``: ``fstat`` on the descriptor says it is a regular file of the
size the caller expects), and every chunk is read from that descriptor with ``pread``. After each read
``fstat`` must still give the size and mtime the response began with. If not (the file shrank, or was
rewritten in place) before the first chunk, the answer is a 404; after it, the response stops before
sending the changed bytes and the connection is closed (the client sees a body shorter than its
Content-Length, never different bytes under the same headers).
A file replaced by a rename keeps being read whole: the descriptor holds the old one.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from email.utils import formatdate
from mimetypes import guess_type
from pathlib import Path
from urllib.parse import quote

import anyio
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from ..errors import CmadapterError

CHUNK_BYTES = 256 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class FileChangedWhileSending(CmadapterError):
    """The file changed size or mtime after its response began; the response was cut short."""


@dataclass
class OpenedFile:
    """A regular file's descriptor and what ``fstat`` said when it was opened; the response closes it."""

    fd: int
    size: int
    mtime_ns: int
    name: str  # the name a download gets

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_file(path: Path, name: str | None = None) -> OpenedFile:
    """Open ``path`` for reading; ``NotARegularFile`` for a folder or a device, ``OSError`` as ``os.open`` raises."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFile(f"{path} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return OpenedFile(fd, info.st_size, info.st_mtime_ns, name if name is not None else path.name)


class NotARegularFile(CmadapterError):
    """A path that names a folder, a device or a pipe, where a file was expected."""


class OpenFileResponse(Response):
    """Send an ``OpenedFile`` (closing it afterwards): 200 or 206 for one byte range, 416, HEAD without a body.

    Several ranges in one request (multipart) are answered with the whole file, as HTTP allows."""

    def __init__(self, opened: OpenedFile, *, disposition: str = "inline", media_type: str | None = None):
        self.opened = opened
        self.status_code = 200
        self.media_type = media_type or guess_type(opened.name)[0] or "application/octet-stream"
        self.background = None
        self.init_headers(
            {
                "accept-ranges": "bytes",
                "content-disposition": content_disposition(disposition, opened.name),
                "last-modified": formatdate(opened.mtime_ns / 1e9, usegmt=True),
                "etag": f'"{opened.size:x}-{opened.mtime_ns:x}"',
            }
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._respond(scope, receive, send)
        finally:
            self.opened.close()

    async def _respond(self, scope: Scope, receive: Receive, send: Send) -> None:
        size = self.opened.size
        request = Headers(scope=scope)
        status, start, stop = 200, 0, size
        headers = self.headers.mutablecopy()
        wanted = request.get("range")
        if_range = request.get("if-range")
        if wanted is not None and (if_range is None or if_range in (headers["etag"], headers["last-modified"])):
            chosen = byte_range(wanted, size)
            if chosen == "unsatisfiable":
                headers["content-range"] = f"bytes */{size}"
                headers["content-length"] = "0"
                await send({"type": "http.response.start", "status": 416, "headers": headers.raw})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            if chosen is not None:
                status, (start, stop) = 206, chosen
                headers["content-range"] = f"bytes {start}-{stop - 1}/{size}"
        # The first chunk is read (and the descriptor checked) before the status goes out: a file that changed
        # between the route's checks and here gets a clean 404, like one that changed a moment earlier, instead
        # of headers followed by a cut connection. Only a change later than the first chunk cuts a body short.
        has_body = scope["method"] != "HEAD" and start < stop
        first = b""
        try:
            if has_body:
                first = await anyio.to_thread.run_sync(self._read, start, min(CHUNK_BYTES, stop - start))
            else:
                self._check_unchanged(0)
        except FileChangedWhileSending as exc:
            await JSONResponse({"detail": str(exc)}, status_code=404)(scope, receive, send)
            return
        headers["content-length"] = str(stop - start)
        await send({"type": "http.response.start", "status": status, "headers": headers.raw})
        if not has_body:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        if start + len(first) == stop:  # the whole body was the first chunk: nothing left to watch
            await send({"type": "http.response.body", "body": first, "more_body": False})
            return
        failure: list[BaseException] = []
        async with anyio.create_task_group() as group:

            async def stream() -> None:
                try:
                    await send({"type": "http.response.body", "body": first, "more_body": True})
                    await self._send_body(send, start + len(first), stop)
                except FileChangedWhileSending as exc:
                    failure.append(exc)
                group.cancel_scope.cancel()

            group.start_soon(stream)
            # uvicorn (ASGI 2.3) lets send() return silently after the client went away: without this the
            # rest of a long range would still be read from disk.
            while (await receive())["type"] != "http.disconnect":
                pass
            group.cancel_scope.cancel()
        if failure:
            raise failure[0]  # the server closes the connection: the body ends short of its Content-Length

    async def _send_body(self, send: Send, start: int, stop: int) -> None:
        offset = start
        while offset < stop:
            chunk = await anyio.to_thread.run_sync(self._read, offset, min(CHUNK_BYTES, stop - offset))
            offset += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": offset < stop})

    def _read(self, offset: int, count: int) -> bytes:
        data = os.pread(self.opened.fd, count, offset)
        self._check_unchanged(count - len(data))
        return data

    def _check_unchanged(self, missing: int) -> None:
        """``FileChangedWhileSending`` if a read came back ``missing`` bytes short or ``fstat`` no longer gives
        the size and mtime the response began with."""
        now = os.fstat(self.opened.fd)
        if missing > 0 or (now.st_size, now.st_mtime_ns) != (self.opened.size, self.opened.mtime_ns):
            raise FileChangedWhileSending(
                f"{self.opened.name} changed while it was being sent (size {self.opened.size} -> {now.st_size});"
                " rerun `cmadapter index` if it is an indexed video"
            )


def byte_range(value: str, size: int) -> tuple[int, int] | str | None:
    """``[start, stop)`` of a ``Range: bytes=…`` header with one range; None: ignore it (malformed, or several
    ranges: the whole file is sent); ``"unsatisfiable"``: no byte of the file is in it (416)."""
    found = _RANGE.fullmatch(value.strip().replace(" ", ""))
    if found is None:
        return None
    first, last = found.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        count = int(last)
        return (max(0, size - count), size) if count > 0 and size > 0 else "unsatisfiable"
    start = int(first)
    stop = size if not last else int(last) + 1
    if last and stop <= start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, min(stop, size)


def content_disposition(kind: str, name: str) -> str:
    """``inline``/``attachment`` with the file name, percent-encoded (RFC 6266) when not plain ASCII; a name
    that is not valid UTF-8 (a path stored losslessly) gets U+FFFD for its undecodable bytes."""
    plain = name.isascii() and name.isprintable() and not any(c in name for c in '"\\;')
    if plain:
        return f'{kind}; filename="{name}"'
    encoded = quote(name.encode("utf-8", "surrogateescape").decode("utf-8", "replace"), safe="")
    return f"{kind}; filename*=utf-8''{encoded}"
