"""How much memory this process holds: the resident set now, and its peak (or CUDA's allocated peak)."""

from __future__ import annotations

import resource

import torch


def _process_status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status (``VmRSS``, ``VmHWM``) in MiB; None where /proc is missing."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def resident_memory_mb() -> float:
    """This process's resident set size now (VmRSS), in MiB; 0 where /proc is missing."""
    return _process_status_mb("VmRSS") or 0.0


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: allocated GPU memory on CUDA, peak resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across exec, so a process started by a
    # large parent would report the parent's size as its own.
    peak = _process_status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB
