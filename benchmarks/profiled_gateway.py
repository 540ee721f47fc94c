"""``agent-cluster serve`` with an on-demand profile: SIGUSR2 starts a window, the next ends it.

Used by ``bench_waiters.py --profile``: the benchmark starts the gateway
through this module instead of ``coordinator.cli`` and sends SIGUSR2 around
each window it measures (callers held with the workers paused; answers
streaming). A window runs :mod:`cProfile` on the event loop's thread and a
probe that asks the loop to run a callback every :data:`PROBE_EVERY`
seconds and records how late it ran (the time any ready callback, a
newcomer's request among them, waits for the loop), and, over the probes
more than :data:`LATE` late, how much of that time the loop's thread was on
a CPU (the gateway's own work) rather than waiting for one (the machine's
other processes: workers, clients, Redis). Ending a window writes
``BENCH_PROFILE_OUT.<n>``: the loop thread's and the process' CPU seconds,
the probe's lateness (median, p99, max, in ms), and the functions with the
most own CPU time (the loop thread's), biggest first (``tottime<TAB>cumtime<TAB>calls<TAB>where``).
The profiler slows what it watches (a CPU-clock read per call): compare
the shares, not the times, with an unprofiled run; with
``BENCH_PROFILE_FUNCTIONS=0`` a window runs the probe alone (nearly free).
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
LATE = 0.01
_TOP = 30


class _Window:
    """One profiling window (started and ended on the loop's thread, by SIGUSR2)."""

    def __init__(self) -> None:
        self.count = 0
        self.profile: cProfile.Profile | None = None
        self.late: list[float] = []
        # Of the probes that ran more than LATE late: wall seconds late, and the loop
        # thread's CPU seconds in the same gaps (the rest: the process waited for a core).
        self.late_wall = self.late_cpu = 0.0
        self.last_cpu = 0.0
        self.started = (0.0, 0.0, 0.0)
        self.probe: asyncio.TimerHandle | None = None

    def toggle(self, _signum: int, _frame: FrameType | None) -> None:
        loop = asyncio.get_running_loop()
        if self.profile is None:
            self.late = []
            self.late_wall = self.late_cpu = 0.0
            self.started = (time.monotonic(), time.thread_time(), time.process_time())
            self.last_cpu = self.started[1]
            due = loop.time() + PROBE_EVERY
            self.probe = loop.call_at(due, self._probe, loop, due)
            self.profile = cProfile.Profile(time.thread_time)  # CPU, not the waits for a core
            if os.environ.get("BENCH_PROFILE_FUNCTIONS", "1") == "1":
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
        rows = []
        if os.environ.get("BENCH_PROFILE_FUNCTIONS", "1") == "1":
            stats = pstats.Stats(self.profile)
            rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:_TOP]  # type: ignore[attr-defined]
        self.profile = None
        late = sorted(self.late) or [0.0]
        with open(f"{os.environ['BENCH_PROFILE_OUT']}.{self.count}", "w") as out:
            out.write(
                f"wall\t{wall:.3f}\nloop_thread_cpu\t{thread:.3f}\nprocess_cpu\t{process:.3f}\n"
            )
            out.write(
                f"probe_late_ms\t{statistics.median(late) * 1000:.2f}\t"
                f"{late[int(len(late) * 0.99) - 1 if len(late) > 1 else 0] * 1000:.2f}\t"
                f"{late[-1] * 1000:.2f}\n"
            )
            out.write(
                f"late_probes_over_{LATE * 1000:g}ms\t{sum(x > LATE for x in late)}\t"
                f"late_s\t{self.late_wall:.3f}\tloop_cpu_in_those_gaps_s\t{self.late_cpu:.3f}\n--\n"
            )
            for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in rows:
                where = f"{filename.split('site-packages/')[-1]}:{line}({name})"
                out.write(f"{tottime:.4f}\t{cumtime:.4f}\t{calls}\t{where}\n")

    def _probe(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        now, cpu = loop.time(), time.thread_time()
        late = max(0.0, now - due)
        self.late.append(late)
        if late > LATE:
            self.late_wall += late
            self.late_cpu += min(late, cpu - self.last_cpu)
        self.last_cpu = cpu
        self.probe = loop.call_at(now + PROBE_EVERY, self._probe, loop, now + PROBE_EVERY)


def main() -> int:
    """Run the command line (``serve ...``) as usual, profiled on SIGUSR2."""
    window = _Window()
    signal.signal(signal.SIGUSR2, window.toggle)
    from coordinator.cli.main import main as cli_main

    return int(cli_main(sys.argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
