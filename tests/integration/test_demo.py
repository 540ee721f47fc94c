"""The README's first command: ``agent-cluster demo`` on fakeredis, no server, no api key."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def table_rows(stdout: str, first_header: str) -> list[list[str]]:
    """The body rows of the Markdown table whose first header cell is ``first_header``."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} "))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_demo_tells_the_story_with_its_figures(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_CLUSTER_", "OPENAI_"))}
    env["AGENT_CLUSTER_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # Only the sandbox notice may reach stderr (where bwrap cannot run).
    assert all("no bwrap sandbox here" in line for line in done.stderr.splitlines() if line), (
        done.stderr
    )
    for step in range(1, 9):
        assert re.search(rf"^{step}\. ", out, re.M), f"step {step} missing:\n{out}"
    assert "6 cached agents released" in out, "the busting push released every agent"

    sessions = table_rows(out, "session")
    assert [row[0] for row in sessions] == [f"chat-{i}" for i in range(1, 7)]
    first_workers = {row[1].split()[0] for row in sessions}
    assert len(first_workers) >= 2, "sessions spread over the workers"
    for row in sessions:
        worker = row[1].split()[0]
        assert row[1].startswith(f"{worker} built")
        assert row[2].startswith(f"{worker} reused"), "turn 2 reuses the cached agent"
        assert row[3].startswith(f"{worker} rebuilt"), "the push rebuilt every agent"
    drained = re.search(r"^6\. (\S+) drained", out, re.M)
    assert drained is not None
    for row in sessions:
        moved = row[3].split()[0] == drained.group(1)
        assert ("built (moved)" in row[4]) == moved
        assert drained.group(1) not in row[4], "no turn ran on the drained worker"
    assert any(row[1].endswith(" 0% cached") for row in sessions), (
        "the very first call finds nothing cached"
    )
    for row in sessions:
        cached = [int(re.search(r"(\d+)% cached", cell).group(1)) for cell in row[2:]]
        assert min(cached) >= 50, f"the prompt cache hits from turn 2 on: {row}"

    steps = table_rows(out, "step")
    assert [row[0] for row in steps][:2] == ["turn 1", "turn 2"] and len(steps) == 4
    assert [int(row[3]) for row in steps] == [
        6,
        0,
        6,
        sum(drained.group(1) in r[3] for r in sessions),
    ]
    assert "[terminal] day 1: tram 28" in out.split("\n7. ")[1], "the workspace moved on too"
    long_session = table_rows(out, "chat-1 turn")
    summarised = [i for i, row in enumerate(long_session) if "summarised" in row[4]]
    assert len(summarised) == 1 and summarised[0] + 1 < len(long_session), out
    after = long_session[summarised[0] + 1]
    assert int(re.search(r"\((\d+)%\)", after[3]).group(1)) >= 50, (
        f"the turn after the compression reads its prompt from the cache: {after}"
    )
    assert re.search(r"^8\. config v3: model.context_length 4000 with compression on", out, re.M)
    status = table_rows(out, "worker")
    assert len(status) == 2 and drained.group(1) not in {row[0] for row in status}
