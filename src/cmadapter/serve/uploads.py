"""A picture uploaded to ``POST /api/search/image``: one multipart field ``image``, read within a size cap.

The body is read as it arrives and kept only up to ``max_bytes`` (plus the multipart framing); past that it is
read on and dropped, so the client still gets its 422 (a server that answers mid-upload and closes makes most
clients report a broken connection instead), up to ``DRAIN_FACTOR`` times the cap, beyond which the connection is
simply answered and closed. Only then is the form parsed (Starlette's parser, ``python-multipart``): one file,
a few small fields. Decoding the picture is ``search.pictures``'s work.
"""

from __future__ import annotations

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from ..errors import CmadapterError

MiB = 2**20
MAX_UPLOAD_BYTES = 16 * MiB
FRAMING_BYTES = 64 * 1024  # multipart boundaries and part headers around the picture
DRAIN_FACTOR = 4


class UploadError(CmadapterError):
    """An upload that is not one picture within the size cap (HTTP 422)."""


async def read_picture_upload(request: Request, max_bytes: int = MAX_UPLOAD_BYTES) -> tuple[bytes, str]:
    """(the picture's bytes, its file name) from a ``multipart/form-data`` request with a field ``image``."""
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise UploadError("send the picture as multipart/form-data, in a field named 'image'")
    too_large = UploadError(f"the upload is over the {max_bytes / MiB:g} MiB limit for a picture; send a smaller one")
    limit = max_bytes + FRAMING_BYTES
    body, received = bytearray(), 0
    async for chunk in request.stream():
        received += len(chunk)
        if received <= limit:
            body += chunk
        elif received > DRAIN_FACTOR * limit:
            raise too_large
    if received > limit:
        raise too_large

    async def replay():
        return {"type": "http.request", "body": bytes(body), "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=8, max_part_size=64 * 1024)
    except (HTTPException, MultiPartException, ValueError) as exc:
        raise UploadError(f"not a multipart form with one picture: {getattr(exc, 'detail', exc)}") from exc
    try:
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise UploadError("the form has no file field named 'image'")
        data = await upload.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise too_large
        return data, upload.filename or "picture"
    finally:
        await form.close()
