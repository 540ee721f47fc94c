"""The seeded plan of a failover chaos run (pure: the same seed gives the same faults).

Three faults of a replicated Redis (:mod:`tests.support.sentinel_topology`):

* ``kill_primary``: the replicas' link is cut ``lag`` seconds before the
  primary is killed with SIGKILL, so the promoted replica misses what the old
  primary acknowledged in those seconds (on loopback a replica is otherwise
  never behind, and a kill would prove nothing).
* ``pause_primary``: SIGSTOP on the primary past the Sentinels' failover,
  SIGCONT ``hold`` seconds after the new primary is in place. The resumed old
  primary takes writes from clients still connected to it until Sentinel
  demotes it (~10 s later); those writes must not count.
* ``network_cut``: the proxy between one worker and Redis stalls (bytes stop)
  or drops (connections reset, new ones refused) for ``hold`` seconds.

Faults are played one after the other: each starts ``gap`` seconds after the
previous one settled (failover done, the killed node back as a replica, the
paused one demoted), because a failover's length is the system's, not the
plan's.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["FAULTS", "KILL_PRIMARY", "NETWORK_CUT", "PAUSE_PRIMARY", "Fault", "plan_failovers"]

KILL_PRIMARY, PAUSE_PRIMARY, NETWORK_CUT = "kill_primary", "pause_primary", "network_cut"
FAULTS = (KILL_PRIMARY, PAUSE_PRIMARY, NETWORK_CUT)
FAILOVER_FAULTS = (KILL_PRIMARY, PAUSE_PRIMARY)


@dataclass(frozen=True)
class Fault:
    """One fault of the plan.

    Attributes:
        gap: Seconds after the previous fault settled (or the traffic began).
        kind: One of :data:`FAULTS`.
        lag: ``kill_primary``: seconds the replicas lag before the kill.
        hold: ``pause_primary``: seconds the old primary stays stopped after the
            failover; ``network_cut``: seconds the cut lasts.
        cut: ``network_cut``: ``"stall"`` or ``"drop"``.
    """

    gap: float
    kind: str
    lag: float = 0.0
    hold: float = 0.0
    cut: str = ""

    def describe(self) -> str:
        if self.kind == KILL_PRIMARY:
            return f"kill -9 the primary {self.lag:g}s after cutting its replicas off"
        if self.kind == PAUSE_PRIMARY:
            return f"SIGSTOP the primary, SIGCONT {self.hold:g}s after the failover"
        return f"network cut ({self.cut}) between a worker and Redis for {self.hold:g}s"

    @property
    def fails_over(self) -> bool:
        return self.kind in FAILOVER_FAULTS


def plan_failovers(seed: int, faults: Sequence[str] = FAULTS) -> list[Fault]:
    """One of each of ``faults``, in a seeded order with seeded gaps, lags and holds.

    Args:
        seed: The seed.
        faults: The kinds to play (each once), any of :data:`FAULTS`.

    Returns:
        The faults in the order they are played.
    """
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        raise ValueError(f"unknown fault kind(s) {unknown}; choose among {list(FAULTS)}")
    rng = random.Random(f"failover/{seed}")
    plan = []
    for kind in rng.sample(list(faults), len(faults)):
        gap = round(rng.uniform(2.0, 4.0), 2)
        if kind == KILL_PRIMARY:
            plan.append(Fault(gap, kind, lag=round(rng.uniform(1.0, 2.0), 2)))
        elif kind == PAUSE_PRIMARY:
            plan.append(Fault(gap, kind, hold=round(rng.uniform(0.5, 2.0), 2)))
        else:
            cut = rng.choice(("stall", "drop"))
            plan.append(Fault(gap, kind, hold=round(rng.uniform(2.0, 7.0), 2), cut=cut))
    return plan
