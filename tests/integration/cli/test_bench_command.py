"""``agent-cluster bench`` stays runnable: a tiny run prints the tables and fills BENCHMARKS.md.

Not the benchmark itself (``--smoke`` sizes, two figure groups): the command,
its own redis-server (and a primary with a replica), real worker processes,
the baselines and the report.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import RedisServer

pytestmark = pytest.mark.integration


def bench(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "bench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "AGENT_CLUSTER_SANDBOX": "auto"},
    )


def test_a_smoke_run_prints_every_path_against_its_baselines_and_fills_the_markers(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    del redis_server  # the bench starts its own; the fixture skips (or fails in CI) without one
    document = tmp_path / "BENCHMARKS.md"
    document.write_text(
        "# Benchmarks\n\nprose\n<!-- bench:start -->\nold\n<!-- bench:end -->\nend\n"
    )

    done = bench("--smoke", "--figures", "hot,paper", "--markdown", str(document))

    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for path in ("in-process ideal", "rebuild per request", "raw rq no-op job",
                 "stateless workers", "agent-cluster"):  # fmt: skip
        assert f"| {path}" in out, out
    assert "p50 vs raw rq" in out and "Redis CPU us/turn" in out and "| EVALSHA" in out
    # durability replica against none, on the primary and replica the run started
    assert "| redis_durability | turn p50 ms" in out and "| replica " in out
    assert "Scale on paper: 50 workers, 5,000 sessions" in out
    assert "] 1/7 " in done.stderr and "] 7/7 " in done.stderr  # the progress bar, every step
    text = document.read_text()
    assert text.startswith("# Benchmarks\n\nprose\n<!-- bench:start -->\nRun `smoke`")
    assert text.endswith("<!-- bench:end -->\nend\n") and "\nold\n" not in text
    assert out in text


def test_a_document_without_markers_is_refused_before_anything_runs(tmp_path: Path) -> None:
    document = tmp_path / "notes.md"
    document.write_text("no markers here\n")

    done = bench("--smoke", "--markdown", str(document), timeout=30)

    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        f"error: {document} has no <!-- bench:start --> ... <!-- bench:end --> markers: "
        "add them where the tables go"
    )
    assert done.stdout == "" and document.read_text() == "no markers here\n"


def test_an_unknown_figure_group_names_the_choices(tmp_path: Path) -> None:
    done = bench("--smoke", "--figures", "hot,speed", timeout=30)

    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "error: unknown figure group(s) speed: choose among hot, cost, control, paper "
        "(comma-separated)"
    )
