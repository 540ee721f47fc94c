"""The published benchmark suite behind ``agent-cluster bench``.

What the cluster is worth against the ways people run agents today, measured
in one run on one machine: the hot path and Redis per turn against raw rq and
the stateless designs, prompt-cache economics under change, control and
failure timings, and the ring at 1,000 workers on paper. Every figure is a
ratio against a baseline of the same run; BENCHMARKS.md publishes a full run.
"""

from coordinator.bench.plan import PLANS, BenchPlan, plan_named
from coordinator.bench.suite import run_bench

__all__ = ["PLANS", "BenchPlan", "plan_named", "run_bench"]
