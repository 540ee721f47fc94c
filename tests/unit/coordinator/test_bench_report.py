"""The benchmark report: ratios against the run's own baselines, pending rows, the markers."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from cluster.errors import ConfigError
from coordinator.bench.economics import CostRun
from coordinator.bench.hot_path import HotPathFigures
from coordinator.bench.infra import RedisCounters
from coordinator.bench.plan import PLANS, Progress, plan_named
from coordinator.bench.report import BenchResults, markdown, replace_between_markers

MACHINE = {"cpus": 2, "platform": "test", "python": "3.11", "load_average": [0.1, 0.1, 0.1]}


def _run(scenario: str, cost: float, built: int, answered: int = 10) -> CostRun:
    return CostRun("openai", scenario, 10, answered, built, cost, 0.9, 1000, 1.0)


def test_cost_rows_are_ratios_to_each_baseline_and_say_whether_the_goal_is_met() -> None:
    costs = [
        _run("in-process ideal", 1.00, 2),
        _run("rebuild per request", 1.00, 10),
        _run("stateless workers", 2.00, 10),
        _run("stable", 1.005, 2),
        _run("worker crash", 1.10, 3, answered=9),
        _run("busting push", 1.50, 4),
        CostRun("openai", "compression", 0, 0, 0, 0.0, 0.0, 0, 0.0, pending="lands with 21"),
    ]
    text = markdown(BenchResults(plan="quick", machine=MACHINE, costs=costs))

    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("|")}
    assert [c.strip() for c in rows["stable"].split("|")[4:10]] == [
        "1.00x", "1.00x", "0.50x", "2", "0", "met"
    ]  # fmt: skip
    assert [c.strip() for c in rows["worker crash"].split("|")[4:10]] == [
        "1.10x", "1.10x", "0.55x", "3", "1", "missed"
    ]  # fmt: skip
    assert "busting: rebuilds expected" in rows["busting push"]
    assert "pending" in rows["compression"] and "lands with 21" in rows["compression"]


def _rows(text: str, name: str) -> list[list[str]]:
    """The cells of every table row whose first cell is ``name``."""
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines()]
    return [row for row in rows if row and row[0] == name]


def test_redis_rows_compare_cpu_and_commands_with_the_raw_rq_job() -> None:
    raw = RedisCounters(calls={"HSET": 16.0, "EXPIRE": 17.0}, cpu_seconds=8e-4)
    ours = RedisCounters(calls={"HSET": 22.0, "EVALSHA": 4.0}, cpu_seconds=2e-4)
    hot = HotPathFigures(
        latency_ms={"raw rq no-op job": [2.0, 2.0], "agent-cluster": [1.0, 1.0]},
        throughput={"raw rq no-op job": {2: 100.0}, "agent-cluster": {2: 250.0}},
        redis_per_turn={"raw rq no-op job": raw, "agent-cluster": ours},
    )
    text = markdown(BenchResults(plan="quick", machine=MACHINE, hot=hot))

    latency, throughput, redis = _rows(text, "agent-cluster")
    assert latency[1:4] == ["1.000", "1.000", "0.50x"]
    assert throughput[1] == "250 (2.50x)"
    # 200 us a turn: 0.25x the raw job's CPU, 26 commands (0.79x its 33), 5,000 turns/s a core
    assert redis[1:6] == ["200", "26.0", "0.25x", "0.79x", "5,000"]
    (evalsha,) = _rows(text, "EVALSHA")
    assert evalsha[1:3] == ["4.00", "0.00"] and "four scripts" in evalsha[3]
    assert "bench_durability.py" in text


def test_counters_since_keep_only_what_grew() -> None:
    before = RedisCounters(calls={"GET": 5, "SET": 1}, cpu_seconds=1.0)
    after = RedisCounters(calls={"GET": 9, "SET": 1, "HSET": 2}, cpu_seconds=1.5)
    used = after.since(before)
    assert used.calls == {"GET": 4, "HSET": 2} and used.cpu_seconds == pytest.approx(0.5)
    assert used.total_calls == 6


def test_markers_receive_the_tables_and_the_rest_of_the_document_stays(tmp_path: Path) -> None:
    document = tmp_path / "B.md"
    document.write_text("head\n<!-- bench:start -->\nold\n<!-- bench:end -->\ntail\n")
    replace_between_markers(document, "new tables\n")
    assert (
        document.read_text() == "head\n<!-- bench:start -->\nnew tables\n<!-- bench:end -->\ntail\n"
    )
    document.write_text("no markers")
    with pytest.raises(ConfigError, match="has no <!-- bench:start --> ... <!-- bench:end -->"):
        replace_between_markers(document, None)


def test_the_progress_bar_counts_steps_on_a_pipe_one_line_each() -> None:
    out = io.StringIO()
    progress = Progress(2, out)
    progress.step("first")
    progress.step("second")
    lines = out.getvalue().splitlines()
    assert [line.split("]")[1].split()[0] for line in lines] == ["1/2", "2/2"]
    assert lines[0].startswith("[" + "#" * 15 + "-" * 15 + "]") and lines[1].endswith("second")


def test_an_unknown_size_names_the_sizes() -> None:
    with pytest.raises(ConfigError, match="unknown benchmark size 'huge': choose one of smoke"):
        plan_named("huge")
    assert PLANS["full"].cost_sessions == 200 and PLANS["full"].cost_turns == 20
    assert PLANS["full"].paper_workers == 1_000 and PLANS["full"].paper_sessions == 1_000_000
