"""When a pending ``notify_on_complete`` notification is announced (pure decision)."""

from __future__ import annotations

import pytest

from agent.tools.background import ProcessStatus
from worker.background_notices import notice_due


@pytest.mark.parametrize(
    ("status", "due"),
    [
        (ProcessStatus("running"), "wait"),
        (ProcessStatus("exited", exit_code=0), "ended"),
        (ProcessStatus("killed"), "ended"),
        (ProcessStatus("lost", detail="no process"), "ended"),
    ],
)
def test_the_watching_worker_announces_once_its_process_is_not_running(
    status: ProcessStatus, due: str
) -> None:
    assert notice_due(watcher="w1", me="w1", watcher_alive=True, status=status) == due


def test_another_workers_process_is_left_to_it_while_it_beats() -> None:
    assert notice_due(watcher="w1", me="w2", watcher_alive=True, status=None) == "wait"


def test_a_process_whose_watcher_stopped_beating_is_reported_lost() -> None:
    assert notice_due(watcher="w1", me="w2", watcher_alive=False, status=None) == "lost"
