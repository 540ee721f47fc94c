"""How well the workspace quota holds, and what it costs: volume versus accounting (watch).

Run: ``.venv/bin/python benchmarks/bench_workspace_quota.py [--files N]``

For each way of enforcing the quota (``volume`` needs a root worker with
``mkfs.ext4`` and loop devices; ``watch`` works everywhere), with a 100 MiB
quota and a 1 GiB file-size limit, through the ``terminal`` tool in the bwrap
sandbox:

- the first command of a session (creates, and for ``volume`` formats and
  mounts, the workspace) and a later one;
- four parallel ``head -c 80M`` writers (issue 16: 320 MiB were left);
- ``--files`` empty files (default 200,010: more than the old scan's cut-off),
  then (150 of them deleted) a slow writer adding 1 MiB every 20 ms, to one
  file and to new files.

Usage is what the workspace's files hold afterwards (nothing is deleted, so it
is the most they ever held). Not a test: it never fails on a number.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from agent.tools import ToolContext, ToolEnvironment, default_registry
from agent.tools.sandbox import bwrap_problem
from agent.tools.sandbox_config import SandboxConfig, SandboxLimits
from agent.tools.workspace_quota import workspace_usage
from agent.tools.workspace_volume import volume_problem

MIB = 1024 * 1024
QUOTA = 100 * MIB
PARALLEL = "for i in 1 2 3 4; do head -c 80M /dev/zero > f$i & done; wait"
# 150 files deleted first, so a volume's writer has inodes: the bytes are what stop it.
FREE = "rm -f many/[0-9] many/[0-9][0-9] many/1[0-4][0-9]; "
SLOW_ONE = FREE + "for i in $(seq 150); do head -c 1M /dev/zero >> slow || break; sleep 0.02; done"
SLOW_MANY = FREE + "for i in $(seq 150); do head -c 1M /dev/zero > s$i || break; sleep 0.02; done"


def many_files(count: int) -> str:
    return (
        f"python3 -c \"import os\nos.mkdir('many')\nfor i in range({count}):\n"
        "    try: open(f'many/{i}', 'x').close()\n    except OSError: break\"; ls many | wc -l"
    )


def timed(env: ToolEnvironment, task: str, command: str) -> tuple[float, str]:
    start = time.perf_counter()
    result = default_registry().dispatch(
        "terminal", {"command": command, "timeout": 600}, ToolContext(task, env)
    )
    return time.perf_counter() - start, result.content


def row(mode: str, case: str, seconds: float, used: int, note: str = "") -> None:
    over = max(0.0, used / QUOTA - 1) * 100
    print(f"{mode:7} {case:32} {seconds:8.2f} s {used / MIB:9.1f} MiB {over:6.1f} % {note}")


def run(files: int) -> None:
    problem = bwrap_problem(SandboxConfig())
    if problem is not None:
        raise SystemExit(f"bwrap cannot run here ({problem})")
    modes = ["watch"] if volume_problem() is not None else ["volume", "watch"]
    if len(modes) == 1:
        print(f"volume: not available here ({volume_problem()})")
    print(f"{'mode':7} {'case':32} {'time':>10} {'usage':>13} {'over':>8}")
    limits = SandboxLimits(workspace_bytes=QUOTA, file_bytes=1024 * MIB)
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            env = ToolEnvironment.default(
                Path(tmp) / mode, sandbox=SandboxConfig(limits=limits, workspace_fs=mode)
            )
            try:
                seconds, _ = timed(env, "first", "true")
                row(mode, "first command (create workspace)", seconds, 0)
                seconds, _ = timed(env, "first", "true")
                row(mode, "later command", seconds, 0)
                seconds, _ = timed(env, "parallel", PARALLEL)
                row(mode, "4 x head -c 80M in parallel", seconds, used(env, "parallel"))
                for case, writer in (("one file", SLOW_ONE), ("new files", SLOW_MANY)):
                    task = f"many-{case.split()[0]}"
                    seconds, out = timed(env, task, many_files(files))
                    made = out.split()[0] if out.split() else "?"
                    row(mode, f"{files} empty files", seconds, used(env, task), f"{made} made")
                    seconds, _ = timed(env, task, writer)
                    row(mode, f"then a slow writer ({case})", seconds, used(env, task))
            finally:
                for task in ("first", "parallel", "many-one", "many-new"):
                    env.teardown(task)


def used(env: ToolEnvironment, task: str) -> int:
    return workspace_usage(env.sandbox_path(task))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200_010)
    run(parser.parse_args().files)
