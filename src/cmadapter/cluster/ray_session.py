"""Connecting to Ray: a running cluster (``auto`` or an address) or a local Ray started for this run.

Ray is an optional extra (``pip install 'cmadapter[ray]'``); without it ``--ray`` is a one-line error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import CmadapterError

log = logging.getLogger(__name__)

LOCAL = "local"  # `--ray` without an address: start a Ray on this machine for the run


class RayUnavailable(CmadapterError):
    """Ray is not installed, or the cluster cannot be reached."""


def require_ray():
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise RayUnavailable(
            f"--ray needs Ray Data, which is not installed ({exc.name} is missing): pip install 'cmadapter[ray]'"
        ) from exc
    return ray


@contextmanager
def ray_session(address: str | None = LOCAL, *, num_cpus: int | None = None) -> Iterator:
    """Ray, connected: reuses a session already initialised in this process, else connects or starts one
    (and shuts down only what it started)."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        if address in (None, LOCAL):
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayUnavailable(f"cannot connect to Ray at {address!r}: {exc}") from exc
    log.info("Ray: %s", ray.cluster_resources())
    try:
        yield ray
    finally:
        ray.shutdown()


def cluster_gpus(ray) -> int:
    return int(ray.cluster_resources().get("GPU", 0))
