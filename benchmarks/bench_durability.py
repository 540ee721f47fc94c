"""What ``redis_durability: replica`` costs per turn, against ``none``, in one run.

Run: ``.venv/bin/python benchmarks/bench_durability.py [--turns 200] [--throughput-turns 600]
[--rounds 2]``

Starts its own Redis primary and one replica (loopback ports), then for each
setting (``none`` first: the baseline), in ``--rounds`` alternating rounds,
measures one worker process and a coordinator with that setting
(:func:`coordinator.bench.durability.measure_durability`, the same code as figure 2 of
``agent-cluster bench``): the sequential latency of a turn (offline zero-latency
model: submit -> enqueue -> claim -> lease -> commit -> reply) and turns per
second with 64 turns in flight, with the primary's Redis CPU and commands per
turn. With ``replica`` four writes of each turn (enqueue, claim, lease, commit)
wait for ``WAIT n`` (every attached replica: here one) and read ``ROLE`` on
their own connection, in the same round trip.

On loopback the replica acknowledges within the event loop's next turn, so
this is the floor of the cost; across hosts add one network round trip per
write (four per turn).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from coordinator.bench.durability import DURABILITIES, DurabilityFigures, measure_durability
from coordinator.bench.hot_path import percentile
from coordinator.bench.infra import replicated_redis


def _row(runs: list[DurabilityFigures]) -> dict[str, float]:
    return {
        "waits": statistics.median(r.waits_per_turn for r in runs),
        "p50": statistics.median(r.p50_ms for r in runs),
        "p99": statistics.median(percentile(r.latency_ms, 0.99) for r in runs),
        "per_second": statistics.median(r.turns_per_second for r in runs),
        "cpu_us": statistics.median(r.redis_per_turn.cpu_seconds * 1e6 for r in runs),
        "commands": statistics.median(r.redis_per_turn.total_calls for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--throughput-turns", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=2, help="alternating none/replica runs")
    args = parser.parse_args()
    runs: dict[str, list[DurabilityFigures]] = {mode: [] for mode in DURABILITIES}
    with tempfile.TemporaryDirectory() as tmp, replicated_redis(Path(tmp) / "redis") as url:
        for n in range(args.rounds):  # alternate, so warm-up and noise hit both
            for mode in DURABILITIES if n % 2 == 0 else DURABILITIES[::-1]:
                runs[mode].append(
                    measure_durability(
                        url,
                        mode,
                        home=Path(tmp),
                        turns=args.turns,
                        throughput_turns=args.throughput_turns,
                        namespace=f"bd{mode}{n}",
                    )
                )
    base, durable = (_row(runs[mode]) for mode in DURABILITIES)
    print(f"primary + 1 replica on loopback; {args.turns} sequential turns, "
          f"{args.throughput_turns} turns with 64 in flight (1 worker, offline model); "
          f"median of {args.rounds} alternating runs\n")  # fmt: skip
    print(
        "| redis_durability | WAITs/turn | p50 ms | p99 ms | turns/s | Redis CPU us/turn "
        "| commands/turn | p50 ratio | turns/s ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, row in (("none (baseline)", base), ("replica", durable)):
        print(
            f"| {name} | {row['waits']:.1f} | {row['p50']:.2f} | {row['p99']:.2f} | "
            f"{row['per_second']:.0f} | {row['cpu_us']:.0f} | {row['commands']:.1f} | "
            f"{row['p50'] / base['p50']:.2f}x | {row['per_second'] / base['per_second']:.2f}x |"
        )


if __name__ == "__main__":
    main()
