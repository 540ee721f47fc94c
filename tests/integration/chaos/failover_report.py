"""What a failover chaos run is checked for, and the table over seeds and durability settings.

Asserted in every run (either durability):

* 0 lost: every accepted message was answered (a message the failover lost
  counts as not lost if its caller was told, resubmitted it under the same id
  and got it answered once: :mod:`traffic` resubmits on a retryable error);
* 0 duplicated: no message answered twice, no second history entry;
* 0 silently dropped: no message the failover lost left its caller without
  a reply and without an error for ``attempt_timeout`` seconds (the caller of
  a lost message must be told, not left to time out). A caller that heard
  nothing that long resubmits the same id; if that resubmission was queued
  anew (the job was gone, or in no list and put back), the message had been
  lost without a word. If it found the job still pending, or the reply
  stored, the message was delayed, not lost: that count is reported, not
  asserted. Delays come from the faults themselves. With ``none``, a turn
  handed from worker to worker while the resumed old primary still takes
  writes (until Sentinel demotes it, about 10 s after SIGCONT) and a network
  cut right after. With ``replica``, no turn commits while fewer replicas
  than required confirm (after a SIGSTOP, until Sentinel demotes the old
  primary and it syncs: 13-15 s);
* 0 out of order in a session's history;
* no two overlapping leases of one session (the committed turns' intervals);
* no write with a stale token accepted: the stale-token probe of each fault
  (:class:`~tests.integration.chaos.failover_player.StaleTokenProbe`) and the
  fences of the committed turns, which must rise along a session.

With ``replica`` also: every answered message is in the history and the
committed turns are exactly 1..N (nothing acknowledged is lost). With
``none`` these are reported, not asserted: a commit the old primary
acknowledged may be lost by the failover (the reply was delivered, the history
forgot it), which is what ``none`` trades for not waiting on a replica.

Information: a copy of a reply still in its reply list (the client's pop
reached the old primary only, so the failover undid it: the caller got the
reply once), failovers, the seconds from the primary's death to the first
turn answered that was submitted after it, resubmissions, worker log kinds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import redis

from cluster.keys import Keyspace
from tests.integration.chaos import checks
from tests.integration.chaos.failover_plan import KILL_PRIMARY, NETWORK_CUT, PAUSE_PRIMARY
from tests.integration.chaos.failover_player import PlayedFault
from tests.integration.chaos.traffic import MessageRecord

if TYPE_CHECKING:
    from tests.integration.chaos.failover import FailoverRun

__all__ = ["FailoverResult", "evaluate", "first_answer_after", "format_table"]

_SHORT = {KILL_PRIMARY: "kill", PAUSE_PRIMARY: "stop", NETWORK_CUT: "cut"}
# Findings that only durability "replica" promises to keep at 0.
_REPLICA_ONLY = (
    # What `none` does not guarantee (README): a commit lost after its reply was
    # delivered, so the turn runs again and its second reply waits unread in its list.
    "ran again: a different reply left unread",
    "answered but missing from history",
    "received turns not +1",
    "committed turns not 1..N",
    "committed replies != user messages in history",
)


@dataclass
class FailoverResult:
    """The checks of one run; :meth:`report` is the printable table."""

    run: FailoverRun
    checks: list[checks.Check]
    first_answers: list[float | None]
    stale_accepted: int
    lost_details: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def failures(self) -> list[str]:
        """Failed checks (with examples) and harness errors; empty when the run passed."""
        out = [f"harness: {e}" for e in self.run.errors]
        for check in self.checks:
            if check.ok is False:
                more = "".join(f"\n      {x}" for x in check.examples)
                out.append(f"{check.name}: {check.value}{more}")
        return out

    def value(self, name: str) -> int | str:
        return next(c.value for c in self.checks if c.name == name)

    def report(self) -> str:
        cfg = self.run.config
        lines = [
            f"failover chaos: seed {cfg.seed}, durability {cfg.durability}"
            + ("" if self.run.durability_applied else " (setting absent: not applied)")
            + f", via {cfg.via}, {cfg.workers} workers, {cfg.sessions} sessions, "
            f"namespace {self.run.namespace}, {self.elapsed:.0f}s wall",
            "",
            f"| {'check':<52} | {'value':<40} | result |",
            f"|{'-' * 54}|{'-' * 42}|--------|",
        ]
        for check in self.checks:
            verdict = {True: "ok", False: "FAIL", None: ""}[check.ok]
            lines.append(f"| {check.name:<52} | {str(check.value)[:40]:<40} | {verdict:<6} |")
            if check.ok is None and check.examples:
                lines.extend(f"|   {x[:130]}" for x in check.examples)
        lines += ["", "faults:"]
        for played, first in zip(self.run.played, self.first_answers, strict=False):
            lines.append(
                f"  {played.started:6.1f}s {played.fault.describe()}: "
                + (f"failover {played.failover_seconds:.1f}s, " if played.failover_seconds else "")
                + (f"first answered turn {first:.1f}s after the death, " if first else "")
                + f"stale-token probe {played.probe}"
            )
        if self.lost_details:
            lines += ["first lost messages:"] + [f"  {d}" for d in self.lost_details[:10]]
            stuck = self.run.unanswered_at_stop
            lines += ["unanswered when traffic ended (workers up):"]
            lines += [f"  {d}" for d in stuck[:10]]
        failures = self.failures
        lines += ["", f"{len(failures)} failed check(s)" + (":" if failures else "")]
        lines += [f"  - {f}" for f in failures]
        return "\n".join(lines)


def first_answer_after(records: Sequence[MessageRecord], moment: float) -> float | None:
    """Seconds from ``moment`` to the first reply to a message (last) submitted after it."""
    answers = [
        r.answered_at - moment
        for r in records
        if r.answered_at is not None and r.routed_to and r.routed_to[-1][0] >= moment
    ]
    return min(answers) if answers else None


def evaluate(run: FailoverRun, client: redis.Redis) -> FailoverResult:
    """Check a finished run against what ``client`` (the last primary) and the logs hold."""
    keyspace = Keyspace(run.namespace)
    data = checks.load_sessions(client, keyspace, run.records)
    findings = checks.Findings()
    by_session: dict[str, list[MessageRecord]] = {}
    for record in run.records:
        by_session.setdefault(record.session, []).append(record)
    for session, mine in by_session.items():
        checks.check_session(mine, data[session], findings)
    lost = [r for r in run.records if r.accepted and not r.answered and r.gave_up is None]
    details = [
        checks.diagnose_lost(client, keyspace, r, data[r.session].stored, {})[1] for r in lost
    ]
    violations, tracebacks, warnings = checks.scan_logs(run.logs)
    firsts = [first_answer_after(run.records, p.died) if p.died is not None else None
              for p in run.played]  # fmt: skip
    stale_probes = [p for p in run.played if p.probe.startswith("ACCEPTED")]
    rows = _rows(run, findings, stale_probes, violations, tracebacks, warnings)
    stale = len(stale_probes) + int(findings.counts["fence not increasing (stale token accepted)"])
    return FailoverResult(run, rows, firsts, stale, details)


def _rows(
    run: FailoverRun,
    findings: checks.Findings,
    stale_probes: list[PlayedFault],
    violations: list[str],
    tracebacks: Counter[str],
    warnings: Counter[str],
) -> list[checks.Check]:
    c, ex = findings.counts, findings.examples
    replica = run.config.durability == "replica" and run.durability_applied
    records = run.records
    accepted = [r for r in records if r.accepted]

    def row(name: str, *keys: str) -> checks.Check:
        value = sum(c[k] for k in keys)
        asserted = replica or not set(keys) & set(_REPLICA_ONLY)
        examples = [f"[{k}] {x}" for k in keys for x in ex.get(k, [])]
        return checks.Check(name, value, (value == 0) if asserted else None, examples)

    probes = [p.probe for p in run.played if p.probe != "not run"]
    timeout = run.config.attempt_timeout
    silent = [r for r in records if "queued" in r.after_timeout]
    delayed = [r for r in records if r.attempt_timeouts and r not in silent]
    failovers = [p for p in run.played if p.fault.fails_over and p.failover_seconds]
    return [
        checks.Check("accepted", len(accepted)),
        checks.Check("answered", sum(r.answered for r in accepted)),
        row("lost (accepted, never answered)", "lost"),
        row("duplicated: answered twice", "answered twice (a different reply)"),
        row("ran again after a lost commit (2nd reply unread)",
            "ran again: a different reply left unread"),
        row("duplicated: ran twice (2nd history entry)", "duplicated in history"),
        row("out of order in history", "out of order in history"),
        row("overlapping leases of one session", "overlapping turn leases"),
        checks.Check("stale-token writes accepted (probe)", len(stale_probes),
                     not stale_probes, [p.probe for p in stale_probes]),
        row("stale token accepted (fence fell)", "fence not increasing (stale token accepted)"),
        row("answered but missing from history", "answered but missing from history"),
        row("turn numbers not +1 / committed not 1..N", "received turns not +1",
            "committed turns not 1..N", "committed replies != user messages in history"),
        row("failed (non-transient error reply)", "failed (error reply, not retried)"),
        checks.Check(
            f"silently dropped (no reply, no error in {timeout:g}s, then queued anew)",
            len(silent), not silent, [_silence(r) for r in silent[: checks.SHOW]]),
        checks.Check(
            f"waited over {timeout:g}s, the message still pending (delayed, not lost)",
            len(delayed), None, [_silence(r) for r in delayed[: checks.SHOW]]),
        checks.Check("copy of a reply left in its list (pop undone)",
                     c["copy of the same reply left in list"]),
        checks.Check("teardown mid-turn in worker logs", len(violations), not violations,
                     violations[: checks.SHOW]),
        checks.Check("failovers", len(failovers)),
        checks.Check("failovers Sentinel made on its own (a slow primary under load)",
                     max(0, _switches(run.config.workdir / "redis") - len(failovers))),
        checks.Check("stale-token probes", "; ".join(probes) or "-"),
        checks.Check("resubmissions (same id)", sum(r.resubmissions for r in records)),
        checks.Check("error replies then resubmitted", c["error replies received"]),
        checks.Check("tracebacks in worker logs", sum(tracebacks.values()), None,
                     [f"{n} x {k}" for k, n in tracebacks.most_common(5)]),
        checks.Check("warnings/errors in worker logs", sum(warnings.values()), None,
                     [f"{n} x {k}" for k, n in warnings.most_common(5)]),
    ]  # fmt: skip


def _switches(directory: Path) -> int:
    """Primary switches the Sentinels logged (``+switch-master``; the most any one saw)."""
    counts = [
        log.read_text(errors="replace").count("+switch-master")
        for log in directory.glob("sentinel-*/sentinel.log")
    ]
    return max(counts, default=0)


def _silence(record: MessageRecord) -> str:
    routed = " -> ".join(f"{w}@{t:.1f}s" for t, w in record.routed_to)
    answered = f"{record.answered_at:.1f}s" if record.answered_at is not None else "never"
    return (
        f"{record.message_id} accepted {record.accepted_at:.1f}s, routed {routed}, answered "
        f"{answered}; resubmissions after a timeout found it {', '.join(record.after_timeout)}; "
        f"submit errors {dict(record.submit_errors)}, poll errors {dict(record.poll_errors)}"
    )


def format_table(results: Sequence[FailoverResult]) -> str:
    """The table over seeds and durability settings (one line per run)."""
    header = (
        "| seed | durability | failovers | lost | duplicated | out of order | overlapping leases "
        "| stale writes accepted | silently dropped | death -> first answered turn (s) "
        "| failed checks |"
    )
    lines = [header, "|" + "|".join("---" for _ in range(11)) + "|"]
    for result in results:
        cfg = result.run.config
        duplicated = int(result.value("duplicated: answered twice")) + int(
            result.value("duplicated: ran twice (2nd history entry)")
        )
        firsts = (
            ", ".join(
                f"{_SHORT[p.fault.kind]} {s:.1f}"
                for p, s in zip(result.run.played, result.first_answers, strict=False)
                if s is not None
            )
            or "-"
        )
        silent = next(c.value for c in result.checks if c.name.startswith("silently dropped"))
        durability = cfg.durability + ("" if result.run.durability_applied else " (absent)")
        lines.append(
            f"| {cfg.seed} | {durability} | {result.value('failovers')} "
            f"| {result.value('lost (accepted, never answered)')} | {duplicated} "
            f"| {result.value('out of order in history')} "
            f"| {result.value('overlapping leases of one session')} | {result.stale_accepted} "
            f"| {silent} | {firsts} | {len(result.failures)} |"
        )
    return "\n".join(lines)
