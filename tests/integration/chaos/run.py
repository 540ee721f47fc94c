r"""Command line for long chaos runs (the CI test runs the short variant).

Examples::

    .venv/bin/python -m tests.integration.chaos.run \
        --seed 3 --duration 600 --workers 6 --sessions 200
    # harness baseline:
    .venv/bin/python -m tests.integration.chaos.run --seed 3 --duration 30 --no-chaos
    # Redis failover (Sentinel: 1 primary, 2 replicas, 3 Sentinels), the 5-seed table:
    .venv/bin/python -m tests.integration.chaos.run --failover \
        --seeds 1-5 --durability none,replica

Prints a progress line every 5 s, each chaos event as it is played, then the
final table. Exit status 0 when every check passed, 1 otherwise. Logs, the
Redis AOF and the tools' home are kept in ``--workdir`` (a fresh temporary
directory by default, printed at the end).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.integration.chaos.failover import FailoverConfig, run_failover_chaos
from tests.integration.chaos.failover_plan import FAULTS
from tests.integration.chaos.failover_report import format_table
from tests.integration.chaos.harness import ChaosConfig, plan_chaos, run_chaos


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.integration.chaos.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of traffic")
    parser.add_argument("--workers", type=int, default=4, help="workers at the start")
    parser.add_argument(
        "--sessions", type=int, default=None, help="client sessions (100; --failover: 24)"
    )
    parser.add_argument("--threads", type=int, default=16, help="client threads")
    parser.add_argument(
        "--settle",
        type=float,
        default=60.0,
        help="seconds after the traffic that clients keep resubmitting",
    )
    parser.add_argument(
        "--attempt-timeout",
        type=float,
        default=10.0,
        help="seconds without a reply before resubmitting the same id",
    )
    parser.add_argument("--interval", type=float, default=5.0, help="mean seconds between events")
    parser.add_argument(
        "--sh-fraction",
        type=float,
        default=0.3,
        help="share of messages that run '!sh sleep S; echo ...' (0 for plain echo)",
    )
    parser.add_argument("--sh-sleep", type=float, default=0.3)
    parser.add_argument(
        "--burst-fraction",
        type=float,
        default=0.1,
        help="share of sessions sending steer/collect followers while a turn runs (0: none)",
    )
    parser.add_argument("--no-chaos", action="store_true", help="same traffic, no event")
    parser.add_argument("--plan-only", action="store_true", help="print the seeded plan and exit")
    parser.add_argument("--workdir", type=Path, default=None)
    failover = parser.add_argument_group("failover chaos (a replicated Redis behind Sentinel)")
    failover.add_argument(
        "--failover",
        action="store_true",
        help="kill -9 / SIGSTOP the Redis primary and cut a worker off, once each per run",
    )
    failover.add_argument("--seeds", default="1-5", help="e.g. 1-5 or 1,3,7")
    failover.add_argument("--durability", default="none,replica", help="none, replica or both")
    failover.add_argument("--faults", default=",".join(FAULTS), help="fault kinds to play")
    failover.add_argument(
        "--via", choices=("sentinel", "endpoint"), default="sentinel",
        help="workers reach Redis through the Sentinel URL or a proxy that follows the primary",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.failover:
        signal.signal(signal.SIGTERM, _interrupt)
        return failover_table(args)

    if args.plan_only:
        for event in plan_chaos(args.seed, args.duration, args.workers, interval=args.interval):
            print(f"{event.at:8.2f}s  {event.describe()}")
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"chaos-{args.seed}-"))
    config = ChaosConfig(
        seed=args.seed, duration=args.duration, workers=args.workers, sessions=args.sessions or 100,
        workdir=workdir, chaos=not args.no_chaos, threads=args.threads, settle=args.settle,
        attempt_timeout=args.attempt_timeout, interval=args.interval,
        sh_fraction=args.sh_fraction, sh_sleep=args.sh_sleep, burst_fraction=args.burst_fraction,
    )  # fmt: skip
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so every process is stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    result = run_chaos(config, say=lambda line: print(line, flush=True))
    print()
    print(result.report(), flush=True)
    return 0 if not result.failures else 1


def failover_table(args: argparse.Namespace) -> int:
    """One failover run per seed and durability setting; each report, then the table."""
    seeds = _seeds(args.seeds)
    settings = [d.strip() for d in args.durability.split(",") if d.strip()]
    faults = tuple(f.strip() for f in args.faults.split(",") if f.strip())
    root = args.workdir or Path(tempfile.mkdtemp(prefix="failover-chaos-"))
    results = []
    for seed in seeds:
        for durability in settings:
            config = FailoverConfig(
                seed=seed, durability=durability, workdir=root / f"seed{seed}-{durability}",
                faults=faults, via=args.via, sessions=args.sessions or 24,
                attempt_timeout=max(args.attempt_timeout, 20.0),
                sh_fraction=min(args.sh_fraction, 0.2),
                sh_sleep=args.sh_sleep,
            )  # fmt: skip
            result = run_failover_chaos(config, say=lambda line: print(line, flush=True))
            print(result.report(), flush=True)
            results.append(result)
            print(flush=True)
    print(format_table(results))
    print(f"logs and configs in {root}")
    return 0 if not any(r.failures for r in results) else 1


def _seeds(text: str) -> list[int]:
    if "-" in text:
        low, high = text.split("-", 1)
        return list(range(int(low), int(high) + 1))
    return [int(x) for x in text.split(",")]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    sys.exit(main())
