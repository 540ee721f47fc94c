r"""The seeded chaos test (issue 7): nothing accepted is lost, nothing answered twice.

CI runs a 60-second variant: a private redis-server (AOF), 4 worker processes,
100 sessions of continuous traffic, and every ~5 s one seeded event (kill -9,
SIGSTOP 8 s, drain + replacement, a new worker, a Redis restart, a config
push). The longer run is a command (see ``run.py``)::

    .venv/bin/python -m tests.integration.chaos.run \
        --seed 3 --duration 600 --workers 6 --sessions 200

A run is reproducible from its seed (the plan and the message texts; thread
timing is not). The baseline test runs the same traffic without any event: it
checks the harness itself (a failure there is a harness or steady-state bug).
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.chaos import checks
from tests.integration.chaos.harness import (
    ACTIONS,
    PAUSE,
    RESUME,
    ChaosConfig,
    plan_chaos,
    run_chaos,
)
from tests.integration.chaos.traffic import MessageRecord

CI_SEEDS = [5]  # 3 kills, 2 drains, a pause, 2 Redis restarts, 3 config pushes in 60 s


def _need_redis() -> None:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed; .ci/run must install it")
        pytest.skip("redis-server is not installed (the chaos test needs it)")


@pytest.mark.integration
@pytest.mark.timeout(240)
@pytest.mark.parametrize("seed", CI_SEEDS)
def test_chaos_loses_nothing_and_answers_once(seed: int, tmp_path: Path) -> None:
    _need_redis()
    result = run_chaos(
        ChaosConfig(seed=seed, duration=60, workers=4, sessions=100, workdir=tmp_path, settle=60)
    )
    print(result.report())
    assert result.played, "the chaos plan was played"
    assert not result.failures, "\n".join(result.failures)


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_harness_baseline_without_chaos_is_clean(tmp_path: Path) -> None:
    _need_redis()
    result = run_chaos(
        ChaosConfig(
            seed=1, duration=10, workers=2, sessions=100, workdir=tmp_path, chaos=False, settle=30
        )
    )
    print(result.report())
    assert not result.failures, "\n".join(result.failures)
    assert sum(r.answered for r in result.records) > 300, "the traffic flowed"


# -- the plan alone (pure, no processes) --------------------------------------------


@pytest.mark.parametrize("seed", range(30))
def test_plan_is_seeded_spaced_and_keeps_two_live_workers(seed: int) -> None:
    plan = plan_chaos(seed, 120, 4)
    assert plan == plan_chaos(seed, 120, 4), "same seed, same plan"
    assert plan != plan_chaos(seed + 1000, 120, 4)
    assert {e.action for e in plan} <= set(ACTIONS)
    assert plan == sorted(plan)
    moments = sorted({e.at for e in plan if e.action != RESUME})
    gaps = [b - a for a, b in zip(moments, moments[1:], strict=False)]
    assert all(2.9 <= g <= 7.1 for g in gaps), gaps
    assert all(e.at < 120 for e in plan)

    running = {f"w{i}" for i in range(4)}
    paused: set[str] = set()
    used = set(running)
    for event in plan:
        if event.action in ("kill", "drain"):
            assert event.target in running
            running.discard(event.target)
        elif event.action == PAUSE:
            assert event.target in running
            running.discard(event.target)
            paused.add(event.target)
        elif event.action == RESUME:
            paused.discard(event.target)
            running.add(event.target)
        elif event.action == "start":
            assert event.target not in used, "a new worker gets a fresh id"
            used.add(event.target)
            running.add(event.target)
        assert len(running) >= 2, (seed, event)
    assert not paused, "every pause is resumed within the run"


@pytest.mark.parametrize("seed", CI_SEEDS)
def test_the_ci_plan_has_every_kind_of_event(seed: int) -> None:
    kinds = {e.action for e in plan_chaos(seed, 60, 4)}
    assert kinds == set(ACTIONS), kinds


# -- the checks catch what they claim to (synthetic data, no processes) ----------------


def _record(n: int, *, turn: int | None) -> MessageRecord:
    record = MessageRecord("s001", n, f"s001-m{n:04d}", f"s001 msg {n}", shell=False)
    record.accepted_at = float(n)
    if turn is not None:
        record.replies.append(
            {"ok": True, "message_id": record.message_id, "text": f"echo: {record.text}",
             "turn": turn}
        )  # fmt: skip
    return record


def test_the_checks_flag_loss_duplicates_disorder_and_stale_fences() -> None:
    r0, r1, r2, r3 = (
        _record(0, turn=1),
        _record(1, turn=3),
        _record(2, turn=2),
        _record(3, turn=None),
    )
    stored = {
        r0.message_id: {"turn": 1, "fence": 5, "started_at": 10.0, "ended_at": 11.0},
        r1.message_id: {"turn": 3, "fence": 6, "started_at": 10.5, "ended_at": 12.0},
        r2.message_id: {"turn": 2, "fence": 7, "started_at": 12.0, "ended_at": 13.0},
    }
    data = checks.SessionData(
        user_texts=[r0.text, r2.text, r1.text, r1.text],
        stored=stored,
        leftover={
            r0.message_id: [dict(r0.replies[0])],  # a copy of the reply taken
            r2.message_id: [{"ok": False, "error": "boom"}],  # a second, different answer
        },
    )
    findings = checks.Findings()
    checks.check_session([r0, r1, r2, r3], data, findings)
    counts = findings.counts
    assert counts["lost"] == 1
    assert counts["copy of the same reply left in list"] == 1
    assert counts["answered twice (a different reply)"] == 1
    assert counts["duplicated in history"] == 1
    assert counts["out of order in history"] == 1
    assert counts["received turns not +1"] == 2  # 1 -> 3 -> 2
    assert counts["committed replies != user messages in history"] == 1
    assert counts["overlapping turn leases"] == 1  # turn 3 started before turn 2 ended
    assert (
        counts["fence not increasing (stale token accepted)"] == 1
    )  # turn 2 fence 7, turn 3 fence 6
    assert findings.checked >= {"fence", "lease intervals", "committed replies"}


def test_the_checks_pass_a_clean_session() -> None:
    records = [_record(n, turn=n + 1) for n in range(3)]
    data = checks.SessionData(
        user_texts=[r.text for r in records],
        stored={
            r.message_id: {"turn": n + 1, "fence": 10 + n, "started_at": n, "ended_at": n + 0.5}
            for n, r in enumerate(records)
        },
        leftover={},
    )
    findings = checks.Findings()
    checks.check_session(records, data, findings)
    assert +findings.counts == Counter(), findings.examples
