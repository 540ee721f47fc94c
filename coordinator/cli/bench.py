"""``agent-cluster bench``: the published benchmark suite (see BENCHMARKS.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from coordinator.cli.settings import HelpFormatter

__all__ = ["add_bench_parser", "cmd_bench"]


def add_bench_parser(sub: Any) -> None:
    """Register ``bench``."""
    bench = sub.add_parser(
        "bench",
        help="benchmark the cluster against the baselines (own redis-server; quick: < 5 min)",
        description=(
            "Measure the cluster against an in-process ideal, rebuild-per-request, stateless "
            "workers and raw rq, on a redis-server and provider simulator it starts itself. "
            "Prints one set of tables; a progress bar goes to standard error."
        ),
        formatter_class=HelpFormatter,
    )
    size = bench.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        dest="size",
        action="store_const",
        const="quick",
        help="the default: every figure at small sizes (under 5 minutes)",
    )
    size.add_argument(
        "--full",
        dest="size",
        action="store_const",
        const="full",
        help="the published sizes: 200 sessions x 20 turns, 1,000,000 sessions "
        "on paper (30 minutes on a loaded 2-core machine)",
    )
    size.add_argument(
        "--smoke",
        dest="size",
        action="store_const",
        const="smoke",
        help="tiny sizes: checks that the suite runs (seconds to a minute)",
    )
    bench.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="write results.json and the PNG charts (matplotlib: "
        "pip install 'agent-cluster[bench]') into DIR",
    )
    bench.add_argument(
        "--markdown",
        type=Path,
        metavar="FILE",
        help="replace the tables between FILE's <!-- bench:start --> and "
        "<!-- bench:end --> markers (e.g. BENCHMARKS.md)",
    )
    bench.add_argument(
        "--figures",
        default="hot,cost,control,paper",
        metavar="LIST",
        help="comma-separated figure groups: hot (1, 2: hot path, Redis per turn), cost (3), "
        "control (4), paper (5)",
    )
    bench.set_defaults(func=cmd_bench, size="quick")


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the suite at the chosen size."""
    from coordinator.bench import plan_named, run_bench

    figures = [name.strip() for name in args.figures.split(",") if name.strip()]
    run_bench(plan_named(args.size), figures=figures, out_dir=args.out, markdown_path=args.markdown)
    return 0
