"""CI installs a locked set: every package the project and its tests need is pinned."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[3]
LOCK = ROOT / ".ci" / "constraints.txt"


def _locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"{LOCK.name}: {line!r} is not an exact pin (name==version)"
        pins[_norm(name)] = version
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(root: str, extras: set[str]) -> set[str]:
    """Names of every distribution ``root[extras]`` needs, transitively, as installed."""
    seen: set[str] = set()
    todo: list[tuple[str, set[str]]] = [(root, extras)]
    while todo:
        name, wanted = todo.pop()
        for spec in metadata.requires(name) or []:
            req = Requirement(spec)
            if req.marker is not None and not any(
                req.marker.evaluate({"extra": extra}) for extra in wanted | {""}
            ):
                continue
            dep = _norm(req.name)
            if dep not in seen:
                seen.add(dep)
                todo.append((dep, set(req.extras)))
    return seen


def test_every_dependency_of_the_project_and_its_tests_is_pinned() -> None:
    pins = _locked()
    missing = sorted(_closure("agent-cluster", {"test"}) - set(pins))
    assert not missing, (
        f"not in {LOCK.relative_to(ROOT)}: {missing}; run `bash .ci/refresh-lock` and commit the "
        "lock"
    )


def test_the_build_backend_and_pip_are_pinned_too() -> None:
    pins = _locked()
    assert "setuptools" in pins and "pip" in pins


def test_ci_installs_through_the_lock() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert 'export PIP_CONSTRAINT="$PWD/.ci/constraints.txt"' in script
    assert script.index("PIP_CONSTRAINT") < script.index("pip install")
