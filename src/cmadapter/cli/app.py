"""The ``cmadapter`` command: a thin layer over the library. Each subcommand parses, calls, prints."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from ..errors import CmadapterError
from ..training.allocator import keep_freed_memory
from .bench_commands import add_bench
from .data_commands import add_prepare
from .export_commands import add_export
from .model_commands import add_convert_official, add_info
from .report_commands import add_report
from .run_commands import add_compare, add_demo, add_eval, add_train
from .search_commands import add_index, add_search
from .serve_commands import add_serve


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="cmadapter", description=__doc__)
    parser.add_argument("--version", action="version", version=f"cmadapter {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        add_demo,
        add_info,
        add_convert_official,
        add_prepare,
        add_train,
        add_eval,
        add_compare,
        add_report,
        add_index,
        add_search,
        add_export,
        add_bench,
        add_serve,
    ):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()  # faster inference and full fine-tuning on CPU; see allocator.py
    # Our own messages at INFO; the libraries we call (open_clip logs to the root logger) at WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("cmadapter").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.run(args)
    except CmadapterError as exc:
        if args.verbose:
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`cmadapter search ... | head`): stop quietly, as shell tools do. Point stdout
        # at /dev/null so the interpreter's final flush does not raise again on the dead pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE


def one_line(exc: CmadapterError) -> str:
    """The error's message; for one re-raised from a data-loader worker (torch wraps it in the worker's
    traceback), the worker's own message, which is the traceback's last line."""
    message = str(exc)
    if "\nOriginal Traceback" not in message:
        return message
    last = message.strip().splitlines()[-1]
    name = f"{type(exc).__module__}.{type(exc).__qualname__}: "
    return last.removeprefix(name) + " (in a data-loader worker)"


if __name__ == "__main__":
    sys.exit(main())
