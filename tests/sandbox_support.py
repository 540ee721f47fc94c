"""Helpers for tests of the tool sandbox (shared by tools and security tests).

A host where ``bwrap`` cannot run skips the sandbox tests with the reason on a
laptop, and fails them in CI (``CI=true``), where ``.ci/run`` installs it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.tools.sandbox import bwrap_problem
from agent.tools.sandbox_config import SandboxConfig


def require_bwrap() -> None:
    """Skip (laptop) or fail (CI) the calling test when the bwrap sandbox cannot run here."""
    problem = bwrap_problem(SandboxConfig())
    if problem is None:
        return
    message = f"the bwrap sandbox cannot run on this host: {problem}"
    if os.environ.get("CI") == "true":
        pytest.fail(message + "; .ci/run must install bubblewrap (apt-get install bubblewrap)")
    pytest.skip(message + " (apt-get install bubblewrap to run these tests)")


def processes_with(marker: str, *, program: str | None = None) -> list[int]:
    """Host pids of live processes whose command line contains ``marker``.

    ``program``: only processes whose command line starts with it (``"sleep"``:
    the sleep itself, not the shell whose ``-c`` script mentions it).
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat[stat.rfind(")") + 2] in "ZX":
            continue
        if program is not None and not cmdline.startswith(program.encode() + b" "):
            continue
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found
