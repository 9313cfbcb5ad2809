"""keep_freed_memory: glibc takes the settings, and the CLI applies them.

Its effect (no page faults from freed memory handed back and faulted in again: 400k per ViT-B/32 video
batch without it) is measured by `cmadapter bench encode`, see docs/BENCHMARKS.md."""

import subprocess
import sys

import pytest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_glibc_accepts_the_settings():
    # In a fresh interpreter: the settings are the process's, not this test session's.
    script = "from cmadapter.training.allocator import keep_freed_memory; print(keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"  # False would mean mallopt refused a value (e.g. over glibc's cap)


def test_every_cli_command_keeps_freed_memory(monkeypatch):
    import cmadapter.cli.app

    calls = []
    monkeypatch.setattr(cmadapter.cli.app, "keep_freed_memory", lambda: calls.append(True) or True)
    assert cmadapter.cli.app.main(["info", "--backbone", "ViT-B-32-quickgelu", "--json"]) == 0
    assert calls == [True]
