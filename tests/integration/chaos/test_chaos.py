r"""The seeded chaos test (issue 7): nothing accepted is lost, nothing answered twice.

CI runs a 60-second variant: a private redis-server (AOF), 4 worker processes,
100 sessions of continuous traffic (a tenth of them in bursts whose second and
third messages are sent with ``steer`` or ``collect`` while the first runs),
and every ~5 s one seeded event (kill -9, SIGSTOP 8 s, drain + replacement, a
new worker, a Redis restart, a config push). The longer run is a command (see ``run.py``)::

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
    assert _folded(result.records) > 0, "steer/collect bursts were folded into running turns"


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
    assert _folded(result.records) > 0, "steer/collect bursts were folded into running turns"


def _folded(records: list[MessageRecord]) -> int:
    """Messages answered by a turn that took them in while it ran (``folded_into``)."""
    return sum(bool(r.replies and r.replies[0].get("folded_into")) for r in records)


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
            r2.message_id: [{"ok": False, "error": "boom"}],  # a second, different answer, unread
        },
    )
    findings = checks.Findings()
    checks.check_session([r0, r1, r2, r3], data, findings)
    counts = findings.counts
    assert counts["lost"] == 1
    assert counts["copy of the same reply left in list"] == 1
    assert counts["ran again: a different reply left unread"] == 1
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


# -- folded messages (steer/collect): synthetic data --------------------------------------


def _folded_session() -> tuple[list[MessageRecord], checks.SessionData]:
    """s001: a !sh turn that took in msg 1 and 2 (steer), then msg 3 as its own turn."""
    records = [
        MessageRecord("s001", 0, "s001-m0000", "!sh sleep 0.3; echo s001 msg 0", shell=True),
        *(MessageRecord("s001", n, f"s001-m{n:04d}", f"s001 msg {n}", shell=False)
          for n in (1, 2, 3)),
    ]  # fmt: skip
    turn = {"ok": True, "text": "echo: s001 msg 2", "turn": 1, "fence": 4,
            "started_at": 1.0, "ended_at": 2.0, "folded": ["s001-m0001", "s001-m0002"]}  # fmt: skip
    replies = [
        {**turn, "message_id": "s001-m0000"},
        {**turn, "message_id": "s001-m0001", "folded_into": "s001-m0000"},
        {**turn, "message_id": "s001-m0002", "folded_into": "s001-m0000"},
        {"ok": True, "message_id": "s001-m0003", "text": "echo: s001 msg 3", "turn": 2,
         "fence": 5, "started_at": 2.5, "ended_at": 3.0},
    ]  # fmt: skip
    for record, reply in zip(records, replies, strict=True):
        record.accepted_at = float(record.index)
        record.replies.append(reply)
    data = checks.SessionData(
        user_texts=[r.text for r in records],
        stored={r.message_id: dict(r.replies[0]) for r in records},
        leftover={},
    )
    return records, data


def test_the_checks_pass_a_session_whose_turn_took_in_steered_messages() -> None:
    records, data = _folded_session()
    findings = checks.Findings()
    checks.check_session(records, data, findings)
    problems = {k: n for k, n in findings.counts.items() if "(info)" not in k}
    assert problems == {}, findings.examples
    assert findings.counts["folded messages (info)"] == 2
    assert findings.counts["turns that took in messages (info)"] == 1


def test_the_checks_flag_a_fold_answered_by_another_turn_out_of_order_or_uncommitted() -> None:
    records, data = _folded_session()
    records[1].replies[0]["turn"] = 2  # answered as if by another turn
    records[0].replies[0]["folded"] = ["s001-m0002", "s001-m0001"]  # taken out of order
    del data.stored["s001-m0002"]  # a folded message whose reply was never committed
    data.user_texts = [records[0].text, records[2].text, records[1].text, records[3].text]
    findings = checks.Findings()
    checks.check_session(records, data, findings)
    counts = findings.counts
    assert counts["folded reply differs from its turn's reply"] == 1
    assert counts["folded out of order"] == 1
    assert counts["folded but not committed with its turn"] == 1
    assert counts["out of order in history"] == 1
    assert counts["committed replies != user messages in history"] == 1
