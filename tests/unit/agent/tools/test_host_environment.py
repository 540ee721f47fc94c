"""Every process the worker starts on the host gets an environment the worker builds.

The session's variables reach only its sandboxed command, loaded by the shell
that starts it; ``bwrap``, the process tool's launcher and wrapper and MCP
servers start with :func:`host_environment`. The scan below makes that hold
for every launch in ``agent/tools/``, including ones added later.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

from agent.tools.host_environment import HOST_PATH, host_environment
from agent.tools.sandbox import Sandbox
from agent.tools.sandbox_config import SandboxConfig

TOOLS = Path(__file__).resolve().parents[4] / "agent" / "tools"
_SUBPROCESS_CALLS = {"Popen", "run", "call", "check_call", "check_output"}
# Launchers that take no env= at all (they inherit the worker's, or build argv only).
_FORBIDDEN = {
    ("os", "system"),
    ("os", "popen"),
    ("os", "posix_spawn"),
    ("os", "posix_spawnp"),
    ("asyncio", "create_subprocess_exec"),
    ("asyncio", "create_subprocess_shell"),
    ("anyio", "open_process"),
    ("anyio", "run_process"),
}


def _launches(tree: ast.AST) -> tuple[list[ast.Call], list[str]]:
    """The process launches in ``tree`` and the forbidden ones (as ``module.name``)."""
    launches: list[ast.Call] = []
    forbidden: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "subprocess":
            forbidden.append("from subprocess import ...")
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "StdioServerParameters":
            launches.append(node)
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            owner, name = func.value.id, func.attr
            if owner == "subprocess" and name in _SUBPROCESS_CALLS:
                launches.append(node)
            elif (owner, name) in _FORBIDDEN or (
                owner == "os" and name.startswith(("exec", "spawn"))
            ):
                forbidden.append(f"{owner}.{name}")
    return launches, forbidden


def _env_is_built_by_the_worker(call: ast.Call) -> bool:
    for keyword in call.keywords:
        if keyword.arg == "env":
            value = keyword.value
            return (
                isinstance(value, ast.Call)
                and isinstance(value.func, ast.Name)
                and value.func.id == "host_environment"
            )
    return False


def test_every_host_launch_in_agent_tools_gets_the_environment_the_worker_builds() -> None:
    launching_files = set()
    wrong: list[str] = []
    for path in sorted(TOOLS.glob("*.py")):
        launches, forbidden = _launches(ast.parse(path.read_text(), filename=str(path)))
        wrong += [f"{path.name}: {name} (pass env=host_environment(...))" for name in forbidden]
        for call in launches:
            launching_files.add(path.name)
            if not _env_is_built_by_the_worker(call):
                wrong.append(f"{path.name}:{call.lineno}: env= is not host_environment(...)")
    assert wrong == []
    # The scan sees the launches it must guard (a scan that finds nothing proves nothing).
    assert {"terminal.py", "background.py", "sandbox.py", "mcp_connection.py"} <= launching_files


def test_the_host_environment_takes_nothing_from_the_workers_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "BASH_ENV": "/x/be.sh",
        "ENV": "/x/env.sh",
        "LD_PRELOAD": "/x/p.so",
        "PYTHONPATH": "/x",
        "PATH": "/x/bin",
    }.items():
        monkeypatch.setenv(name, value)
    assert host_environment() == {"PATH": HOST_PATH, "LANG": "C.UTF-8"}
    declared = host_environment({"GITHUB_TOKEN": "declared", "PATH": "/opt/mcp/bin"})
    assert declared["GITHUB_TOKEN"] == "declared" and declared["PATH"] == "/opt/mcp/bin"


def test_a_command_sees_exactly_the_sessions_environment_and_argv_carries_none_of_it(
    tmp_path: Path,
) -> None:
    """The local backend: bash gets the worker's environment; the command gets the session's."""
    session_env = {
        "PATH": HOST_PATH,
        "MY_SETTING": "multi\nline value with spaces",
        "BASH_ENV": str(tmp_path / "missing.sh"),
    }
    sandbox = Sandbox(SandboxConfig(backend="local"), "local")
    with sandbox.command(
        tmp_path, ["/usr/bin/env", "-0"], cwd=str(tmp_path), env=session_env
    ) as spec:
        assert not any("line value" in arg or "missing.sh" in arg for arg in spec.argv)
        done = subprocess.run(
            spec.argv,
            cwd=spec.cwd,
            env=host_environment(),
            pass_fds=spec.pass_fds,
            capture_output=True,
            check=True,
        )
    seen = dict(entry.split("=", 1) for entry in done.stdout.decode().split("\0") if entry)
    for managed in ("_", "SHLVL"):  # bash sets both for every program it runs
        seen.pop(managed, None)
    assert seen == session_env
