"""Atomic writes: the whole new file or the old one, made durable before and after the rename."""

from __future__ import annotations

import os

import pytest

from cmadapter.files import TEMP_SUFFIX, atomic_path, atomic_write_text, leftover_temporaries


def test_a_write_replaces_the_file_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "sub" / "state.json"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert os.listdir(target.parent) == ["state.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    target = tmp_path / "weights.pt"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as temporary:
        temporary.write_text("half")
        assert temporary.name.startswith("weights.pt.") and temporary.name.endswith(TEMP_SUFFIX)
        raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["weights.pt"]


def test_the_file_and_its_folder_are_synced_around_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        real_fsync(descriptor)

    def replace(source, target):
        events.append(("replace", str(target)))
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "a.bin"
    with atomic_path(target) as temporary:
        temporary.write_bytes(b"data")
    assert [kind for kind, _ in events] == ["fsync", "replace", "fsync"]
    assert events[0][1] == str(temporary)  # the data, under its temporary name
    assert events[2][1] == str(tmp_path)  # the folder, so the rename survives a crash


def test_leftovers_are_only_temporary_files(tmp_path):
    for name in ("a.tmp.b.npy", "x.tmp", f"y.npy.abc{TEMP_SUFFIX}", "z.partial"):
        (tmp_path / name).write_text("")
    assert [p.name for p in leftover_temporaries(tmp_path)] == [f"y.npy.abc{TEMP_SUFFIX}"]
