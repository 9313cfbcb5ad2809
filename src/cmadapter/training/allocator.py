"""How the C allocator hands freed memory back: kept in the process, for speed.

glibc returns a freed block to the operating system when it was mapped on its own (by default every
block over a threshold that adapts up to 32 MB) or when the free space at the top of the heap passes a
trim threshold. A forward pass frees tens of MB per block, so glibc gives it back and the next block
faults it in again, zero-filled, page by page, which costs a noticeable share of encoding and full
fine-tuning time (docs/BENCHMARKS.md). ``keep_freed_memory`` keeps it: blocks up to 1 GB come from the heap,
and the heap is never trimmed, so memory is reused instead of faulted in (full fine-tuning's large fp32
gradients included). The process's peak barely moves (the heap keeps what a step needed at its peak), but
memory freed after the peak goes back only when the process ends. The CLI sets it for every command;
library users call it themselves.
"""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 2**30  # larger blocks are still mapped on their own
_NEVER_TRIM = 2**31 - 1  # mallopt takes a C int


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse; True if it took the settings (glibc only)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: nothing to set
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM)) and bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))
