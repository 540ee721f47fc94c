"""``agent-cluster serve`` with an on-demand profile: SIGUSR2 starts a window, the next ends it.

Used by ``bench_waiters.py --profile``: the benchmark starts the gateway
through this module instead of ``coordinator.cli`` and sends SIGUSR2 around
each window it measures (callers held with the workers paused; answers
streaming). A window runs :mod:`cProfile` on the event loop's thread and a
probe that asks the loop to run a callback every :data:`PROBE_EVERY`
seconds and records how late it ran (the time any ready callback, a
newcomer's request among them, waits for the loop). Ending a window writes
``BENCH_PROFILE_OUT.<n>``: the loop thread's and the process' CPU seconds,
the probe's lateness (median, p99, max, in ms), and the functions with the
most own time, biggest first (``tottime<TAB>cumtime<TAB>calls<TAB>where``).
The profiler slows what it watches: compare the shares, not the times, with
an unprofiled run.
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import pstats
import signal
import statistics
import sys
import time
from types import FrameType

PROBE_EVERY = 0.005
_TOP = 30


class _Window:
    """One profiling window (started and ended on the loop's thread, by SIGUSR2)."""

    def __init__(self) -> None:
        self.count = 0
        self.profile: cProfile.Profile | None = None
        self.late: list[float] = []
        self.started = (0.0, 0.0, 0.0)
        self.probe: asyncio.TimerHandle | None = None

    def toggle(self, _signum: int, _frame: FrameType | None) -> None:
        loop = asyncio.get_running_loop()
        if self.profile is None:
            self.late = []
            self.started = (time.monotonic(), time.thread_time(), time.process_time())
            due = loop.time() + PROBE_EVERY
            self.probe = loop.call_at(due, self._probe, loop, due)
            self.profile = cProfile.Profile()
            self.profile.enable()
            return
        self.profile.disable()
        if self.probe is not None:
            self.probe.cancel()
        wall, thread, process = (
            time.monotonic() - self.started[0],
            time.thread_time() - self.started[1],
            time.process_time() - self.started[2],
        )
        self.count += 1
        stats = pstats.Stats(self.profile)
        self.profile = None
        rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:_TOP]  # type: ignore[attr-defined]
        late = sorted(self.late) or [0.0]
        with open(f"{os.environ['BENCH_PROFILE_OUT']}.{self.count}", "w") as out:
            out.write(
                f"wall\t{wall:.3f}\nloop_thread_cpu\t{thread:.3f}\nprocess_cpu\t{process:.3f}\n"
            )
            out.write(
                f"probe_late_ms\t{statistics.median(late) * 1000:.2f}\t"
                f"{late[int(len(late) * 0.99) - 1 if len(late) > 1 else 0] * 1000:.2f}\t"
                f"{late[-1] * 1000:.2f}\n--\n"
            )
            for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in rows:
                where = f"{filename.split('site-packages/')[-1]}:{line}({name})"
                out.write(f"{tottime:.4f}\t{cumtime:.4f}\t{calls}\t{where}\n")

    def _probe(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        now = loop.time()
        self.late.append(max(0.0, now - due))
        self.probe = loop.call_at(now + PROBE_EVERY, self._probe, loop, now + PROBE_EVERY)


def main() -> int:
    """Run the command line (``serve ...``) as usual, profiled on SIGUSR2."""
    window = _Window()
    signal.signal(signal.SIGUSR2, window.toggle)
    from coordinator.cli.main import main as cli_main

    return int(cli_main(sys.argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
