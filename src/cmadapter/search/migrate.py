"""Upgrading an index written by an older cmadapter, in place, without encoding anything again.

Version 1 stored paths as text (so a name that is not UTF-8 could not be stored), every file's frame
features as one blob (stage 2 read a whole file's frames for one segment), and adapters as
``adapters/<name>.safetensors`` (replaced in place, so a running server could pair new weights with old
features). Version 2 stores paths as bytes, frames in chunks, adapters under their checksum, and numbers
feature rows by a ``seq`` that only grows. The upgrade is one transaction: a killed upgrade leaves version 1.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from .adapter_files import adapter_path
from .schema import SCHEMA, VERSION, frame_chunk_for

log = logging.getLogger(__name__)

_REBUILT = ("files", "features", "problems")


def upgrade_from_v1(store) -> None:
    """Upgrade the version-1 database ``store`` (an ``IndexStore`` opened for writing) to this version."""
    root, db = store.root, store.db
    dim = int(store.get_meta("dim") or 0)
    chunk = frame_chunk_for(int((store.get_meta("settings") or {}).get("stride_frames", 6)))
    adapters = store.adapters()
    old_files = {name: root / "adapters" / f"{name}.safetensors" for name, sha in adapters.items() if sha}
    for name, old in old_files.items():  # linked under the new names first: the old ones stay until the commit
        new = adapter_path(root, name, adapters[name])
        if old.is_file() and not new.is_file():
            os.link(old, new)
    db.execute("PRAGMA foreign_keys=OFF")  # tables are rebuilt: nothing may cascade meanwhile
    db.execute("PRAGMA legacy_alter_table=ON")  # renaming a table leaves the other tables' references alone
    try:
        with store.transaction():
            for table in _REBUILT:
                db.execute(f"ALTER TABLE {table} RENAME TO old_{table}")
            for statement in filter(None, (s.strip() for s in SCHEMA.split(";"))):
                db.execute(statement)
            db.execute(
                "INSERT INTO files (id, path, kind, size, mtime_ns, ctime_ns, inode, hash, frame_count, times) "
                "SELECT id, CAST(path AS BLOB), kind, size, mtime_ns, 0, 0, hash, frame_count, times FROM old_files"
            )
            db.execute("INSERT INTO problems SELECT CAST(path AS BLOB), size, mtime_ns, reason FROM old_problems")
            rows = db.execute("SELECT file_id, adapter, frames, segments FROM old_features ORDER BY file_id, adapter")
            for file_id, adapter, frames, vectors in rows:
                db.execute(
                    "INSERT INTO features (file_id, adapter, segments) VALUES (?, ?, ?)", (file_id, adapter, vectors)
                )
                features = np.frombuffer(frames, dtype=np.float16).reshape(-1, dim)
                db.executemany(
                    "INSERT INTO frames (file_id, adapter, chunk, data) VALUES (?, ?, ?, ?)",
                    [
                        (file_id, adapter, i, features[i * chunk : (i + 1) * chunk].tobytes())
                        for i in range(-(-len(features) // chunk))
                    ],
                )
            for table in _REBUILT:
                db.execute(f"DROP TABLE old_{table}")
            store.set_meta("version", VERSION)
            store.set_meta("frame_chunk", chunk)
            store.bump_generation()
    finally:
        db.execute("PRAGMA legacy_alter_table=OFF")
        db.execute("PRAGMA foreign_keys=ON")
    for old in old_files.values():
        old.unlink(missing_ok=True)
    log.info("%s: upgraded the index from version 1 to %d", root, VERSION)
