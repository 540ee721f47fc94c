"""TurnExecutor (many turns at once, each session's in order, one at a time) and its ClaimLoop."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

import fakeredis
import pytest
import redis

from cluster.errors import AgentClusterError
from cluster.keys import Keyspace
from cluster.membership import RedisMembership
from cluster.transport import ClaimedTurn, TurnJob, TurnQueue
from tests.support.turn_queue import enqueue
from worker.executor import ClaimLoop, TurnExecutor
from worker.turn_outcome import Deferred, Failed, Finished, HandedOff, TurnOutcome

ExecutorFactory = Callable[..., TurnExecutor]


def _job(session: str, seq: int) -> TurnJob:
    return TurnJob(
        message_id=f"{session}-{seq}",
        session_key=session,
        text=str(seq),
        submitted_at=0.0,
        attrs={"seq": seq},
    )


@pytest.fixture
def make_executor() -> Iterator[ExecutorFactory]:
    """Executors shut down after the test (threads joined)."""
    made: list[TurnExecutor] = []

    def make(**kwargs: object) -> TurnExecutor:
        executor = TurnExecutor(**kwargs)  # type: ignore[arg-type]
        made.append(executor)
        return executor

    yield make
    for executor in made:
        executor.shutdown(wait=True, timeout=10)


class _Recorder:
    """Handler that records per-session order, overlap and peak concurrency."""

    def __init__(self, pause: float = 0.0) -> None:
        self.pause = pause
        self.lock = threading.Lock()
        self.active: set[str] = set()
        self.running = 0
        self.peak = 0
        self.order: dict[str, list[int]] = defaultdict(list)
        self.overlaps: list[str] = []

    def __call__(self, job: TurnJob) -> None:
        with self.lock:
            if job.session_key in self.active:
                self.overlaps.append(job.session_key)
            self.active.add(job.session_key)
            self.order[job.session_key].append(int(job.attrs["seq"]))
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            time.sleep(self.pause)
        finally:
            with self.lock:
                self.running -= 1
                self.active.discard(job.session_key)


def test_per_session_order_kept_and_never_two_of_a_session_at_once(
    make_executor: ExecutorFactory,
) -> None:
    recorder = _Recorder(pause=0.005)
    executor = make_executor(handler=recorder, concurrency=32)
    for seq in range(4):  # 64 jobs over 16 sessions, interleaved
        for s in range(16):
            executor.submit(_job(f"s{s}", seq))
    assert executor.wait_idle(timeout=20)
    assert recorder.overlaps == []
    assert dict(recorder.order) == {f"s{s}": [0, 1, 2, 3] for s in range(16)}
    assert recorder.peak >= 8  # sessions really ran side by side
    assert executor.in_flight() == 0 and executor.capacity() == 32


def test_runs_concurrency_turns_at_once_and_no_more(make_executor: ExecutorFactory) -> None:
    lock = threading.Lock()
    all_in = threading.Event()
    running = [0]
    peak = [0]

    def handler(job: TurnJob) -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            if running[0] >= 32:
                all_in.set()
        all_in.wait(timeout=10)  # hold the slot until 32 run together
        with lock:
            running[0] -= 1

    executor = make_executor(handler=handler, concurrency=32)
    for n in range(64):
        executor.submit(_job(f"s{n}", 0))
    assert all_in.wait(timeout=10), f"only {peak[0]} turns ran at once"
    assert executor.wait_idle(timeout=10)
    assert peak[0] == 32


def _pool_threads(name: str) -> list[threading.Thread]:
    return [
        t
        for t in threading.enumerate()
        if t.name.startswith(f"{name}-") and t.name[len(name) + 1 :].isdigit()
    ]


def test_after_a_burst_idle_threads_exit_and_new_turns_still_run(
    make_executor: ExecutorFactory,
) -> None:
    release = threading.Event()
    started = threading.Semaphore(0)

    def handler(job: TurnJob) -> None:
        started.release()
        release.wait(timeout=10)

    executor = make_executor(handler=handler, concurrency=16, name="burst", keepalive=0.05)
    for n in range(16):
        executor.submit(_job(f"s{n}", 0))
    for _ in range(16):
        assert started.acquire(timeout=10)
    assert len(_pool_threads("burst")) == 16
    release.set()
    assert executor.wait_idle(timeout=10)
    deadline = time.monotonic() + 10
    while _pool_threads("burst") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _pool_threads("burst") == [], "idle turn threads did not exit after the burst"
    # The pool grows again on demand.
    executor.submit(_job("after", 0))
    assert started.acquire(timeout=10)
    assert executor.wait_idle(timeout=10)


def test_a_handler_exception_is_logged_and_does_not_stall_the_session(
    make_executor: ExecutorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[int] = []
    outcomes: dict[int, TurnOutcome] = {}

    def handler(job: TurnJob) -> None:
        ran.append(int(job.attrs["seq"]))
        if job.attrs["seq"] == 1:
            raise RuntimeError("model exploded")

    def on_done(job: TurnJob, outcome: TurnOutcome) -> None:
        outcomes[int(job.attrs["seq"])] = outcome

    executor = make_executor(handler=handler, concurrency=2)
    with caplog.at_level(logging.ERROR, logger="worker.executor"):
        for seq in range(3):
            executor.submit(_job("s", seq), on_done=on_done)
        assert executor.wait_idle(timeout=10)
    assert ran == [0, 1, 2]
    assert outcomes[0] == Finished() and outcomes[2] == Finished()
    failed = outcomes[1]
    assert isinstance(failed, Failed) and isinstance(failed.error, RuntimeError)
    assert any(
        r.name == "worker.executor" and "s-1" in r.getMessage() and r.exc_info
        for r in caplog.records
    )


def test_a_failing_completion_callback_does_not_stall_either(
    make_executor: ExecutorFactory,
) -> None:
    ran: list[int] = []

    def on_done(job: TurnJob, outcome: TurnOutcome) -> None:
        raise ValueError("metrics down")

    executor = make_executor(handler=lambda job: ran.append(int(job.attrs["seq"])), concurrency=1)
    for seq in range(3):
        executor.submit(_job("s", seq), on_done=on_done)
    assert executor.wait_idle(timeout=10)
    assert ran == [0, 1, 2]


def test_capacity_counts_turns_waiting_behind_their_session(
    make_executor: ExecutorFactory,
) -> None:
    release = threading.Event()
    started = threading.Event()

    def handler(job: TurnJob) -> None:
        started.set()
        release.wait(timeout=10)

    executor = make_executor(handler=handler, concurrency=4)
    for seq in range(3):
        executor.submit(_job("a", seq))
    assert started.wait(timeout=10)
    assert executor.running() == 1
    assert executor.in_flight() == 3
    assert executor.capacity() == 1
    assert executor.wait_for_capacity(timeout=0)  # one slot is free
    executor.submit(_job("b", 0))
    assert executor.capacity() == 0
    assert not executor.wait_for_capacity(timeout=0.01)
    release.set()
    assert executor.wait_for_capacity(timeout=10)
    assert executor.wait_idle(timeout=10)


def test_on_done_runs_before_the_sessions_next_turn(make_executor: ExecutorFactory) -> None:
    events: list[str] = []

    executor = make_executor(
        handler=lambda job: events.append(f"run {job.attrs['seq']}"), concurrency=4
    )
    for seq in range(3):
        executor.submit(
            _job("s", seq), on_done=lambda job, _e: events.append(f"done {job.attrs['seq']}")
        )
    assert executor.wait_idle(timeout=10)
    assert events == ["run 0", "done 0", "run 1", "done 1", "run 2", "done 2"]


def test_shutdown_without_waiting_drops_turns_not_started(
    make_executor: ExecutorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()
    started = threading.Event()
    done: list[int] = []

    def handler(job: TurnJob) -> None:
        started.set()
        release.wait(timeout=10)

    executor = make_executor(handler=handler, concurrency=1)
    for seq in range(3):
        executor.submit(_job("s", seq), on_done=lambda job, _e: done.append(int(job.attrs["seq"])))
    assert started.wait(timeout=10)
    with caplog.at_level(logging.WARNING, logger="worker.executor"):
        assert executor.shutdown(wait=False) is False
    assert "2 turn(s) not started" in caplog.text
    with pytest.raises(AgentClusterError, match="shut down"):
        executor.submit(_job("t", 0))
    release.set()
    assert executor.wait_idle(timeout=10)
    assert done == [0]  # dropped turns are not reported done: they stay in flight


def test_shutdown_with_wait_runs_everything_first(make_executor: ExecutorFactory) -> None:
    ran: list[int] = []
    executor = make_executor(handler=lambda job: ran.append(int(job.attrs["seq"])), concurrency=2)
    for seq in range(5):
        executor.submit(_job("s", seq))
    assert executor.shutdown(wait=True, timeout=10) is True
    assert ran == [0, 1, 2, 3, 4]
    assert executor.closed


# -- ClaimLoop on a fakeredis TurnQueue ----------------------------------------------


@pytest.fixture
def turn_queue() -> Iterator[TurnQueue]:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    # Turns are queued only on live, active workers.
    RedisMembership(client, Keyspace("t"), heartbeat_ttl=3600).register(
        "w1", host="test", pid=1, queue="t.worker.w1"
    )
    yield TurnQueue(client, Keyspace("t"), job_timeout=60, result_ttl=60)
    client.close()


def _until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_claim_loop_claims_only_what_the_executor_has_room_for(
    make_executor: ExecutorFactory, turn_queue: TurnQueue
) -> None:
    release = threading.Event()
    executor = make_executor(handler=lambda job: release.wait(timeout=10), concurrency=4)
    for seq in range(5):
        for session in ("a", "b"):
            enqueue(turn_queue, "w1", _job(session, seq))
    loop = ClaimLoop(queue=turn_queue, worker_id="w1", executor=executor, block=0.1)
    loop.start()
    try:
        assert _until(lambda: loop.claimed == 4)
        assert executor.running() == 2 and executor.in_flight() == 4  # 2 wait behind a and b
        assert turn_queue.pending("w1") == 6 and turn_queue.inflight_count("w1") == 4
        release.set()
        assert _until(lambda: turn_queue.pending("w1") == 0)
    finally:
        assert loop.stop(timeout=10)
    assert executor.wait_idle(timeout=10)
    assert loop.claimed == 10 and turn_queue.inflight_count("w1") == 0


def test_stopping_the_claim_loop_finishes_and_completes_claimed_turns(
    make_executor: ExecutorFactory, turn_queue: TurnQueue
) -> None:
    release = threading.Event()
    outcomes: list[tuple[str, str | None]] = []

    def handler(job: TurnJob) -> None:
        release.wait(timeout=10)
        if job.attrs["seq"] == 1:
            raise RuntimeError("provider down")

    def on_done(turn: ClaimedTurn, outcome: TurnOutcome) -> None:
        error = outcome.error if isinstance(outcome, Failed) else None
        outcomes.append((turn.job.message_id, None if error is None else str(error)))

    executor = make_executor(handler=handler, concurrency=2)
    for seq in range(4):
        enqueue(turn_queue, "w1", _job("a", seq))
    loop = ClaimLoop(
        queue=turn_queue, worker_id="w1", executor=executor, block=0.1, on_done=on_done
    )
    loop.start()
    assert _until(lambda: loop.claimed == 2)
    assert loop.stop(timeout=10)
    release.set()
    assert executor.wait_idle(timeout=10)
    assert outcomes == [("a-0", None), ("a-1", "provider down")]
    assert turn_queue.inflight_count("w1") == 0 and turn_queue.pending("w1") == 2


class LosesOneClaimReply(TurnQueue):
    """Redis moves the ids to the in-flight list, then the connection drops (once)."""

    dropped = False

    def claim_many(self, worker_id: str, limit: int, *, block: float) -> list[ClaimedTurn]:
        claimed = super().claim_many(worker_id, limit, block=block)
        if claimed and not self.dropped:
            self.dropped = True
            raise redis.ConnectionError("Connection closed by server.")
        return claimed


def test_ids_moved_by_a_claim_whose_reply_was_lost_are_taken_back_and_run(
    make_executor: ExecutorFactory,
) -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    RedisMembership(client, Keyspace("t"), heartbeat_ttl=3600).register(
        "w1", host="test", pid=1, queue="t.worker.w1"
    )
    queue = LosesOneClaimReply(client, Keyspace("t"), job_timeout=60, result_ttl=60)
    ran: list[str] = []
    executor = make_executor(handler=lambda job: ran.append(job.message_id), concurrency=4)
    for seq in range(3):
        enqueue(queue, "w1", _job("a", seq))
    loop = ClaimLoop(queue=queue, worker_id="w1", executor=executor, block=0.1, retry_delay=0.01)
    loop.start()
    try:
        assert _until(lambda: len(ran) == 3), f"stranded on the in-flight list: {ran}"
    finally:
        assert loop.stop(timeout=10)
    assert queue.dropped and ran == ["a-0", "a-1", "a-2"]
    assert _until(lambda: queue.inflight_count("w1") == 0)


def test_a_deferred_turn_runs_again_after_its_delay_and_is_done_once(
    make_executor: ExecutorFactory,
) -> None:
    attempts: list[int] = []
    outcomes: list[TurnOutcome] = []

    def handler(job: TurnJob) -> TurnOutcome:
        attempts.append(int(job.attrs["seq"]))
        return Deferred("lease held elsewhere", delay=0.01) if len(attempts) == 1 else Finished()

    executor = make_executor(handler=handler, concurrency=1)
    executor.submit(_job("s", 0), on_done=lambda _job, outcome: outcomes.append(outcome))
    executor.submit(_job("s", 1), on_done=lambda _job, outcome: outcomes.append(outcome))
    assert executor.wait_idle(timeout=10)
    assert attempts == [0, 0, 1], "the session's next turn waited for the deferred one"
    assert outcomes == [Finished(), Finished()]


def test_the_claim_loop_moves_a_handed_off_job_and_leaves_a_committed_one_alone(
    make_executor: ExecutorFactory,
) -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    membership = RedisMembership(client, Keyspace("t"), heartbeat_ttl=3600)
    for worker in ("w1", "w2"):
        membership.register(worker, host="test", pid=1, queue=f"t.worker.{worker}")
    queue = TurnQueue(client, Keyspace("t"), job_timeout=60, result_ttl=60)
    outcome_of = {
        "moved-0": HandedOff("session owned by w2", to_worker="w2"),
        "committed-0": Finished(job_completed=True),  # its commit script completed the job
    }
    executor = make_executor(handler=lambda job: outcome_of[job.message_id], concurrency=2)
    enqueue(queue, "w1", _job("moved", 0))
    enqueue(queue, "w1", _job("committed", 0))
    loop = ClaimLoop(queue=queue, worker_id="w1", executor=executor, block=0.1)
    loop.start()
    try:
        assert _until(lambda: loop.claimed == 2)
        assert executor.wait_idle(timeout=10)
    finally:
        assert loop.stop(timeout=10)
    assert queue.pending("w2") == 1, "the handed-off job is on its owner's queue"
    # Nothing here completed the committed job: only its (here absent) commit would have.
    assert queue.inflight_count("w1") == 1
    client.close()
