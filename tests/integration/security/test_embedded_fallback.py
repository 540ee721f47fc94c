"""The README's first command on a machine without bwrap: the demo still runs, with a notice."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_demo_falls_back_to_local_with_a_one_line_notice(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "env", "cat"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENT_CLUSTER_")}
    env.update({"PATH": str(bin_dir), "AGENT_CLUSTER_HOME": str(tmp_path / "home")})
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "coordinator.cli",
            "demo",
            "--sessions",
            "1",
            "-m",
            "!sh echo hi there",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    notices = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(notices) == 1 and "no bwrap sandbox here" in notices[0], done.stderr
    assert "[terminal] hi there" in done.stdout
