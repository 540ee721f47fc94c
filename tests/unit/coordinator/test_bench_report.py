"""The benchmark report: ratios against the run's own baselines, what is not run, the markers."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from cluster.errors import ConfigError
from coordinator.bench.control import ControlFigures
from coordinator.bench.durability import DurabilityFigures
from coordinator.bench.economics import COMPRESSING, PROMPT_PUSH_IDEAL, CostRun
from coordinator.bench.hot_path import HotPathFigures
from coordinator.bench.infra import RedisCounters
from coordinator.bench.plan import PLANS, Progress, plan_named
from coordinator.bench.report import BenchResults, markdown, replace_between_markers
from coordinator.bench.waiters import WaitingLevel

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
        _run("max_tokens push", 1.00, 4),
    ]
    text = markdown(BenchResults(plan="quick", machine=MACHINE, costs=costs))

    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("|")}
    assert [c.strip() for c in rows["stable"].split("|")[4:10]] == [
        "1.00x", "1.00x", "0.50x", "2", "0", "met"
    ]  # fmt: skip
    assert [c.strip() for c in rows["worker crash"].split("|")[4:10]] == [
        "1.10x", "1.10x", "0.55x", "3", "1", "missed"
    ]  # fmt: skip
    assert "met (agents rebuilt, stored prompt reused)" in rows["max_tokens push"]


def test_a_prompt_push_is_held_to_the_ideal_under_the_same_push() -> None:
    costs = [
        _run("in-process ideal", 1.00, 2),
        _run("rebuild per request", 1.00, 10),
        _run("stateless workers", 1.00, 10),
        _run(PROMPT_PUSH_IDEAL, 1.20, 4),
        _run("prompt push", 1.203, 4),
    ]
    text = markdown(BenchResults(plan="quick", machine=MACHINE, costs=costs))

    (push,) = _rows(text, "prompt push")
    assert push[3] == "1.20x"  # against the ideal without a push: the push's real price
    assert push[-1] == "prompt rewritten; 1.00x of the ideal under the same push: met"
    (pushed_ideal,) = _rows(text, PROMPT_PUSH_IDEAL)
    assert pushed_ideal[-1] == ""  # a baseline: no goal of its own


def _compressing(scenario: str, cost: float, compressions: int) -> CostRun:
    return CostRun(
        "openai", scenario, 10, 10, 2, cost, 0.8, 1000, 1.0,
        compressions=compressions, group=COMPRESSING, note="model.context_length 4,000",
    )  # fmt: skip


def test_the_compression_scenario_has_its_own_table_against_baselines_that_compress() -> None:
    costs = [
        _run("in-process ideal", 1.00, 2),
        _run("rebuild per request", 1.00, 10),
        _run("stateless workers", 1.00, 10),
        _run("stable", 1.00, 2),
        _compressing("in-process ideal", 3.00, 4),
        _compressing("rebuild per request", 3.00, 4),
        _compressing("stateless workers", 3.30, 4),
        _compressing("long session, compression", 3.012, 4),
    ]
    text = markdown(BenchResults(plan="quick", machine=MACHINE, costs=costs))

    assert (
        "a long session crossing a compression (10 turns per run; model.context_length 4,000"
        in (text)
    )
    (row,) = _rows(text, "long session, compression")
    # ratios against the compressing baselines (3.00, 3.00, 3.30), not the plain ones
    assert row[3:10] == ["1.00x", "1.00x", "0.91x", "2", "4", "0", "met"]
    assert len(_rows(text, "in-process ideal")) == 2  # one per table
    costs[-1] = _compressing("long session, compression", 3.00, 0)
    text = markdown(BenchResults(plan="quick", machine=MACHINE, costs=costs))
    assert _rows(text, "long session, compression")[0][-1] == (
        "met, but no session crossed a compression"
    )


def _rows(text: str, name: str) -> list[list[str]]:
    """The cells of every table row whose first cell is ``name``."""
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines()]
    return [row for row in rows if row and row[0] == name]


def test_redis_rows_compare_cpu_and_commands_with_the_raw_rq_job() -> None:
    raw = RedisCounters(calls={"HSET": 16.0, "EXPIRE": 17.0}, cpu_seconds=8e-4)
    ours = RedisCounters(calls={"HSET": 22.0, "EVALSHA": 4.0}, cpu_seconds=2e-4)
    hot = HotPathFigures(
        cpus=2,
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
    assert "durability `replica`: not measured in this run" in text


def test_durability_replica_rows_are_ratios_to_none_of_the_same_run() -> None:
    none = DurabilityFigures(
        "none", [2.0, 2.0, 2.0], 500.0, RedisCounters(calls={"HSET": 80.0}, cpu_seconds=3e-4)
    )
    replica = DurabilityFigures(
        "replica",
        [2.5, 2.5, 2.5],
        400.0,
        RedisCounters(calls={"HSET": 80.0, "WAIT": 4.0}, cpu_seconds=3.3e-4),
    )
    hot = HotPathFigures(
        latency_ms={"raw rq no-op job": [2.0]},
        throughput={"raw rq no-op job": {1: 100.0}},
        redis_per_turn={"raw rq no-op job": RedisCounters(calls={"HSET": 16.0}, cpu_seconds=8e-4)},
        durability=[none, replica],
    )
    text = markdown(BenchResults(plan="quick", machine=MACHINE, hot=hot))

    (row,) = _rows(text, "replica")
    assert row == [
        "replica", "2.500", "2.500", "400", "330", "84.0", "4.0", "1.25x", "1.10x", "1.05x"
    ]  # fmt: skip
    assert _rows(text, "none")[0][7:] == ["1.00x", "1.00x", "1.00x"]
    assert "not in this suite" not in text


def test_worker_counts_beyond_the_cpus_are_marked_not_meaningful_not_shown_as_figures() -> None:
    hot = HotPathFigures(
        cpus=2,
        worker_counts=(1, 2, 4),
        latency_ms={"raw rq no-op job": [2.0], "agent-cluster": [1.0]},
        throughput={
            "in-process ideal": {1: 9000.0},
            "raw rq no-op job": {1: 200.0, 2: 400.0},
            "agent-cluster": {1: 300.0, 2: 570.0},
        },
    )
    text = markdown(BenchResults(plan="quick", machine=MACHINE, hot=hot))

    assert "this run had 2 CPU(s)" in text
    assert "| 2 vs 1 workers |" in text.replace("  ", "")
    _latency, throughput = _rows(text, "agent-cluster")
    assert throughput[1:] == ["300 (1.50x)", "570 (1.43x)", "not meaningful (> 2 CPUs)", "1.90x"]
    (ideal,) = _rows(text, "in-process ideal")
    assert ideal[2:4] == ["-", "-"]
    assert "4 worker(s) on 2 CPU(s): not meaningful, not run" in text


def test_the_waiting_caller_rows_compare_the_newcomer_with_the_idle_gateway() -> None:
    level = WaitingLevel(
        callers=1000, held=1000, answers=998, errors=2, redis_conns=6, rss_mib=140.0,
        cpu_s=3.0, kib_per_caller=21.5, settled_held=990, holding_cpu=0.05,
        newcomer_idle_ms=4.0, newcomer_loaded_ms=6.0, seconds=20.0,
    )  # fmt: skip
    control = ControlFigures(
        push_last_ms=[8.0], publish_floor_ms=[0.1], crash_answered=5.5, heartbeat_ttl=5.0,
        drain_seconds=1.5, drain_turn_left=1.2, waiting=level,
    )  # fmt: skip
    text = markdown(BenchResults(plan="quick", machine=MACHINE, control=control))

    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines()]
    by_measure = {row[0]: row[1:] for row in rows if row}
    assert by_measure[
        "gateway waiting-caller capacity: 1,000 callers sent at once, held at most"
    ] == ["1,000 held, 998 answered, 2 not", "1,000 sent", "1.00x"]
    assert by_measure["Redis connections of the gateway holding 1,000 callers"][0] == "6"
    assert by_measure["gateway memory per waiting caller (RSS growth)"][0].startswith("21.5 KiB")
    assert by_measure["newcomer's quick message while 1,000 callers wait (median of 20)"] == [
        "6.0 ms", "same gateway idle 4.0 ms", "1.50x"
    ]  # fmt: skip
    assert "pending" not in text


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


def test_a_two_cpu_machine_runs_no_more_than_two_workers_and_the_bar_counts_what_runs() -> None:
    quick = PLANS["quick"]
    assert quick.worker_counts == (1, 2, 4)
    assert quick.worker_counts_on(2) == (1, 2) and quick.worker_counts_on(8) == (1, 2, 4)
    assert quick.worker_counts_on(1) == (1,)
    # in-process baselines, 3 paths x 2 worker counts, durability none and replica
    assert quick.steps_of(["hot"], 2) == 1 + 3 * 2 + 2
