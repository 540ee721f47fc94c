"""What ``agent-cluster drain --wait`` prints while a worker drains and once it has left."""

from __future__ import annotations

from coordinator.admin import DrainProgress


def test_a_draining_worker_shows_what_it_still_holds() -> None:
    line = DrainProgress("w1", registered=True, queued=0, in_flight=1, sessions=3).line()
    assert line == "w1: draining, 1 turn(s) running or claimed, 0 queued, 3 session(s) still owned"


def test_a_gone_worker_does_not_claim_to_still_own_sessions() -> None:
    line = DrainProgress("w1", registered=False, queued=0, in_flight=0, sessions=1).line()
    assert "still owned" not in line
    assert line == (
        "w1: gone (deregistered, 0 turn(s) running, 0 queued); the 1 session(s) it owned "
        "move to their next owner with their next message"
    )
