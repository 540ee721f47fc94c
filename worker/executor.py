"""Run many turns at once in one worker process: a per-session-FIFO thread pool and its claim loop.

A worker keeps one agent cache per process and its turns are I/O-bound model
calls, so it runs turns on threads, not forked processes: :class:`TurnExecutor`
runs up to ``concurrency`` turns at once, the turns of one session one at a
time in submit order, and a session with queued turns never blocks the
others (the decisions are :class:`worker.scheduling.SessionScheduler`'s).
A turn holds one thread from start to end (model calls block it, an
interrupt shuts the call's socket down); threads start on demand and an idle
one exits after ``keepalive`` seconds, so a worker back from a burst of a
thousand turns is back to its idle thread count.

:class:`ClaimLoop` feeds it from the worker's rq queue
(:class:`cluster.transport.TurnQueue`): it claims only while the executor
has room (turns waiting behind their session count as taken), so claimed
turns never pile up in one process while other workers idle, and records each
turn's outcome with :meth:`~cluster.transport.TurnQueue.complete` before the
session's next turn starts. The worker process drains with::

    loop = ClaimLoop(queue=queue, worker_id=worker_id, executor=executor)
    loop.start()
    ...
    loop.stop()                       # no more claims; submitted turns go on
    executor.wait_idle(drain_timeout)  # every turn finished and completed
    executor.shutdown()

The handler returns a :data:`~worker.turn_outcome.TurnOutcome`. A turn that
cannot start yet (its session's lease is held elsewhere, or an earlier message
of the session has not run) is :class:`~worker.turn_outcome.Deferred`: it goes
back to the head of its session, which sleeps for a backoff without holding a
thread.

Threads are daemons: a turn still stuck after the drain timeout does not keep
the process alive; its job stays on the worker's in-flight list, and the
drain's final hand-over (or, after a crash, the survivors' recovery:
:meth:`~cluster.transport.TurnQueue.requeue_inflight`) hands it on.
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from cluster.errors import AgentClusterError, NotReplicated
from cluster.settings import DEFAULT_CONCURRENCY
from cluster.transport import ClaimedTurn, TurnJob, TurnQueue
from worker.scheduling import SessionScheduler
from worker.turn_outcome import Deferred, Failed, Finished, HandedOff, TurnOutcome

__all__ = ["ClaimLoop", "OnTurnDone", "TurnExecutor", "TurnHandler"]

log = logging.getLogger("worker.executor")

TurnHandler = Callable[[TurnJob], TurnOutcome | None]
"""Runs one turn; returning ``None`` means :class:`~worker.turn_outcome.Finished`."""

OnTurnDone = Callable[[TurnJob, TurnOutcome], None]
"""Called on the turn's thread after its handler: ``(job, outcome)``; never for a deferral."""

# complete() is retried this many times on a Redis error before the turn is
# left on the in-flight list (recovery requeues it; the session store answers
# a message once, so a rerun costs work, never a second reply).
_COMPLETE_ATTEMPTS = 3
THREAD_KEEPALIVE = 2.0
_COMPLETE_RETRY_DELAY = 0.2


@dataclass(frozen=True, slots=True)
class _Entry:
    job: TurnJob
    on_done: OnTurnDone | None
    order: int


class TurnExecutor:
    """A thread pool that keeps each session's turns in order, one at a time."""

    def __init__(
        self,
        *,
        handler: TurnHandler,
        concurrency: int = DEFAULT_CONCURRENCY,
        name: str = "turns",
        keepalive: float = THREAD_KEEPALIVE,
    ) -> None:
        """Create the executor; threads start on demand, up to ``concurrency``.

        Args:
            handler: Runs one turn and returns its outcome. A
                :class:`~worker.turn_outcome.Deferred` one goes back to the head
                of its session, which sleeps for its delay (its ``on_done`` is
                not called yet). An exception is logged (logger
                ``worker.executor``) and reported to the turn's ``on_done`` as
                :class:`~worker.turn_outcome.Failed`; it never stops the pool or
                the session's next turn.
            concurrency: Most turns running at once.
            name: Prefix of the thread names.
            keepalive: Seconds an idle thread waits for a turn before it
                exits (after a burst the pool shrinks back to nothing).

        Raises:
            AgentClusterError: ``concurrency`` is not an integer >= 1.
        """
        self._handler = handler
        self._name = name
        self._keepalive = keepalive
        self._scheduler: SessionScheduler[_Entry] = SessionScheduler(concurrency)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._tasks: queue.SimpleQueue[tuple[str, _Entry] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle_threads = 0
        self._started = 0
        self._closed = False
        self._alarms: list[tuple[float, int, str]] = []  # (due, tie, session) of deferred sessions
        self._alarm_seq = 0
        self._waker: threading.Thread | None = None

    @property
    def concurrency(self) -> int:
        """Most turns running at once."""
        return self._scheduler.concurrency

    @property
    def closed(self) -> bool:
        """Whether :meth:`shutdown` was called (no more turns are accepted)."""
        with self._lock:
            return self._closed

    def submit(self, job: TurnJob, *, on_done: OnTurnDone | None = None, order: int = 0) -> None:
        """Queue a turn behind its session's earlier turns; start it when it may.

        Submitting beyond :meth:`capacity` is allowed (the turn waits); the
        claim loop avoids it so that claimed turns do not pile up here.

        Args:
            job: The turn.
            on_done: Called after the handler, before the session's next turn
                starts, with the turn's outcome.
            order: The turn's place in its session (lower starts first).

        Raises:
            AgentClusterError: the executor is shut down.
        """
        with self._lock:
            if self._closed:
                raise AgentClusterError(
                    f"turn executor {self._name!r} is shut down; turn {job.message_id!r} "
                    "was not accepted (it stays on the worker's in-flight list for recovery)"
                )
            self._scheduler.add(job.session_key, _Entry(job, on_done, order), order)
            self._dispatch_locked()

    def capacity(self) -> int:
        """Free slots: ``concurrency`` minus running and waiting turns (never negative)."""
        with self._lock:
            return self._scheduler.capacity

    def in_flight(self) -> int:
        """Turns submitted and not finished (running or waiting)."""
        with self._lock:
            return self._scheduler.running + self._scheduler.waiting

    def running(self) -> int:
        """Turns whose handler is running now."""
        with self._lock:
            return self._scheduler.running

    def wait_for_capacity(self, timeout: float | None = None) -> bool:
        """Wait until a slot is free (or the executor shuts down).

        Returns:
            Whether :meth:`capacity` is above 0.
        """
        with self._changed:
            self._changed.wait_for(
                lambda: self._closed or self._scheduler.capacity > 0, timeout=timeout
            )
            return self._scheduler.capacity > 0

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no turn is running or waiting.

        Returns:
            ``True`` if idle, ``False`` if ``timeout`` passed first.
        """
        with self._changed:
            return self._changed.wait_for(lambda: self._scheduler.idle, timeout=timeout)

    def close(self) -> list[TurnJob]:
        """Accept no more turns; remove and return every turn not started yet, in order.

        For a drain: the returned turns are handed to other workers (their
        ``on_done`` is never called). Running turns go on and complete; one
        that defers from now on is dropped the same way (its job stays on the
        in-flight list for the drain's final hand-over).
        """
        with self._lock:
            self._closed = True
            dropped = self._scheduler.drop_waiting()
            self._alarms.clear()
            self._changed.notify_all()
        return [entry.job for _session, entry in dropped]

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> bool:
        """Stop accepting turns and let the threads go.

        Args:
            wait: Let every submitted turn run first (up to ``timeout``) and
                join the threads. With ``False`` (or when the timeout passes)
                turns not started yet are dropped without calling their
                ``on_done``, so their jobs stay on the in-flight list for
                recovery; running turns go on in their daemon threads.
            timeout: Seconds to wait with ``wait=True``; ``None`` waits for ever.

        Returns:
            Whether every submitted turn had finished.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._closed = True
            self._changed.notify_all()
        finished = self.wait_idle(timeout) if wait else False
        with self._lock:
            if not finished:
                dropped = self._scheduler.drop_waiting()
                if dropped:
                    log.warning(
                        "turn executor %s shut down with %d turn(s) not started; they stay "
                        "in flight for recovery",
                        self._name,
                        len(dropped),
                    )
            threads, self._threads = self._threads, []
            for _ in threads:
                self._tasks.put(None)
            finished = self._scheduler.idle
            waker, self._waker = self._waker, None
            self._changed.notify_all()
        if waker is not None:
            waker.join()
        if wait and finished:
            for thread in threads:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                thread.join(left)
        return finished

    # -- internals -------------------------------------------------------------

    def _dispatch_locked(self) -> None:
        while (ready := self._scheduler.next_ready()) is not None:
            if self._idle_threads > 0:
                self._idle_threads -= 1  # one idle thread will take it
            else:
                self._started += 1
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{self._started}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            self._tasks.put(ready)

    def _work(self) -> None:
        while True:
            try:
                task = self._tasks.get(timeout=self._keepalive)
            except queue.Empty:
                with self._lock:
                    if self._idle_threads > 0:  # no task was handed to an idle thread: leave
                        self._idle_threads -= 1
                        if threading.current_thread() in self._threads:  # not shut down yet
                            self._threads.remove(threading.current_thread())
                        return
                continue  # a task is on its way to some idle thread, maybe this one
            if task is None:
                return
            session, entry = task
            delay: float | None = None
            try:
                delay = self._run(entry)
            finally:
                with self._lock:
                    if delay is not None and not self._closed:
                        self._scheduler.defer(session, entry)
                        self._set_alarm_locked(session, delay)
                    else:
                        self._scheduler.finish(session)
                    self._idle_threads += 1
                    self._dispatch_locked()
                    self._changed.notify_all()

    def _set_alarm_locked(self, session: str, delay: float) -> None:
        self._alarm_seq += 1
        heapq.heappush(self._alarms, (time.monotonic() + delay, self._alarm_seq, session))
        if self._waker is None:
            self._waker = threading.Thread(
                target=self._wake_loop, name=f"{self._name}-waker", daemon=True
            )
            self._waker.start()

    def _wake_loop(self) -> None:
        with self._changed:
            while not self._closed or self._alarms:
                if self._closed:
                    self._alarms.clear()
                    return
                if not self._alarms:
                    self._waker = None  # the next deferral starts a new waker
                    return
                due, _tie, session = self._alarms[0]
                left = due - time.monotonic()
                if left > 0:
                    self._changed.wait(left)
                    continue
                heapq.heappop(self._alarms)
                self._scheduler.wake(session)
                self._dispatch_locked()
                self._changed.notify_all()

    def _run(self, entry: _Entry) -> float | None:
        """Run one turn; returns the delay when the handler deferred it."""
        job = entry.job
        outcome: TurnOutcome | None
        try:
            outcome = self._handler(job)
        except BaseException as exc:  # a turn's failure must not kill the thread
            outcome = Failed(exc)
            log.exception("turn %s of session %s raised", job.message_id, job.session_key)
        if isinstance(outcome, Deferred):
            return max(0.0, outcome.delay)
        if entry.on_done is None:
            return None
        try:
            entry.on_done(job, Finished() if outcome is None else outcome)
        except Exception:
            log.exception(
                "completion of turn %s of session %s failed", job.message_id, job.session_key
            )
        return None


class ClaimLoop:
    """A thread that claims turns from a worker's queue while its executor has room."""

    def __init__(
        self,
        *,
        queue: TurnQueue,
        worker_id: str,
        executor: TurnExecutor,
        block: float = 1.0,
        retry_delay: float = 1.0,
        on_done: Callable[[ClaimedTurn, TurnOutcome], None] | None = None,
        name: str | None = None,
    ) -> None:
        """Bind the loop; nothing is claimed before :meth:`start`.

        Args:
            queue: The turn queue (its client's socket timeout should exceed
                ``block``, or blocking claims are cut into shorter slices).
            worker_id: Whose queue to claim from.
            executor: Runs the claimed turns.
            block: Seconds one claim waits on an empty queue; also the longest
                :meth:`stop` waits for the loop to notice.
            retry_delay: Pause after a Redis error before claiming again.
            on_done: Called after each turn has been completed on the queue,
                with its outcome (for metrics).
            name: Thread name; ``claims-<worker_id>`` by default.
        """
        if not block > 0:
            raise AgentClusterError(f"ClaimLoop block must be seconds > 0, got {block!r}")
        self._queue = queue
        self._worker_id = worker_id
        self._executor = executor
        self._block = block
        self._retry_delay = retry_delay
        self._on_done = on_done
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=name or f"claims-{worker_id}", daemon=True
        )
        self._claimed = 0
        self._count_lock = threading.Lock()
        self._known: set[str] = set()  # job ids submitted to the executor and not done
        self._resync = threading.Event()
        self._rescue = False  # with the next resync, also look for unlisted jobs (a failover)

    @property
    def claimed(self) -> int:
        """Turns claimed and handed to the executor since :meth:`start`."""
        with self._count_lock:
            return self._claimed

    def is_alive(self) -> bool:
        """Whether the claiming thread runs."""
        return self._thread.is_alive()

    def start(self) -> None:
        """Start claiming in a daemon thread."""
        self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop claiming (for a drain) and wait for the thread to exit.

        Turns already submitted keep running and are completed as usual; a
        claim that was in progress is submitted, not abandoned.

        Args:
            timeout: Seconds to wait for the thread; ``None`` waits (at most
                about ``block`` plus one Redis round trip).

        Returns:
            Whether the thread has exited.
        """
        self._stopping.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def resync(self) -> None:
        """Check, before the next claim, that every id on this worker's in-flight list runs here.

        For a Redis failover: the promoted replica may lack a commit the old
        primary took (``redis_durability: none``), so a turn this process
        finished is still listed in flight there, and pending, with nothing
        running it. The check puts such ids back on this worker's queue; the
        turn runs again and commits once on the new primary. It also puts back
        the pending jobs of this worker's sessions that no list holds
        (:meth:`TurnQueue.rescue_unlisted`); a claim error's resync does not.
        """
        self._rescue = True
        self._resync.set()

    # -- internals -------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping.is_set():
            if self._executor.closed:
                log.warning("turn executor shut down; %s stops claiming", self._worker_id)
                return
            if self._resync.is_set() and not self._take_back_orphans():
                self._stopping.wait(self._retry_delay)
                continue
            room = self._executor.capacity()
            if room <= 0:
                self._executor.wait_for_capacity(timeout=self._block)
                continue
            try:
                claimed = self._queue.claim_many(self._worker_id, room, block=self._block)
            except (redis.RedisError, NotReplicated) as exc:
                log.warning(
                    "claiming turns for %s failed (%s); retrying in %gs",
                    self._worker_id,
                    exc,
                    self._retry_delay,
                )
                # Redis may have moved ids to the in-flight list before the reply was lost.
                self._resync.set()
                self._stopping.wait(self._retry_delay)
                continue
            except Exception:
                log.exception(
                    "claiming turns for %s failed; retrying in %gs",
                    self._worker_id,
                    self._retry_delay,
                )
                self._stopping.wait(self._retry_delay)
                continue
            for turn in claimed:
                with self._count_lock:
                    self._known.add(turn.job_id)
                try:
                    self._executor.submit(turn.job, on_done=self._completer(turn), order=turn.seq)
                except AgentClusterError as exc:
                    log.error("claimed turn %s not run: %s", turn.job.message_id, exc)
                    return
                with self._count_lock:
                    self._claimed += 1

    def _completer(self, turn: ClaimedTurn) -> OnTurnDone:
        def done(_job: TurnJob, outcome: TurnOutcome) -> None:
            self._complete(turn, outcome)
            with self._count_lock:
                self._known.discard(turn.job_id)
            if self._on_done is not None:
                self._on_done(turn, outcome)

        return done

    def _take_back_orphans(self) -> bool:
        """Put in-flight ids this process does not know back on its own queue.

        After a claim or completion whose Redis reply was lost, ids may sit on
        this live worker's in-flight list with nothing running them (recovery
        only looks at dead workers); after a failover (:meth:`resync`), a
        pending job of one of its sessions may be on no list at all
        (:meth:`TurnQueue.rescue_unlisted`).
        Returns whether the check could be made.
        """
        try:
            listed = self._queue.inflight_ids(self._worker_id)
            with self._count_lock:
                orphans = [job_id for job_id in listed if job_id not in self._known]
            moved = self._queue.requeue_inflight(self._worker_id, only=orphans) if orphans else 0
            if self._rescue:  # only after a failover: it reads every owned session's pending set
                with self._count_lock:
                    running = set(self._known)
                moved += self._queue.rescue_unlisted(self._worker_id, running)
                self._rescue = False
        except redis.RedisError as exc:
            log.warning("checking %s's in-flight list failed (%s)", self._worker_id, exc)
            return False
        if moved:
            log.warning("%d orphaned turn(s) of %s back on its queue", moved, self._worker_id)
        self._resync.clear()
        return True

    def _complete(self, turn: ClaimedTurn, outcome: TurnOutcome) -> None:
        if isinstance(outcome, Finished) and outcome.job_completed:
            return  # the turn's commit completed the job
        failed = isinstance(outcome, Failed)
        detail = (
            f"{type(outcome.error).__name__}: {outcome.error}"
            if isinstance(outcome, Failed)
            else None
        )
        for attempt in range(1, _COMPLETE_ATTEMPTS + 1):
            try:
                if isinstance(outcome, HandedOff):
                    if outcome.to_worker is not None:
                        self._queue.hand_off(turn, outcome.to_worker)
                    return
                if isinstance(outcome, Finished) and outcome.job_gone:
                    self._queue.release(turn)
                    return
                self._queue.complete(turn, ok=not failed, error=detail)
                return
            except redis.RedisError as exc:
                if attempt == _COMPLETE_ATTEMPTS:
                    log.error(
                        "could not record the end of turn %s (%s); the claim loop takes it "
                        "back from the in-flight list (a committed turn is then found answered)",
                        turn.job.message_id,
                        exc,
                    )
                    self._resync.set()
                    return
                time.sleep(_COMPLETE_RETRY_DELAY * attempt)
