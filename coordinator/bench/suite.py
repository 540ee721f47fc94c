"""One benchmark run: every figure in order, on its own redis-server, then the report.

``agent-cluster bench`` calls :func:`run_bench`; the figures live in
``hot_path`` (1, 2), ``durability`` (2 with a replica), ``economics`` (3),
``control`` (4) and ``paper`` (5).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Collection
from pathlib import Path
from typing import TextIO

from cluster.errors import ConfigError
from coordinator.bench.charts import check_charts_possible, write_charts
from coordinator.bench.control import measure_control
from coordinator.bench.durability import DURABILITIES, measure_durability
from coordinator.bench.economics import measure_economics
from coordinator.bench.hot_path import measure_hot_path
from coordinator.bench.infra import redis_server, replicated_redis
from coordinator.bench.paper import measure_paper
from coordinator.bench.plan import BenchPlan, Progress
from coordinator.bench.report import (
    BenchResults,
    machine_facts,
    markdown,
    replace_between_markers,
    write_json,
)

__all__ = ["FIGURES", "check_figures", "run_bench"]


FIGURES = ("hot", "cost", "control", "paper")
"""Figure groups: hot path + Redis (1, 2), cost scenarios (3), control (4), on paper (5)."""


def check_figures(names: Collection[str]) -> tuple[str, ...]:
    """The figure groups asked for, in run order.

    Raises:
        ConfigError: an unknown name.
    """
    unknown = sorted(set(names) - set(FIGURES))
    if unknown or not names:
        raise ConfigError(
            f"unknown figure group(s) {', '.join(unknown) or '(none given)'}: choose among "
            f"{', '.join(FIGURES)} (comma-separated)"
        )
    return tuple(name for name in FIGURES if name in names)


def run_bench(
    plan: BenchPlan,
    *,
    figures: Collection[str] = FIGURES,
    out_dir: Path | None = None,
    markdown_path: Path | None = None,
    out: TextIO | None = None,
    progress_out: TextIO | None = None,
) -> BenchResults:
    """Measure every figure of ``plan``, print the tables, write what was asked for.

    Args:
        plan: The sizes (``smoke``, ``quick``, ``full``).
        figures: Which figure groups of :data:`FIGURES` to run (all by default).
        out_dir: Where ``results.json`` and the PNG charts go (none when ``None``).
        markdown_path: A document whose bench markers receive the tables.
        out: Where the tables are printed (standard output).
        progress_out: Where the progress bar is drawn (standard error).

    Raises:
        ConfigError: redis-server is missing, matplotlib is missing for ``out_dir``, the
            markdown document has no markers, or a figure group is unknown.
    """
    chosen = check_figures(figures)
    if out_dir is not None:
        check_charts_possible()
    if markdown_path is not None:
        replace_between_markers(markdown_path, None)  # checks the markers before the run
    out = out if out is not None else sys.stdout
    machine = {**machine_facts(), "push_workers": plan.push_workers}
    progress = Progress(plan.steps_of(chosen, machine["cpus"]), progress_out)
    results = BenchResults(plan=plan.name, machine=machine)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="agent-cluster-bench-") as tmp:
        home = Path(tmp)
        if "hot" in chosen:
            with redis_server(home) as url:
                results.hot = measure_hot_path(
                    plan, redis_url=url, home=home, cpus=machine["cpus"], progress=progress
                )
            with replicated_redis(home / "replicated") as url:
                for durability in DURABILITIES:
                    results.hot.durability.append(
                        measure_durability(
                            url,
                            durability,
                            home=home,
                            turns=plan.latency_turns,
                            throughput_turns=plan.throughput_turns,
                        )
                    )
                    progress.step(f"Redis per turn: durability {durability}, primary + replica")
        if "cost" in chosen:
            with redis_server(home) as url:
                results.costs = measure_economics(plan, redis_url=url, home=home, progress=progress)
        if "control" in chosen:
            with redis_server(home) as url:
                results.control = measure_control(plan, redis_url=url, home=home, progress=progress)
    if "paper" in chosen:
        results.paper = measure_paper(plan, progress=progress)
    progress.finish()
    results.seconds = time.monotonic() - started
    tables = markdown(results)
    out.write(tables)
    out.flush()
    if out_dir is not None:
        write_json(results, out_dir)
        write_charts(results, out_dir)
    if markdown_path is not None:
        replace_between_markers(markdown_path, tables)
    return results
