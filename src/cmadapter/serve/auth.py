"""A server shared beyond this machine: every API and media request needs the token.

    cmadapter serve INDEX --host 0.0.0.0 --token "$(python -c 'import secrets; print(secrets.token_urlsafe(32))')"

A request carries it as ``Authorization: Bearer TOKEN`` (scripts, ``curl``, Prometheus), or as the session cookie
the page's small login form gets from ``POST /api/login``: ``HttpOnly`` (no script reads it), ``SameSite=Strict``
(no other site's page sends it), ``Secure`` over https. The cookie holds an HMAC of the token, not the token, so it
is worthless once the server runs with another token. Both are compared in constant time (``hmac.compare_digest``),
and a wrong login waits a moment before it is answered. Without the token a request is a 401 with a one-line
reason; only the page's own files (they hold no data), the login and logout, and ``/healthz`` are public.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import anyio
from starlette.requests import Request, cookie_parser
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import CmadapterError

COOKIE = "cmadapter_session"
MIN_TOKEN_CHARACTERS = 16
COOKIE_SECONDS = 30 * 24 * 3600
MAX_LOGIN_BYTES = 4096
FAILED_LOGIN_DELAY = 0.5  # seconds before a wrong token is answered: guessing stays slow
LOGIN, LOGOUT, HEALTH = "/api/login", "/api/logout", "/healthz"


class TokenError(CmadapterError):
    """A serve token that is too short or not printable."""


def check_token(token: str) -> str:
    if len(token) < MIN_TOKEN_CHARACTERS or not token.isprintable() or token != token.strip():
        raise TokenError(
            f"a serve token needs at least {MIN_TOKEN_CHARACTERS} printable characters without surrounding spaces;"
            " make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return token


def session_value(token: str) -> str:
    """What the session cookie holds: an HMAC of the token (the token itself never leaves the login request)."""
    return hmac.new(token.encode(), b"cmadapter serve session v1", hashlib.sha256).hexdigest()


class TokenGuard:
    """ASGI middleware: 401 for any request to a path outside ``public_paths`` without the token."""

    def __init__(self, app: ASGIApp, token: str, public_paths: frozenset[str]):
        self.app = app
        self._token = check_token(token).encode()
        self._session = session_value(token).encode()
        self.public_paths = public_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("path") in self.public_paths:
            return await self.app(scope, receive, send)
        if self.authorized(scope):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008, "reason": "this server needs its token"})
        body = json.dumps(
            {"detail": "this server needs its token: log in on the page, or send 'Authorization: Bearer TOKEN'"}
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Bearer realm="cmadapter"'),
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def authorized(self, scope: Scope) -> bool:
        bearer, cookie = b"", b""
        for name, value in scope.get("headers", []):
            name = name.lower()
            if name == b"authorization":
                scheme, _, given = value.strip().partition(b" ")
                if scheme.lower() == b"bearer":
                    bearer = given.strip()
            elif name == b"cookie":
                cookie = cookie_parser(value.decode("latin-1")).get(COOKIE, "").encode("latin-1", "replace") or cookie
        # Both compared every time, in constant time: the answer's timing says nothing about either.
        by_bearer = hmac.compare_digest(bearer, self._token)
        by_cookie = hmac.compare_digest(cookie, self._session)
        return by_bearer or by_cookie


def add_login_routes(app, token: str) -> None:
    """``POST /api/login`` (JSON ``{"token": ...}`` or a form field ``token``) sets the session cookie; ``POST
    /api/logout`` clears it."""
    expected, session = check_token(token).encode(), session_value(token)

    @app.post(LOGIN, status_code=204, responses={401: {}, 422: {}})
    async def login(request: Request) -> Response:
        """Exchange the token for a session cookie (HttpOnly, SameSite=Strict)."""
        body = b""
        async for chunk in request.stream():  # a public route: never hold more than a login's worth
            body += chunk
            if len(body) > MAX_LOGIN_BYTES:
                return JSONResponse({"detail": "the login request is too large"}, status_code=422)

        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}

        request = Request(request.scope, replay)
        try:
            if request.headers.get("content-type", "").startswith("application/json"):
                given = json.loads(body or b"{}").get("token", "")
            else:
                given = (await request.form()).get("token", "")
        except (ValueError, AttributeError):
            return JSONResponse({"detail": 'send {"token": "..."} as JSON or a form field named token'}, 422)
        if not isinstance(given, str) or not hmac.compare_digest(given.encode(), expected):
            await anyio.sleep(FAILED_LOGIN_DELAY)
            return JSONResponse({"detail": "wrong token"}, status_code=401)
        response = Response(status_code=204)
        response.set_cookie(
            COOKIE, session, max_age=COOKIE_SECONDS, path="/", httponly=True, samesite="strict",
            secure=request.url.scheme == "https",
        )  # fmt: skip
        return response

    @app.post(LOGOUT, status_code=204)
    async def logout(request: Request) -> Response:
        """Forget the session cookie."""
        response = Response(status_code=204)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response
