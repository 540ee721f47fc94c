"""``agent-cluster serve`` with tracemalloc on: SIGUSR1 writes where the gateway's memory went.

Used by ``bench_waiters.py --trace-memory``: the benchmark starts the
gateway through this module instead of ``coordinator.cli``, sends SIGUSR1
while the callers wait, and reads the file named by
``BENCH_TRACEMALLOC_OUT``: one line per source line holding the most
memory, ``size<TAB>count<TAB>file:line``, biggest first, and the same
grouped by package. Tracing slows the process and adds its own overhead,
so the benchmark reports figures of a traced run apart from the others.
"""

from __future__ import annotations

import os
import signal
import sys
import tracemalloc
from collections import defaultdict
from types import FrameType

_TOP = 80


def _package(filename: str) -> str:
    parts = filename.replace("\\", "/").split("/")
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1]
    for root in ("coordinator", "cluster", "agent", "worker"):
        if root in parts:
            return root
    return parts[-2] if len(parts) > 1 else filename


def _dump(_signum: int, _frame: FrameType | None) -> None:
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    stats = snapshot.statistics("lineno")
    packages: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for stat in stats:
        group = packages[_package(stat.traceback[0].filename)]
        group[0] += stat.size
        group[1] += stat.count
    with open(os.environ["BENCH_TRACEMALLOC_OUT"], "w") as out:
        for stat in stats[:_TOP]:
            frame = stat.traceback[0]
            out.write(f"{stat.size}\t{stat.count}\t{frame.filename}:{frame.lineno}\n")
        out.write("--\n")
        for name, (size, count) in sorted(packages.items(), key=lambda kv: -kv[1][0]):
            out.write(f"{size}\t{count}\t{name}\n")


def main() -> int:
    """Trace allocations, then run the command line (``serve ...``) as usual."""
    tracemalloc.start(1)
    signal.signal(signal.SIGUSR1, _dump)
    from coordinator.cli.main import main as cli_main

    return int(cli_main(sys.argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
