"""Where an index keeps its adapters: ``adapters/<name>-<sha256 prefix>.safetensors``, one file per content.

A checkpoint is copied in under its checksum and never rewritten, so a server that reads the adapters
table of one generation always finds the weights that generation's features were encoded with, even while
an ``index`` run replaces the adapter (the new weights land under another name). Files no generation
names any more are removed at the end of an ``index`` run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

ADAPTER_FOLDER = "adapters"
_PREFIX = 16  # hex digits of the sha256 in the file name: plenty to tell versions of one adapter apart


def adapter_path(root: str | Path, name: str, sha256: str) -> Path:
    return Path(root) / ADAPTER_FOLDER / f"{name}-{sha256[:_PREFIX]}.safetensors"


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def unused_adapter_files(root: str | Path, adapters: dict[str, str | None]) -> list[Path]:
    """Checkpoint files in the index's adapter folder that ``adapters`` (name -> sha256) does not name."""
    keep = {adapter_path(root, name, sha) for name, sha in adapters.items() if sha}
    folder = Path(root) / ADAPTER_FOLDER
    return sorted(p for p in folder.glob("*.safetensors") if p not in keep) if folder.is_dir() else []
