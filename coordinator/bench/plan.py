"""How big a benchmark run is, and the progress bar it draws while it runs.

Three sizes: ``smoke`` (seconds: the CLI test), ``quick`` (the default of
``agent-cluster bench``: under 5 minutes on a 2-core machine; the cost
scenarios on OpenAI pricing only, since each scenario starts its own worker
processes) and ``full`` (every figure at the sizes BENCHMARKS.md publishes:
200 sessions x 20 turns on both providers, 1,000 workers x 1,000,000 sessions
on paper).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import TextIO

from cluster.errors import ConfigError

__all__ = ["PLANS", "SCENARIOS", "BenchPlan", "Progress", "plan_named"]


@dataclass(frozen=True)
class BenchPlan:
    """The sizes of one run.

    Attributes:
        name: ``smoke``, ``quick`` or ``full``.
        latency_turns: Sequential turns per path (after 20 warm-up turns).
        throughput_turns: Concurrent turns per throughput figure.
        worker_counts: Worker processes of the scaling curve.
        cost_sessions: Sessions of each prompt-cache scenario.
        cost_turns: Turns per session of each scenario.
        providers: Wire formats the cost scenarios run (each its own pricing).
        scenarios: Cost scenarios run (``coordinator.bench.economics.SCENARIOS``).
        push_workers: Workers holding agents when a config push is measured.
        pushes: Pushes measured (p50, p99 over them).
        waiting_callers: Callers sent at once to one gateway (waiting-caller capacity).
        paper_workers: Workers of the on-paper ring simulation.
        paper_sessions: Sessions of the on-paper ring simulation.
    """

    name: str
    latency_turns: int
    throughput_turns: int
    worker_counts: tuple[int, ...]
    cost_sessions: int
    cost_turns: int
    providers: tuple[str, ...]
    scenarios: tuple[str, ...]
    push_workers: int
    pushes: int
    waiting_callers: int
    paper_workers: int
    paper_sessions: int

    def worker_counts_on(self, cpus: int) -> tuple[int, ...]:
        """The worker counts of the scaling curve a machine of ``cpus`` CPUs can measure.

        More worker processes than CPUs measure contention, not scaling: those are not
        run (the table says so). One worker always runs.
        """
        return tuple(n for n in self.worker_counts if n <= max(1, cpus))

    def steps_of(self, figures: Collection[str], cpus: int) -> int:
        """Progress steps of a run of these figure groups on ``cpus`` CPUs (what the bar counts)."""
        steps = {
            "hot": 1 + 3 * len(self.worker_counts_on(cpus)) + 2,  # + durability none, replica
            "cost": len(self.providers) * (3 + sum(_cost_steps(s) for s in self.scenarios)),
            "control": 4,
            "paper": 1,
        }
        return sum(steps.get(name, 0) for name in figures)


SCENARIOS = (
    "stable",
    "scale out 3->4",
    "drain 1 of 4",
    "non-busting push",
    "max_tokens push",
    "prompt push",
    "worker crash",
    "long session, compression",
)
"""The prompt-cache scenarios of figure 3 (``coordinator.bench.economics``)."""

EXTRA_BASELINE_RUNS = {"prompt push": 1, "long session, compression": 3}
"""Baseline runs a scenario brings (the ideal under the same push; the three baselines
compressing under the same config)."""


def _cost_steps(scenario: str) -> int:
    return 1 + EXTRA_BASELINE_RUNS.get(scenario, 0)


PLANS = {
    "smoke": BenchPlan(
        name="smoke", latency_turns=10, throughput_turns=40, worker_counts=(1,),
        cost_sessions=3, cost_turns=4, providers=("openai",),
        scenarios=("stable", "long session, compression"), push_workers=2, pushes=2,
        waiting_callers=60, paper_workers=50, paper_sessions=5_000,
    ),
    "quick": BenchPlan(
        name="quick", latency_turns=200, throughput_turns=400, worker_counts=(1, 2, 4),
        cost_sessions=20, cost_turns=6, providers=("openai",),
        scenarios=SCENARIOS, push_workers=8, pushes=10,
        waiting_callers=1_000, paper_workers=1_000, paper_sessions=100_000,
    ),
    "full": BenchPlan(
        name="full", latency_turns=1_000, throughput_turns=2_000, worker_counts=(1, 2, 4),
        cost_sessions=200, cost_turns=20, providers=("openai", "anthropic"),
        scenarios=SCENARIOS, push_workers=8, pushes=50,
        waiting_callers=5_000, paper_workers=1_000, paper_sessions=1_000_000,
    ),
}  # fmt: skip


def plan_named(name: str) -> BenchPlan:
    """The plan called ``name``.

    Raises:
        ConfigError: no such plan.
    """
    try:
        return PLANS[name]
    except KeyError:
        raise ConfigError(
            f"unknown benchmark size {name!r}: choose one of {', '.join(PLANS)}"
        ) from None


class Progress:
    """A one-line progress bar on a terminal (one line per step otherwise).

    Args:
        total: Steps the run takes.
        out: Where to draw (standard error: the table goes to standard output).
    """

    WIDTH = 30

    def __init__(self, total: int, out: TextIO | None = None) -> None:
        self._total = max(1, total)
        self._done = 0
        self._out = out if out is not None else sys.stderr
        self._started = time.monotonic()
        self._tty = self._out.isatty()

    def step(self, label: str) -> None:
        """Count one finished step and redraw."""
        self._done = min(self._total, self._done + 1)
        filled = self.WIDTH * self._done // self._total
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        line = (
            f"[{bar}] {self._done}/{self._total} {time.monotonic() - self._started:5.0f}s {label}"
        )
        if self._tty:
            self._out.write("\r\x1b[2K" + line[:120])
            if self._done == self._total:
                self._out.write("\n")
        else:
            self._out.write(line + "\n")
        self._out.flush()

    def finish(self) -> None:
        """End the bar's line (a run may take fewer steps than planned)."""
        if self._tty and self._done < self._total:
            self._out.write("\n")
            self._out.flush()
