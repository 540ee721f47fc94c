"""The memory budget setting and the worker's memory guard (RSS and limits are passed in)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.errors import ConfigError
from cluster.memory_budget import MemoryBudget, parse_memory_budget
from cluster.settings import ClusterSettings
from worker.memory_guard import MemoryGuard, memory_limit, resolve_budget


@pytest.mark.parametrize(
    ("value", "budget"),
    [
        ("2GiB", MemoryBudget(absolute=2 * 1024**3)),
        ("512MB", MemoryBudget(absolute=512 * 1000**2)),
        ("1.5 GiB", MemoryBudget(absolute=int(1.5 * 1024**3))),
        ("134217728", MemoryBudget(absolute=134217728)),
        ("80%", MemoryBudget(share=0.8)),
        ("", None),
    ],
)
def test_budgets_are_sizes_or_shares(value: str, budget: MemoryBudget | None) -> None:
    assert parse_memory_budget(value) == budget


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("lots", "a size like 2GiB"),
        ("2 GiBs", "a size like 2GiB"),
        ("0%", r"\(0, 100\]"),
        ("150%", r"\(0, 100\]"),
        ("1MiB", "at least 64MiB"),
    ],
)
def test_bad_budgets_say_what_to_write(value: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        ClusterSettings.from_mapping({"agent_cache_memory": value})


def test_a_share_is_of_the_cgroup_limit_else_of_the_ram(tmp_path: Path) -> None:
    proc, cgroup = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    (cgroup / "workers").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text("0::/workers\n")
    (cgroup / "workers" / "memory.max").write_text("1073741824\n")
    assert memory_limit(proc_root=proc, cgroup_root=cgroup) == (1073741824, "cgroup memory.max")
    budget = parse_memory_budget("50%")
    assert budget is not None
    assert resolve_budget(budget, lambda: (1073741824, "cgroup memory.max"))[0] == 536870912
    (cgroup / "workers" / "memory.max").write_text("max\n")
    limit, source = memory_limit(proc_root=proc, cgroup_root=cgroup)
    assert source == "total RAM" and limit > 0


def test_the_guard_hands_each_reading_to_the_cache() -> None:
    readings = iter([500, 950])
    calls: list[tuple[int, int]] = []

    def shed(rss: int, budget: int) -> int:
        calls.append((rss, budget))
        return 1 if rss > 900 else 0

    guard = MemoryGuard(
        budget_bytes=1000, source="1000 bytes", shed=shed, rss=lambda: next(readings)
    )
    assert (guard.check(), guard.check()) == (0, 1)
    assert calls == [(500, 1000), (950, 1000)] and guard.shed_total == 1
