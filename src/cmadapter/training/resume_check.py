"""Resume checks what it resumes: the saved training state records the resolved config it was trained with.

Resuming with a different value of anything that changes the training trajectory (data, model, method,
optimizer, batch size, seed, precision, epochs, …) is an error listing each differing key with both
values, unless ``resume_force`` (``--resume-force``) is set. Only the keys in ``MAY_CHANGE`` may differ
silently: they change where things are written, how often, or how evaluation is chunked, never which
adapter the run trains or selects.

The run folder keeps the ``config.yaml`` the run started with; a resumed run writes its own config beside
it as ``config.resume-<n>.yaml``, after the check.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from ..config import RunConfig, plain, save_config
from ..errors import ConfigError
from .state import TrainState, latest_state, load_train_state

log = logging.getLogger(__name__)

MAY_CHANGE = frozenset(
    {
        "name",  # where the run's files go
        "output_dir",
        "resume",
        "resume_force",
        "data.workers",  # loader processes: same batches in the same order
        "data.videos",  # where the frames come from: the frame cache gives bitwise the clips of its videos
        "data.cache",
        "train.log_every_steps",
        "train.save_every_steps",
        "train.max_steps",  # where to stop, not how to train
        "train.grad_checkpointing",  # recomputes the same activations: same values, less memory
        "train.frozen_weights_in_autocast_dtype",  # bitwise the same results under autocast
        "eval.batch_size",  # how evaluation is chunked
        "eval.text_batch_size",
        "eval.block_size",
        "eval.v2t",  # what is reported (selection uses text-to-video recall)
        "eval.postprocess",
    }
)


def resolved(config: RunConfig) -> dict[str, Any]:
    """The config as the training state stores it (plain JSON values)."""
    return json.loads(json.dumps(plain(config.to_dict())))


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, saved value, current value) for every dotted key outside ``MAY_CHANGE`` whose values differ."""
    before, after = _flatten(saved), _flatten(current)
    missing = object()
    out = []
    for key in sorted(set(before) | set(after)):
        if key in MAY_CHANGE:
            continue
        old, new = before.get(key, missing), after.get(key, missing)
        if old != new:
            out.append((key, None if old is missing else old, None if new is missing else new))
    return out


def check_resume(saved: dict[str, Any] | None, config: RunConfig, source: str) -> None:
    """Raise ``ConfigError`` when ``config`` would continue the state at ``source`` on another trajectory."""
    if saved is None:
        log.warning("%s records no config (written by an older cmadapter): resuming unchecked", source)
        return
    differences = config_differences(saved, resolved(config))
    if not differences:
        return
    listing = "; ".join(f"{key}: {old!r} in the state, {new!r} now" for key, old, new in differences)
    if config.resume_force:
        log.warning("resuming %s with a changed config (resume_force): %s", source, listing)
        return
    raise ConfigError(
        f"cannot resume {source}: the config differs from the one it was trained with ({listing}); "
        "restore those values, or resume anyway with --resume-force (resume_force=true)"
    )


def load_checked_state(config: RunConfig) -> tuple[TrainState | None, Path | None]:
    """The training state ``config.resume`` points to, checked against ``config``; (None, None) for none."""
    if config.resume is None:
        return None, None
    directory = config.run_dir / "checkpoints"
    path = latest_state(directory) if config.resume == "auto" else Path(config.resume)
    if path is None:
        log.info("resume=auto: no training state in %s, starting fresh", directory)
        return None, None
    state = load_train_state(path)
    check_resume(state.config, config, str(path))
    return state, path


def resumed_configs(run_dir: Path) -> list[Path]:
    """The ``config.resume-<n>.yaml`` files of a run folder, in resume order (by n: 10 after 2)."""
    numbered = (re.fullmatch(r"config\.resume-(\d+)\.yaml", p.name) for p in run_dir.iterdir())
    return [run_dir / m[0] for m in sorted((m for m in numbered if m), key=lambda m: int(m[1]))]


def newest_run_config(run_dir: Path) -> Path | None:
    """The config the run's final weights were trained with: the last resume's, else ``config.yaml``."""
    candidates = [run_dir / "config.yaml", *resumed_configs(run_dir)]
    return next((p for p in reversed(candidates) if p.is_file()), None)


def write_run_config(config: RunConfig, run_dir: Path, *, resuming: bool) -> Path:
    """``config.yaml`` for a fresh run; beside the original, ``config.resume-<n>.yaml`` for a resumed one."""
    path = run_dir / "config.yaml"
    if resuming and path.exists():
        path = run_dir / f"config.resume-{len(resumed_configs(run_dir)) + 1}.yaml"
    save_config(config, path)
    return path


def _flatten(values: dict[str, Any]) -> dict[str, Any]:
    """``section.key`` -> value; option mappings (``model.method_options`` …) stay whole, compared as one."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update({f"{key}.{name}": inner for name, inner in value.items()})
        else:
            out[key] = value
    return out
