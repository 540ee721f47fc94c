"""Tables, JSON and charts of one benchmark run.

Every figure is a ratio against a baseline measured in the same run, with the
absolute figure beside it; nothing here gates anything. :func:`markdown`
renders the tables (the same text goes to the terminal and between the
``<!-- bench:start -->`` / ``<!-- bench:end -->`` markers of BENCHMARKS.md),
:func:`write_json` the raw figures (the PNG charts are
:mod:`coordinator.bench.charts`).
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.errors import ConfigError
from coordinator.bench.control import ControlFigures
from coordinator.bench.economics import BASELINES, COMPRESSING, PROMPT_PUSH_IDEAL, CostRun
from coordinator.bench.hot_path import HotPathFigures, percentile
from coordinator.bench.paper import PaperFigures
from coordinator.bench.waiters import WaitingLevel
from coordinator.bench.why import WHY

__all__ = [
    "BenchResults",
    "usable_cpus",
    "markdown",
    "replace_between_markers",
    "write_json",
]

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
CLUSTER = "agent-cluster"
RAW = "raw rq no-op job"
IDEAL = "in-process ideal"
TURNS_PER_SESSION_MINUTE = 1.0
"""The load assumed for 'sessions one Redis core carries': one turn per active session a minute."""


@dataclass
class BenchResults:
    """Everything one run measured."""

    plan: str
    machine: dict[str, Any]
    hot: HotPathFigures | None = None
    costs: list[CostRun] | None = None
    control: ControlFigures | None = None
    paper: PaperFigures | None = None
    seconds: float = 0.0


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity, not the host's count)."""
    return len(os.sched_getaffinity(0)) or os.cpu_count() or 1


def machine_facts() -> dict[str, Any]:
    """The machine a run was taken on (load average at the start: the machine may be shared)."""
    load = os.getloadavg()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": usable_cpus(),
        "load_average": [round(x, 2) for x in load],
    }


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    line = "| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    return [line, rule, *body]


def _ratio(value: float, base: float) -> str:
    if not base or math.isnan(base) or math.isnan(value):
        return "n/a"
    return f"{value / base:.2f}x"


def _hot_tables(hot: HotPathFigures) -> list[str]:
    out = ["### 1. Hot path: zero-latency model (offline), overhead per turn", ""]
    raw = statistics.median(hot.latency_ms.get(RAW, [math.nan]))
    ideal = statistics.median(hot.latency_ms.get(IDEAL, [math.nan]))
    rows = []
    for name, samples in hot.latency_ms.items():
        p50 = statistics.median(samples)
        rows.append(
            [
                name,
                f"{p50:.3f}",
                f"{percentile(samples, 0.99):.3f}",
                _ratio(p50, raw),
                _ratio(p50, ideal),
                len(samples),
            ]
        )
    out += _table(
        [
            "path (sequential turns)",
            "p50 ms",
            "p99 ms",
            "p50 vs raw rq",
            "p50 vs in-process ideal",
            "turns",
        ],
        rows,
    )
    counts = sorted({*hot.worker_counts, *(n for per in hot.throughput.values() for n in per)})
    measured = [n for n in counts if n <= hot.cpus] or counts[:1]
    out += [
        "",
        f"turns/s with N worker processes (100 sessions, all turns submitted at once; "
        f"this run had {hot.cpus} CPU(s)):",
        "",
    ]
    rows = []
    raw_tp = hot.throughput.get(RAW, {})
    for name, per in hot.throughput.items():
        cells = [_throughput_cell(name, per, raw_tp, n, hot.cpus) for n in counts]
        first, last = per.get(measured[0]), per.get(measured[-1])
        scale = _ratio(last, first) if first and last and len(measured) > 1 else "-"
        rows.append([name, *cells, scale])
    out += _table(
        [
            "path",
            *[f"{n} worker(s): turns/s (vs raw rq)" for n in counts],
            f"{measured[-1]} vs {measured[0]} workers",
        ],
        rows,
    )
    beyond = [n for n in counts if n > hot.cpus]
    if beyond:
        out += [
            "",
            f"{', '.join(map(str, beyond))} worker(s) on {hot.cpus} CPU(s): not meaningful, "
            "not run (more worker processes than CPUs measure contention, not scaling; "
            "run on a machine with at least as many CPUs as workers for that point).",
        ]
    out += ["", "in-process ideal: one process, no Redis, no queue (the ceiling, not a peer)."]
    return out


def _throughput_cell(
    name: str, per: dict[int, float], raw: dict[int, float], workers: int, cpus: int
) -> str:
    if workers in per and workers <= cpus:
        return f"{per[workers]:,.0f} ({_ratio(per[workers], raw.get(workers, math.nan))})"
    if workers > cpus and name != IDEAL:
        return f"not meaningful (> {cpus} CPUs)"
    return "-"


def _redis_tables(hot: HotPathFigures) -> list[str]:
    if not hot.redis_per_turn:
        return []
    out = ["", "### 2. What one Redis carries: per turn (INFO commandstats / INFO cpu)", ""]
    raw = hot.redis_per_turn.get(RAW)
    rows = []
    for name, per in hot.redis_per_turn.items():
        cpu_us = per.cpu_seconds * 1e6
        per_core = 1e6 / cpu_us if cpu_us > 0 else math.nan
        rows.append(
            [
                name,
                f"{cpu_us:,.0f}",
                f"{per.total_calls:.1f}",
                _ratio(cpu_us, raw.cpu_seconds * 1e6) if raw else "n/a",
                _ratio(per.total_calls, raw.total_calls) if raw else "n/a",
                f"{per_core:,.0f}",
                f"{per_core * 60 / TURNS_PER_SESSION_MINUTE:,.0f}",
            ]
        )
    out += _table(
        [
            "path",
            "Redis CPU us/turn",
            "commands/turn",
            "CPU vs raw rq",
            "commands vs raw rq",
            "turns/s per Redis core",
            "active sessions per core (1 turn/min)",
        ],
        rows,
    )
    out += _durability_table(hot)
    ours = hot.redis_per_turn.get(CLUSTER)
    if ours is None:
        return out
    out += ["", "Commands one agent-cluster turn issues (scripts' inner commands counted):", ""]
    rows = []
    for name, count in sorted(ours.calls.items(), key=lambda item: -item[1]):
        if count < 0.02:
            continue
        raw_count = raw.calls.get(name, 0.0) if raw else 0.0
        rows.append(
            [
                name,
                f"{count:.2f}",
                f"{raw_count:.2f}",
                WHY.get(name, "(not attributed)"),
            ]
        )
    out += _table(["command", "per turn", "raw rq per job", "why"], rows)
    return out


def _durability_table(hot: HotPathFigures) -> list[str]:
    if not hot.durability:
        return ["", "durability `replica`: not measured in this run (the figure above is `none`)."]
    out = [
        "",
        "The figure above is durability `none` on a Redis without replicas. With a replica "
        "(a primary and one replica on loopback, 1 worker; latency: sequential turns, "
        "Redis per turn: turns with 64 in flight, the primary's counters):",
        "",
    ]
    base = hot.durability[0]
    rows = []
    for fig in hot.durability:
        cpu_us = fig.redis_per_turn.cpu_seconds * 1e6
        rows.append(
            [
                fig.durability,
                f"{fig.p50_ms:.3f}",
                f"{percentile(fig.latency_ms, 0.99):.3f}",
                f"{fig.turns_per_second:,.0f}",
                f"{cpu_us:,.0f}",
                f"{fig.redis_per_turn.total_calls:.1f}",
                f"{fig.waits_per_turn:.1f}",
                _ratio(fig.p50_ms, base.p50_ms),
                _ratio(cpu_us, base.redis_per_turn.cpu_seconds * 1e6),
                _ratio(fig.redis_per_turn.total_calls, base.redis_per_turn.total_calls),
            ]
        )
    out += _table(
        [
            "redis_durability",
            "turn p50 ms",
            "p99 ms",
            "turns/s",
            "Redis CPU us/turn",
            "commands/turn",
            "WAITs/turn",
            f"p50 vs {base.durability}",
            f"CPU vs {base.durability}",
            f"commands vs {base.durability}",
        ],
        rows,
    )
    return out


def _cost_goal(run: CostRun, runs: list[CostRun]) -> str:
    """Whether a scenario is within 1% of the ideal it is held to."""
    ideal = next((r for r in runs if r.scenario == IDEAL and r.group == run.group), None)
    if run.scenario == "prompt push":
        pushed = next((r for r in runs if r.scenario == PROMPT_PUSH_IDEAL), None)
        if pushed is None:
            return "prompt rewritten: one uncached prefix per session expected"
        met = "met" if run.cost_usd <= pushed.cost_usd * 1.01 else "missed"
        ratio = _ratio(run.cost_usd, pushed.cost_usd)
        return f"prompt rewritten; {ratio} of the ideal under the same push: {met}"
    if ideal is None:
        return ""
    within = "met" if run.cost_usd <= ideal.cost_usd * 1.01 else "missed"
    if run.group == COMPRESSING and not run.compressions:
        return f"{within}, but no session crossed a compression"
    if run.scenario == "max_tokens push":
        return f"{within} (agents rebuilt, stored prompt reused)"
    return within


def _cost_rows(runs: list[CostRun], *, compressions: bool) -> list[list[str]]:
    base = {run.scenario: run for run in runs if run.scenario in BASELINES}
    rows = []
    for run in runs:
        baseline = run.scenario in BASELINES or run.scenario == PROMPT_PUSH_IDEAL
        rows.append(
            [
                run.scenario,
                f"{run.cache_read_share:.1%}",
                f"${run.cost_usd:.4f}",
                *[
                    _ratio(run.cost_usd, base[b].cost_usd) if b in base else "n/a"
                    for b in BASELINES
                ],
                str(run.agents_built),
                *([str(run.compressions)] if compressions else []),
                str(run.turns_lost),
                "" if baseline else _cost_goal(run, runs),
            ]
        )
    return rows


def _cost_tables(costs: list[CostRun]) -> list[str]:
    out = ["", "### 3. Prompt-cache economics (provider simulator, list prices)", ""]
    header = [
        "scenario",
        "cache-read share",
        "cost",
        "vs ideal",
        "vs rebuild/request",
        "vs stateless",
        "agents built",
        "turns lost",
        "goal: within 1% of ideal",
    ]
    for provider in dict.fromkeys(run.provider for run in costs):
        runs = [run for run in costs if run.provider == provider]
        plain = [run for run in runs if run.group != COMPRESSING]
        if plain:
            out += [f"{provider} ({plain[0].turns} turns per run):", ""]
            out += _table(header, _cost_rows(plain, compressions=False))
            out.append("")
        compressing = [run for run in runs if run.group == COMPRESSING]
        if compressing:
            out += [
                f"{provider}, a long session crossing a compression ({compressing[0].turns} "
                f"turns per run; {compressing[0].note}; every row compresses under "
                "the same config):",
                "",
            ]
            out += _table(
                [*header[:7], "turns compressed", *header[7:]],
                _cost_rows(compressing, compressions=True),
            )
            out.append("")
    return out


def _control_table(control: ControlFigures, workers: int) -> list[str]:
    out = ["### 4. Control and failure", ""]
    push, floor = control.push_last_ms, control.publish_floor_ms
    rows = [
        [
            f"config push -> stale agents released on all {workers} workers",
            f"{percentile(push, 0.5):.1f} ms / {percentile(push, 0.99):.1f} ms",
            f"bare PUBLISH -> subscriber {percentile(floor, 0.5):.2f} ms",
            _ratio(percentile(push, 0.5), percentile(floor, 0.5)),
        ],
        [
            "kill -9 -> first handed-on turn answered",
            f"{control.crash_answered:.2f} s",
            f"heartbeat TTL {control.heartbeat_ttl:g} s",
            _ratio(control.crash_answered, control.heartbeat_ttl),
        ],
        [
            "drain (SIGTERM mid-turn) -> exit 0",
            f"{control.drain_seconds:.2f} s",
            f"running turn left {control.drain_turn_left:.2f} s",
            _ratio(control.drain_seconds, control.drain_turn_left),
        ],
    ]
    if control.waiting is not None:
        rows += _waiting_rows(control.waiting)
    out += _table(["measure", "value (p50 / p99)", "floor (baseline)", "ratio"], rows)
    return out


def _waiting_rows(level: WaitingLevel) -> list[list[str]]:
    """Figure 4's waiting-caller rows: one gateway holding ``level.callers`` callers."""
    n = f"{level.callers:,}"
    return [
        [
            f"gateway waiting-caller capacity: {n} callers sent at once, held at most",
            f"{level.held:,} held, {level.answers:,} answered, {level.errors:,} not",
            f"{n} sent",
            _ratio(level.answers, level.callers),
        ],
        [
            f"Redis connections of the gateway holding {n} callers",
            f"{level.redis_conns}",
            f"{level.held:,} callers held",
            "",
        ],
        [
            "gateway memory per waiting caller (RSS growth)",
            f"{level.kib_per_caller:.1f} KiB ({level.settled_held:,} held; "
            f"peak RSS {level.rss_mib:.0f} MiB)",
            "",
            "",
        ],
        [
            f"newcomer's quick message while {n} callers wait (median of 20)",
            f"{level.newcomer_loaded_ms:.1f} ms",
            f"same gateway idle {level.newcomer_idle_ms:.1f} ms",
            _ratio(level.newcomer_loaded_ms, level.newcomer_idle_ms),
        ],
    ]


def _paper_table(paper: PaperFigures) -> list[str]:
    n = paper.workers
    out = ["", f"### 5. Scale on paper: {n:,} workers, {paper.sessions:,} sessions", ""]
    rows = [
        [
            "lookup (HashRing.owner)",
            f"{paper.lookup_ns / 1000:.2f} us",
            f"bare blake2b hash {paper.hash_ns / 1000:.2f} us",
            _ratio(paper.lookup_ns, paper.hash_ns),
            "< 2 us",
        ],
        [
            "one worker joins (ring edit)",
            f"{paper.join_ms:.2f} ms",
            f"ring build {paper.build_ms:.0f} ms",
            _ratio(paper.join_ms, paper.build_ms),
            "< 10 ms",
        ],
        [
            "one worker leaves (ring edit)",
            f"{paper.leave_ms:.2f} ms",
            f"ring build {paper.build_ms:.0f} ms",
            _ratio(paper.leave_ms, paper.build_ms),
            "< 10 ms",
        ],
        [
            "ring placement moved on a join",
            f"{paper.moved_on_join:.3%}",
            f"ideal 1/{n + 1}",
            _ratio(paper.moved_on_join, 1 / (n + 1)),
            "",
        ],
        [
            "ring placement moved on a leave",
            f"{paper.moved_on_leave:.3%}",
            f"ideal 1/{n}",
            _ratio(paper.moved_on_leave, 1 / n),
            "",
        ],
        [
            "sessions moved on a join (sticky ownership)",
            f"{paper.sticky_moved_on_join:.3%}",
            "owners stay while alive",
            "",
            "",
        ],
        [
            "sessions moved on a leave (sticky ownership)",
            f"{paper.sticky_moved_on_leave:.3%}",
            "only the leaver's",
            _ratio(paper.sticky_moved_on_leave, 1 / n),
            "",
        ],
        ["max/mean sessions per worker (no bound)", f"{paper.max_over_mean:.3f}", "1.000", "", ""],
    ]
    out += _table(["measure", "value", "baseline", "ratio", "goal"], rows)
    return out


def markdown(results: BenchResults) -> str:
    """All tables of a run, as Markdown."""
    m = results.machine
    lines = [
        f"Run `{results.plan}` in {results.seconds:.0f} s on {m['cpus']} CPUs, {m['platform']}, "
        f"Python {m['python']}, load average at start {m['load_average']} (a shared machine "
        "inflates absolute times; the ratios are measured in the same run).",
        "",
    ]
    if results.hot is not None:
        lines += _hot_tables(results.hot) + _redis_tables(results.hot)
    if results.costs is not None:
        lines += _cost_tables(results.costs)
    if results.control is not None:
        lines += _control_table(results.control, results.machine.get("push_workers", 0))
    if results.paper is not None:
        lines += _paper_table(results.paper)
    return "\n".join(lines) + "\n"


def _jsonable(results: BenchResults) -> dict[str, Any]:
    hot = results.hot
    return {
        "plan": results.plan,
        "seconds": results.seconds,
        "machine": results.machine,
        "hot_path": None
        if hot is None
        else {
            "latency_ms": hot.latency_ms,
            "throughput": hot.throughput,
            "redis_per_turn": {
                name: {"cpu_us": c.cpu_seconds * 1e6, "calls": dict(c.calls)}
                for name, c in hot.redis_per_turn.items()
            },
            "durability": [fig.as_dict() for fig in hot.durability],
        },
        "costs": None if results.costs is None else [run.as_dict() for run in results.costs],
        "control": None if results.control is None else results.control.as_dict(),
        "paper": None if results.paper is None else results.paper.as_dict(),
    }


def write_json(results: BenchResults, directory: Path) -> Path:
    """Write ``results.json`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "results.json"
    path.write_text(json.dumps(_jsonable(results), indent=1, sort_keys=True) + "\n")
    return path


def replace_between_markers(document: Path, tables: str | None) -> None:
    """Put ``tables`` between the bench markers of ``document`` (the rest is kept);
    ``None`` only checks that the markers are there.

    Raises:
        ConfigError: the document lacks the markers.
    """
    text = document.read_text() if document.exists() else ""
    if START not in text or END not in text:
        raise ConfigError(
            f"{document} has no {START} ... {END} markers: add them where the tables go"
        )
    if tables is None:
        return
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    document.write_text(f"{head}{START}\n{tables}{END}{tail}")
