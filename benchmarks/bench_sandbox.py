"""What the tool sandbox costs: one terminal command in ``bwrap`` versus ``local``, same run.

Run: ``.venv/bin/python benchmarks/bench_sandbox.py [--repeat N]``

Each row dispatches the ``terminal`` tool the way an agent does (registry,
state store, persisted shell session, output capture) for a trivial command
(``true``), a small one (``echo $HOME && ls``) and one that starts Python
(``/usr/bin/python3 -c pass``), alternating the two backends so both see the same
machine state; a fourth row starts and kills a background process (``local``
sends SIGTERM and waits for the process to go, ``bwrap`` SIGKILLs the
sandbox's monitor at once). The ratio column is bwrap against local. Not a
test: it never fails on a number.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from agent.tools import ToolContext, ToolEnvironment, default_registry
from agent.tools.sandbox import bwrap_problem
from agent.tools.sandbox_config import SandboxConfig
from coordinator.bench.hot_path import percentile

COMMANDS = {
    "true": "true",
    "echo + ls": "echo $HOME && ls -la",
    # The same interpreter for both: the worker's PATH may find a virtualenv's python3 first.
    "/usr/bin/python3 -c pass": "/usr/bin/python3 -c pass",
}


def run(repeat: int) -> None:
    problem = bwrap_problem(SandboxConfig())
    if problem is not None:
        raise SystemExit(f"bwrap cannot run here ({problem}); nothing to compare")
    registry = default_registry()
    with tempfile.TemporaryDirectory() as tmp:
        envs = {
            backend: ToolEnvironment.default(
                Path(tmp) / backend, sandbox=SandboxConfig(backend=backend)
            )
            for backend in ("local", "bwrap")
        }
        samples: dict[tuple[str, str], list[float]] = {}
        for name, command in COMMANDS.items():
            for _ in range(repeat):
                for backend, env in envs.items():
                    ctx = ToolContext("bench", env)
                    start = time.perf_counter()
                    result = registry.dispatch("terminal", {"command": command}, ctx)
                    samples.setdefault((name, backend), []).append(time.perf_counter() - start)
                    assert not result.is_error, result.content
        name = "process start + kill"
        for _ in range(max(5, repeat // 5)):
            for backend, env in envs.items():
                ctx = ToolContext("bench", env)
                start = time.perf_counter()
                started = registry.dispatch(
                    "process", {"action": "start", "command": "sleep 60"}, ctx
                )
                proc_id = started.content.split()[1]
                registry.dispatch("process", {"action": "kill", "id": proc_id}, ctx)
                samples.setdefault((name, backend), []).append(time.perf_counter() - start)
        for env in envs.values():
            env.teardown("bench")
    print(f"terminal tool, {repeat} calls per cell, milliseconds (p50 / p90)\n")
    print("| command | local p50 | local p90 | bwrap p50 | bwrap p90 | bwrap - local p50 | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label in [*COMMANDS, name]:
        local, bwrap = samples[(label, "local")], samples[(label, "bwrap")]
        lp50, bp50 = statistics.median(local), statistics.median(bwrap)
        print(
            f"| {label} | {lp50 * 1e3:.1f} | {percentile(local, 0.9) * 1e3:.1f} | "
            f"{bp50 * 1e3:.1f} | {percentile(bwrap, 0.9) * 1e3:.1f} | "
            f"{(bp50 - lp50) * 1e3:+.1f} | {bp50 / lp50:.2f}x |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    run(parser.parse_args().repeat)


if __name__ == "__main__":
    main()
