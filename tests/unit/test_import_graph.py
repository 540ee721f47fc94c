"""The import graph: agent <- worker <- coordinator, cluster shared, the command line on top.

``cluster`` is what both sides share and must import none of ``agent``,
``worker`` or ``coordinator`` (the command line, which imports everything,
lives in ``coordinator/cli/``); ``agent`` imports nothing of ``worker`` or
``coordinator``; ``worker`` nothing of ``coordinator``. The HTTP gateway
(``coordinator/http/``) meets the workers only through ``cluster/`` (stream
events, health records, metric names): it imports nothing of ``worker`` or
``agent``, and importing it loads none of their modules. Inside ``agent``,
the provider simulator (``agent/simulator/``) is a leaf nothing else imports:
what it shares with the providers (reply policy, prices) lives in
``agent/providers/``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "cluster": {"agent", "worker", "coordinator"},
    "agent": {"worker", "coordinator"},
    "worker": {"coordinator"},
    "coordinator/http": {"agent", "worker"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def imported_packages(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imported_modules(path)}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_never_imports_the_layers_above_it(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_importing_the_http_gateway_loads_no_worker_or_agent_module() -> None:
    code = (
        "import sys, coordinator.http.app\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('worker', 'agent')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_only_the_simulator_imports_the_simulator() -> None:
    simulator = ROOT / "agent" / "simulator"
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            name
            for name in imported_modules(path)
            if name == "agent.simulator" or name.startswith("agent.simulator.")
        )
        for path in sorted((ROOT / "agent").rglob("*.py"))
        if simulator not in path.parents
    }
    assert {k: v for k, v in offenders.items() if v} == {}
