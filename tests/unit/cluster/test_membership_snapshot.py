from __future__ import annotations

import json

from cluster.membership import WorkerState, parse_snapshot


def _info(**kw: object) -> bytes:
    return json.dumps(
        {"host": "h1", "pid": 42, "queue": "ac.worker.w1", "started": 100.0, **kw}
    ).encode()


def test_snapshot_decodes_workers_and_liveness_is_judged_against_redis_now() -> None:
    reply = [
        b"10000",
        b"w2",
        b"9000",
        b"4000",
        b"active",
        _info(),
        b"w1",
        b"15000",
        b"10000",
        b"draining",
        _info(pid=7),
    ]
    now, workers = parse_snapshot(reply)
    assert now == 10.0
    assert [w.worker_id for w in workers] == ["w1", "w2"]
    w1, w2 = workers
    assert w1.state is WorkerState.DRAINING and w1.draining and w1.pid == 7
    assert w1.last_heartbeat == 10.0 and w1.expires_at == 15.0
    assert w1.is_alive(now) and not w2.is_alive(now)
    assert not w1.is_alive(15.0)  # expiry is exclusive


def test_unreadable_info_or_unknown_state_keeps_the_worker_but_out_of_routing() -> None:
    now, (w,) = parse_snapshot([b"0", b"w", b"5000", b"", b"weird", b"not json"])
    assert w.host == "" and w.pid == 0 and w.last_heartbeat == 0.0
    assert w.state is WorkerState.DRAINING


def test_empty_membership() -> None:
    assert parse_snapshot([b"123"]) == (0.123, [])
