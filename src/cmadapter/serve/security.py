"""Who may talk to the server: a Host check against DNS rebinding, and no cross-site requests to the API.

**DNS rebinding.** A page on ``evil.example`` can point its own name at 127.0.0.1 after loading; the browser
then sends the page's requests to this server as same-origin, and lets the page read the answers (search
results, the indexed videos). Such requests always carry the page's own name, ``Host: evil.example``. So
every request (the page included) is refused (403) unless its Host, port aside and case-insensitively, is:

- ``localhost`` or a name under it (``*.localhost`` resolves to loopback by specification);
- a loopback IP literal (127.0.0.0/8, ``::1``), or the address the server is bound to; when bound to a
  wildcard address (``0.0.0.0``, ``::``), any IP literal (a rebinding page never sends an IP literal);
- a name given with ``--allow-host`` (a reverse proxy's public name; ``.example.com`` allows the domain and
  its subdomains, as Django's ALLOWED_HOSTS does); ``*`` turns the Host check off (for a proxy that
  checks Host itself); the cross-site rules below still apply.

A request without a Host header is refused too. This is the check Jupyter Server makes (local IPs and
``local_hostnames``), with an explicit list for names instead of its all-or-nothing ``allow_remote_access``.

**Cross-site requests.** A page elsewhere can make the browser send GET requests here (``<img src>`` on a
clip URL makes the server cut a clip) without reading the answer. Every route but the page's own files is
refused when the browser says the request comes from another site: ``Sec-Fetch-Site`` is ``cross-site`` or
``same-site``; or an ``Origin`` header is present and is not this server's own scheme://host:port; or,
with neither header, ``Referer`` names another origin. Typed in the address bar (``Sec-Fetch-Site: none``),
from the page itself (``same-origin``) or from a script (no such header) works. Browsers send
``Sec-Fetch-Site`` only to https and loopback addresses, so on a plain-http LAN address a page elsewhere
can still trigger work (bounded by the export limits) without reading it; answers carry
``Cross-Origin-Resource-Policy: same-origin`` so another site cannot embed them either.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import CmadapterError

log = logging.getLogger(__name__)

WILDCARD_ADDRESSES = ("", "0.0.0.0", "::", "[::]")
_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
_PORT = re.compile(r"[0-9]{0,5}")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_WARNED_LIMIT = 64  # refused Host values logged once each, up to this many


class HostPolicyError(CmadapterError):
    """An ``--allow-host`` value that is not a host name, an IP literal, ``.domain`` or ``*``."""


@dataclass(frozen=True)
class HostPolicy:
    """The Host values a server answers to (see the module's docstring)."""

    allowed_hosts: tuple[str, ...] = ()
    bound_host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        names = tuple(_allowed_name(value) for value in self.allowed_hosts)
        object.__setattr__(self, "allowed_hosts", names)

    @property
    def any_host(self) -> bool:
        return "*" in self.allowed_hosts

    def allows(self, host: str) -> bool:
        """Whether a Host name (port already split off, lowercase, no trailing dot) is allowed."""
        if self.any_host:
            return True
        address = _ip(host)
        if address is not None:
            bound = self.bound_host.strip().strip("[]")
            if address.is_loopback or bound in WILDCARD_ADDRESSES or str(address) in self.allowed_hosts:
                return True
            return address == _ip(bound.lower())
        if host == "localhost" or host.endswith(".localhost") or host == _normal(self.bound_host):
            return True
        return any(
            host == name or (name.startswith(".") and (host.endswith(name) or host == name[1:]))
            for name in self.allowed_hosts
        )


def split_host(value: str) -> tuple[str, int | None] | None:
    """(host, port) of a Host header value, the host lowercase without brackets or a trailing dot; None when
    it is not a valid ``host[:port]``."""
    value = value.strip().lower()
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or _ip(host) is None or (rest and not rest.startswith(":")):
            return None
        port = rest[1:]
    else:
        host, _, port = value.partition(":")
        host = host[:-1] if host.endswith(".") else host
        if not _NAME.fullmatch(host):
            return None
    if not _PORT.fullmatch(port):
        return None
    return host, (int(port) if port else None)


class RequestGuard:
    """ASGI middleware: 403 with a one-line JSON ``detail`` for a Host not allowed, or a cross-site request to
    anything but ``page_paths`` (the page's own files)."""

    def __init__(self, app: ASGIApp, policy: HostPolicy, page_paths: Iterable[str]):
        self.app = app
        self.policy = policy
        self.page_paths = frozenset(page_paths)
        self._warned: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        refusal = self.refusal(scope)
        if refusal is not None:
            return await _refuse(scope, send, refusal)

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Another site's page may not embed these answers (<img>, <video>) even where it can request them.
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"cross-origin-resource-policy", b"same-origin")],
                }
            await send(message)

        await self.app(scope, receive, send_with_policy)

    def refusal(self, scope: Scope) -> str | None:
        """Why this request is refused, or None."""
        headers: dict[str, list[str]] = {}
        for name, value in scope.get("headers", []):
            headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        hosts = headers.get("host", [])
        if len(hosts) != 1:
            return "a request needs exactly one Host header"
        own = split_host(hosts[0])
        if own is None or not self.policy.allows(own[0]):
            self._warn(hosts[0])
            shown = hosts[0][:100]
            return (
                f"Host {shown!r} is not a name this server answers to (add it with `cmadapter serve --allow-host NAME`)"
            )
        if scope.get("path", "") in self.page_paths:
            return None
        return _cross_site(scope, headers, own)

    def _warn(self, host: str) -> None:
        if host not in self._warned and len(self._warned) < _WARNED_LIMIT:
            self._warned.add(host)
            log.warning(
                "refused a request for Host %r: a web page's name pointed at this server (DNS rebinding), or a"
                " proxy's name not given with --allow-host",
                host[:100],
            )


def _cross_site(scope: Scope, headers: dict[str, list[str]], own: tuple[str, int | None]) -> str | None:
    scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme", "http"), scope.get("scheme", "http"))
    here = (scheme, own[0], own[1] or _DEFAULT_PORTS.get(scheme))
    site = (headers.get("sec-fetch-site") or [""])[0].strip().lower()
    if site in ("cross-site", "same-site"):
        return f"a {site} request: the API answers only this server's own page (Sec-Fetch-Site: {site})"
    origins = headers.get("origin")
    if origins is not None:
        if any(_origin(value) != here for value in origins):
            return f"a request from another origin ({origins[0][:100]!r}): the API answers only this server's own page"
        return None
    if not site:
        referers = headers.get("referer") or []
        if referers and _origin(referers[0]) != here:
            return "a request from another site's page (Referer): the API answers only this server's own page"
    return None


def _origin(url: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) of an Origin or Referer value, the port made explicit; None if it has none."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not parts.scheme or not host:
        return None  # "null", an opaque origin, never matches
    scheme = parts.scheme.lower()
    host = host[:-1] if host.endswith(".") else host
    return scheme, host, port or _DEFAULT_PORTS.get(scheme)


async def _refuse(scope: Scope, send: Send, detail: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
        return
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is 127.0.0.1
    return mapped or address


def _normal(name: str) -> str:
    name = name.strip().lower()
    return name[:-1] if name.endswith(".") else name


def _allowed_name(value: str) -> str:
    name = _normal(value)
    if name == "*":
        return name
    if name.startswith("*."):
        raise HostPolicyError(f"--allow-host {value!r}: write {name[1:]!r} to allow the domain and its subdomains")
    bare = name[1:] if name.startswith(".") else name
    if _ip(bare.strip("[]")) is not None and not name.startswith("."):
        return str(_ip(bare.strip("[]")))
    if not _NAME.fullmatch(bare):
        raise HostPolicyError(
            f"--allow-host {value!r}: give a host name (search.example.com), .domain for its subdomains, an IP"
            " address, or *; no scheme, port or path"
        )
    return name
