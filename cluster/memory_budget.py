"""The worker's memory budget setting: ``2GiB``, ``512MB``, ``80%`` of the memory limit (pure).

``agent_cache_memory`` bounds the worker process' memory (RSS): absolute
(bytes with an optional unit: ``B``, ``KB``/``MB``/``GB`` are powers of 1000,
``KiB``/``MiB``/``GiB`` powers of 1024) or a share of the memory the process
may use (``80%``: of the cgroup v2 limit when one is set, else of the host's
total RAM). This module parses and resolves the value; reading the limit and
the RSS is the worker's (:mod:`worker.memory_guard`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cluster.errors import ConfigError

__all__ = ["MemoryBudget", "parse_memory_budget"]

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_ABSOLUTE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_SHARE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
# Below this a worker cannot hold its own code, let alone agents.
_MIN_BYTES = 64 * 1024**2


@dataclass(frozen=True)
class MemoryBudget:
    """A parsed budget: ``absolute`` bytes, or a ``share`` (0-1] of the process' memory limit."""

    absolute: int | None = None
    share: float | None = None

    def resolve(self, limit_bytes: int) -> int:
        """The budget in bytes, given the memory the process may use (cgroup limit or RAM)."""
        if self.absolute is not None:
            return self.absolute
        assert self.share is not None
        return int(limit_bytes * self.share)

    def __str__(self) -> str:
        if self.absolute is not None:
            return f"{self.absolute} bytes"
        assert self.share is not None
        return f"{self.share * 100:g}% of the memory limit"


def parse_memory_budget(value: object) -> MemoryBudget | None:
    """Parse ``agent_cache_memory``; ``""`` means no budget (``None``).

    Raises:
        ConfigError: not a size (``2GiB``, ``512MB``, ``1073741824``) or a
            share in (0, 100] (``80%``), or an absolute size under 64 MiB.
    """
    if not isinstance(value, str):
        raise ConfigError(
            f"agent_cache_memory must be a size like 2GiB or a share like 80%, got {value!r}"
        )
    if not value.strip():
        return None
    share = _SHARE.match(value)
    if share:
        percent = float(share.group(1))
        if not 0 < percent <= 100:
            raise ConfigError(f"agent_cache_memory as a share must be in (0, 100]%, got {value!r}")
        return MemoryBudget(share=percent / 100)
    absolute = _ABSOLUTE.match(value)
    unit = absolute.group(2).lower() if absolute else ""
    if absolute is None or unit not in _UNITS:
        raise ConfigError(
            f"agent_cache_memory must be a size like 2GiB, 512MB or 1073741824 (bytes), or a "
            f"share of the memory limit like 80%, got {value!r}"
        )
    size = int(float(absolute.group(1)) * _UNITS[unit])
    if size < _MIN_BYTES:
        raise ConfigError(
            f"agent_cache_memory must be at least 64MiB (a worker needs that much for itself), "
            f"got {value!r} ({size} bytes)"
        )
    return MemoryBudget(absolute=size)
