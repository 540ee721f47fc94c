"""What became of one turn attempt: the value :meth:`worker.turns.TurnRunner.run` returns.

The executor acts on it: a :class:`Deferred` turn goes back to the head of its
session and runs again after its delay (holding no thread); a
:class:`HandedOff` or :class:`Finished` one ends, and the claim loop records
that on the queue (moves the job to ``to_worker``, or completes it unless the
turn's commit script already did).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Deferred", "Failed", "Finished", "HandedOff", "TurnOutcome"]


@dataclass(frozen=True, slots=True)
class Finished:
    """The turn ran, was answered with an error, or had nothing to run.

    Attributes:
        job_completed: The turn's commit script also completed its rq job (in
            one round trip), so nobody completes it again.
        job_gone: The job was not pending any more (nothing ran): only the
            claim is let go (:meth:`~cluster.transport.TurnQueue.release`), so a
            resubmission that re-created the job meanwhile still runs.
    """

    job_completed: bool = False
    job_gone: bool = False


@dataclass(frozen=True, slots=True)
class Deferred:
    """The turn cannot start yet, or Redis failed: run it again after ``delay`` seconds.

    Attributes:
        why: What it waits for, for logs.
        delay: Seconds before the next attempt.
    """

    why: str
    delay: float


@dataclass(frozen=True, slots=True)
class HandedOff:
    """The job belongs to another worker.

    Attributes:
        why: Whose session it is, or that a drain cut the turn off, for logs.
        to_worker: Where the claim loop moves the job; ``None`` when the
            drain's hand-over moves it (it stays on the in-flight list until then).
    """

    why: str
    to_worker: str | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """The executor's handler raised (a bug): the turn ends, its job is completed as failed.

    Attributes:
        error: What the handler raised.
    """

    error: BaseException


TurnOutcome = Finished | Deferred | HandedOff | Failed
"""What a turn attempt came to (:class:`Failed` is only made by the executor)."""
