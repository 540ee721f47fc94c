"""The worker process sits on top of its parts: no part of ``worker/`` imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

WORKER = Path(__file__).resolve().parents[3] / "worker"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_worker_module_imports_the_worker_process() -> None:
    offenders = sorted(
        str(path.relative_to(WORKER.parent))
        for path in WORKER.rglob("*.py")
        if path.name not in ("process.py", "__init__.py") and "worker.process" in _imports(path)
    )
    assert offenders == [], "type what you need as a Protocol (see worker/health.py)"
