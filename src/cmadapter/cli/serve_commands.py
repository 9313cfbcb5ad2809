"""`serve`: the web page and JSON API over an index built by `cmadapter index`."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ..serve.app import create_app

    if args.host not in LOCAL_HOSTS:
        log.warning(
            "serving on %s: anyone who can reach this address can search the index and download its video files",
            args.host,
        )
    app = create_app(args.index, device=args.device)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"serving {args.index} at http://{shown}:{args.port}/ (API documentation at /docs); Ctrl-C stops", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def add_serve(sub) -> None:
    p = sub.add_parser("serve", help="a web page to search an index (FastAPI + uvicorn)")
    p.set_defaults(run=run_serve)
    p.add_argument("index", help="an index folder written by `cmadapter index`")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="cpu", help="where the model runs for queries (cpu, cuda)")
