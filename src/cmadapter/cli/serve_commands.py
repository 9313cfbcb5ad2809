"""`serve`: the web page and JSON API over an index built by `cmadapter index`."""

from __future__ import annotations

import argparse
import logging
import os

from ..errors import CmadapterError

log = logging.getLogger(__name__)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
TOKEN_VARIABLE = "CMADAPTER_SERVE_TOKEN"


def serve_token(args: argparse.Namespace) -> str | None:
    """The token from --token-file, --token or $CMADAPTER_SERVE_TOKEN (in that order); checked."""
    from ..serve.auth import check_token

    token = None
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as exc:
            raise CmadapterError(f"--token-file {args.token_file}: {exc.strerror or exc}") from exc
    token = token or args.token or os.environ.get(TOKEN_VARIABLE) or None
    return check_token(token) if token is not None else None


def serve_options(args: argparse.Namespace):
    """The server's options from the command line (a bad --allow-host or token is a one-line error)."""
    from ..search.batching import BatchOptions
    from ..serve.app import ServeOptions
    from ..serve.exports import ClipLimits, MiB
    from ..serve.security import HostPolicy

    allowed = tuple(args.allow_host or ())
    HostPolicy(allowed, args.host)  # checks every --allow-host now, before the index loads
    clips = ClipLimits(cache_bytes=round(args.clip_cache_mb * MiB), encoders=args.clip_encoders)
    token = serve_token(args)
    if args.host not in LOCAL_HOSTS and token is None:
        if not args.no_token:
            raise CmadapterError(
                f"--host {args.host} makes every indexed video readable by anyone who can reach it; give a token"
                f" (--token-file FILE, --token TOKEN or ${TOKEN_VARIABLE}), or --no-token to serve it open anyway"
            )
        log.warning(
            "serving on %s WITHOUT A TOKEN (--no-token): anyone who can reach this address can search the index and"
            " download every indexed video file",
            args.host,
        )
    batching = BatchOptions(max_batch=args.max_batch, window_seconds=args.batch_window_ms / 1000)
    return ServeOptions(
        allowed_hosts=allowed,
        bound_host=args.host,
        clips=clips,
        token=token,
        batching=batching,
        max_upload_bytes=round(args.max_upload_mb * MiB),
    )


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ..serve.app import create_app

    options = serve_options(args)
    app = create_app(args.index, device=args.device, options=options)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    needs = "; every request needs the token" if options.token else ""
    print(
        f"serving {args.index} at http://{shown}:{args.port}/ (API documentation at /docs{needs}); Ctrl-C stops",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def add_serve(sub) -> None:
    p = sub.add_parser("serve", help="a web page to search an index (FastAPI + uvicorn)")
    p.set_defaults(run=run_serve)
    p.add_argument("index", help="an index folder written by `cmadapter index`")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="cpu", help="where the model runs for queries (cpu, cuda)")
    p.add_argument(
        "--allow-host",
        action="append",
        metavar="NAME",
        help="answer requests for this Host name too (a reverse proxy's; .example.com: the domain and its"
        " subdomains; *: no Host check). Repeatable. localhost and loopback addresses are always allowed",
    )
    p.add_argument(
        "--token",
        default=None,
        help=f"every API and media request needs it (Bearer header, or the page's login); also ${TOKEN_VARIABLE}."
        " Other users of this machine can read a command line: prefer --token-file or the variable",
    )
    p.add_argument("--token-file", default=None, metavar="FILE", help="read the token from this file")
    p.add_argument(
        "--no-token",
        action="store_true",
        help="serve on an address beyond this machine without a token (refused otherwise)",
    )
    p.add_argument(
        "--clip-cache-mb", type=float, default=512, help="disk kept for exported clips, least recently used evicted"
    )
    p.add_argument("--clip-encoders", type=int, default=2, help="clip exports running at once; more wait, then 503")
    p.add_argument("--max-batch", type=int, default=16, help="text queries encoded together at most (1: no batching)")
    p.add_argument(
        "--batch-window-ms", type=float, default=5.0, help="how long a query waits for others while searches run"
    )
    p.add_argument("--max-upload-mb", type=float, default=16, help="the largest picture /api/search/image takes")
