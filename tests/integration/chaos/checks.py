"""What the chaos test verifies once the run is over (everything read from Redis and logs).

Run after every worker has exited, so the state is final:

* every accepted message answered exactly once: the client popped one ok
  reply, and no further reply is left in the message's reply list;
* each session's history holds each accepted message's user text exactly
  once, in submit order;
* the ``turn`` of the replies a session received rises by exactly 1, and the
  committed replies (the session's ``replies`` hash) carry turns 1..N once each;
* the ``fence`` (lease token of the commit) rises strictly along a session's
  committed turns, and their ``started_at``/``ended_at`` intervals do not
  overlap (each skipped when the replies do not carry the field);
* no worker log has a Traceback about an agent torn down mid-turn;
* messages folded into a running turn (``steer``/``collect``) were answered by
  that turn, follow its message in order, and were committed with it
  (:mod:`tests.integration.chaos.fold_checks`; the turn and fence checks above
  look at the turns, not at the copies of a turn's reply the folded ones get).

:func:`diagnose_lost` says where each lost message ended up (committed or not,
its rq job's status, which queue or in-flight list still holds it).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from cluster.keys import Keyspace
from cluster.serialization import unpack
from cluster.session_store import RedisSessionStore
from cluster.transport import job_id_for
from tests.integration.chaos import fold_checks
from tests.integration.chaos.traffic import MessageRecord

TEARDOWN_RE = re.compile(r"mid-turn|released while running")
LEVEL_RE = re.compile(r" (WARNING|ERROR|CRITICAL) ")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ ")
SHOW = 12  # examples listed per failed check


@dataclass
class Check:
    """One line of the report table; ``ok`` is None for information only."""

    name: str
    value: int | str
    ok: bool | None = None
    examples: list[str] = field(default_factory=list)


@dataclass
class SessionData:
    """What Redis holds about one session after the run."""

    user_texts: list[str]
    stored: dict[str, dict[str, Any]]  # message id -> committed reply
    leftover: dict[str, list[dict[str, Any]]]  # message id -> replies still in its reply list


def load_sessions(
    client: redis.Redis, keyspace: Keyspace, records: Sequence[MessageRecord]
) -> dict[str, SessionData]:
    """Read history, committed replies and reply-list lengths of every session."""
    store = RedisSessionStore(client, keyspace)
    by_session: dict[str, list[MessageRecord]] = {}
    for record in records:
        by_session.setdefault(record.session, []).append(record)
    data: dict[str, SessionData] = {}
    for session, mine in by_session.items():
        history = store.load(session).history
        raw = client.hgetall(keyspace.session(session).replies)
        stored = {_text(k): _as_dict(_unpack(v)) for k, v in raw.items()}
        pipe = client.pipeline(transaction=False)
        for record in mine:
            pipe.lrange(keyspace.reply_list(session, record.message_id), 0, -1)
        lists = pipe.execute()
        data[session] = SessionData(
            user_texts=[str(m.get("content")) for m in history if m.get("role") == "user"],
            stored=stored,
            leftover={
                r.message_id: [_as_dict(_unpack(x)) for x in items]
                for r, items in zip(mine, lists, strict=True)
                if items
            },
        )
    return data


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _unpack(raw: bytes | str) -> Any:
    try:
        return unpack(raw)
    except (TypeError, ValueError) as exc:
        return {"_raw": repr(raw[:60]), "_error": str(exc)}


def _as_dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {"_raw": value}


@dataclass
class Findings:
    """Counters and examples gathered over all sessions."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    checked: set[str] = field(default_factory=set)  # optional checks that had data

    def add(self, name: str, example: str, n: int = 1) -> None:
        self.counts[name] += n
        shown = self.examples.setdefault(name, [])
        if len(shown) < SHOW:
            shown.append(example)


def check_session(records: Sequence[MessageRecord], data: SessionData, f: Findings) -> None:
    """All per-session checks: replies, history, turns, fences, lease intervals."""
    _check_replies(records, data, f)
    _check_history(records, data, f)
    _check_received_turns(records, f)
    _check_committed(records[0].session, data, f)
    fold_checks.check_folds(records, data, f)


def _check_replies(records: Sequence[MessageRecord], data: SessionData, f: Findings) -> None:
    by_id = {r.message_id: r for r in records}
    for r in records:
        left = data.leftover.get(r.message_id, [])
        if not r.accepted:
            continue
        if r.answered:
            _check_extra_replies(r, left, f)
            reply = r.replies[0]
            if reply.get("interrupted"):
                f.add("interrupted answer", f"{r.message_id}: {str(reply.get('text'))[:80]!r}")
            elif reply.get("message_id") != r.message_id:
                f.add("reply for another message", f"{r.message_id} got {reply.get('message_id')}")
            elif not (answered := fold_checks.answered_message(r, by_id)).text_ok(
                str(reply.get("text"))
            ):
                kind = "wrong text (shell)" if answered.shell else "wrong text"
                f.add(kind, f"{r.message_id}: {str(reply.get('text'))[:80]!r}")
        elif r.gave_up is not None:
            f.add("failed (error reply, not retried)", f"{r.message_id}: {r.gave_up[:160]}")
        else:
            f.add("lost", r.message_id)
            if left:
                f.add("lost: reply arrived after the deadline", f"{r.message_id}: {len(left)}")
        if r.failures:
            f.add(
                "error replies received", f"{r.message_id}: {r.failures[0][:160]}", len(r.failures)
            )


def _check_extra_replies(r: MessageRecord, left: list[dict[str, Any]], f: Findings) -> None:
    """Replies beyond the one the client took: a copy of it, or a different answer."""
    first = r.replies[0]
    received = len(r.replies) - 1
    for index, extra in enumerate(r.replies[1:] + left):
        same = extra.get("ok") and extra.get("turn") == first.get("turn")
        if same:
            f.add(
                "copy of the same reply left in list", f"{r.message_id}: turn {first.get('turn')}"
            )
        else:
            also = (
                "turn " + str(extra.get("turn"))
                if extra.get("ok")
                else "error " + str(extra.get("error"))[:80]
            )
            f.add(
                "answered twice (a different reply)"
                if index < received
                else "ran again: a different reply left unread",
                f"{r.message_id}: took turn {first.get('turn')}, also {also}",
            )


def _check_history(records: Sequence[MessageRecord], data: SessionData, f: Findings) -> None:
    counts = Counter(data.user_texts)
    by_text = {r.text: r for r in records}
    for text, n in counts.items():
        if text not in by_text:
            f.add("foreign user message in history", f"{records[0].session}: {text[:60]!r}")
        elif n > 1:
            f.add("duplicated in history", f"{by_text[text].message_id}: {n} times")
    for r in records:
        if r.answered and counts[r.text] == 0:
            f.add("answered but missing from history", r.message_id)
        if not r.accepted and counts[r.text]:
            f.counts["in history though never accepted (info)"] += 1
    first: dict[str, int] = {}
    for pos, text in enumerate(data.user_texts):
        first.setdefault(text, pos)
    present = [(first[r.text], r.message_id) for r in records if r.text in first]
    for (a, _), (b, mid) in zip(present, present[1:], strict=False):
        if b < a:
            f.add("out of order in history", f"{mid} committed before an earlier message")


def _check_received_turns(records: Sequence[MessageRecord], f: Findings) -> None:
    turns = [
        (r.message_id, r.replies[0].get("turn"))
        for r in records
        if r.answered and not fold_checks.folded_into(r.replies[0])  # folded: its turn's number
    ]
    for (_, a), (mid, b) in zip(turns, turns[1:], strict=False):
        if not (isinstance(a, int) and isinstance(b, int)):
            f.add("reply without an integer turn", f"{mid}: {b!r}")
        elif b != a + 1:
            f.add("received turns not +1", f"{mid}: turn {a} then {b}")


def _check_committed(session: str, data: SessionData, f: Findings) -> None:
    if not data.stored:  # no replies hash (nothing committed, or the product keeps none)
        return
    f.checked.add("committed replies")
    answered = sum(isinstance(r.get("turn"), int) for r in data.stored.values())
    replies = sorted(
        (r for r in fold_checks.turn_replies(data.stored) if isinstance(r.get("turn"), int)),
        key=lambda r: int(r["turn"]),
    )
    turns = [int(r["turn"]) for r in replies]
    if turns != list(range(1, len(turns) + 1)):
        f.add("committed turns not 1..N", f"{session}: {_short(turns)}")
    if answered != len(data.user_texts):
        f.add(
            "committed replies != user messages in history",
            f"{session}: {answered} replies, {len(data.user_texts)} user messages",
        )
    _check_fences(session, replies, f)
    _check_intervals(session, replies, f)


def _check_fences(session: str, replies: Sequence[Mapping[str, Any]], f: Findings) -> None:
    if not replies or any("fence" not in r for r in replies):
        return
    f.checked.add("fence")
    for ra, rb in zip(replies, replies[1:], strict=False):
        a, b = _fence_order(ra), _fence_order(rb)
        if not b > a:
            f.add(
                "fence not increasing (stale token accepted)",
                f"{session}: turn {ra.get('turn')} fence {a} -> turn {rb.get('turn')} fence {b}",
            )


def _fence_order(reply: Mapping[str, Any]) -> tuple[float, float]:
    """A committed reply's fence as ``(epoch, token)``: its ``epoch`` field (0 when absent)
    and token, or both from a fence written as ``N:replid/token``."""
    value = reply["fence"]
    if isinstance(value, str | bytes) and "/" in _text(value):
        epoch, _, token = _text(value).rpartition("/")
        return (_number(epoch.split(":", 1)[0]), _number(token))
    return (_number(reply.get("epoch", 0)), _number(value))


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _check_intervals(session: str, replies: Sequence[Mapping[str, Any]], f: Findings) -> None:
    if not replies or any("started_at" not in r or "ended_at" not in r for r in replies):
        return
    f.checked.add("lease intervals")
    for ra, rb in zip(replies, replies[1:], strict=False):
        if float(rb["started_at"]) < float(ra["ended_at"]):
            f.add(
                "overlapping turn leases",
                f"{session}: turn {ra.get('turn')} ended {ra['ended_at']:.3f} after turn "
                f"{rb.get('turn')} started {rb['started_at']:.3f} "
                f"({ra.get('worker_id')} / {rb.get('worker_id')})",
            )


def _short(values: Sequence[int]) -> str:
    text = str(list(values))
    return text if len(text) < 120 else text[:117] + "..."


# -- worker logs ----------------------------------------------------------------


def scan_logs(logs: Mapping[str, Path]) -> tuple[list[str], Counter[str], Counter[str]]:
    """Mid-turn teardown tracebacks (violations), tracebacks' last lines, warning kinds."""
    violations: list[str] = []
    kinds: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    for worker, path in sorted(logs.items()):
        if not path.exists():
            continue
        lines = path.read_text(errors="replace").splitlines()
        for start, block in _tracebacks(lines):
            context = "\n".join(lines[max(0, start - 1) : start] + block)
            kinds[f"{block[-1][:140]}"] += 1
            if TEARDOWN_RE.search(context):
                violations.append(f"{worker}.log line {start + 1}: {block[-1][:160]}")
        for n, line in enumerate(lines):
            if "released while running" in line and not line.startswith(" "):
                violations.append(f"{worker}.log line {n + 1}: {line[:160]}")
            if LEVEL_RE.search(line):
                warnings[_normalise(TIMESTAMP_RE.sub("", line))[:120]] += 1
    return violations, kinds, warnings


def _normalise(text: str) -> str:
    """A log message with session names, ids and numbers blanked, to count kinds."""
    text = re.sub(r"s\d{3}-m\d{4}|\bs\d{3}\b", "<id>", text)
    return re.sub(r"\d+(\.\d+)?", "N", text)


def _tracebacks(lines: Sequence[str]) -> list[tuple[int, list[str]]]:
    blocks: list[tuple[int, list[str]]] = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("Traceback (most recent call last)"):
            i += 1
            continue
        start, block = i, [lines[i]]
        i += 1
        while i < len(lines) and (lines[i].startswith((" ", "\t")) or _chained(lines[i])):
            block.append(lines[i])
            i += 1
        if i < len(lines):
            block.append(lines[i])  # the exception line
            i += 1
        blocks.append((start, block))
    return blocks


def _chained(line: str) -> bool:
    return line == "" or line.startswith(
        ("During handling", "The above exception", "Traceback (most recent")
    )


# -- where did a lost message go ----------------------------------------------------


def diagnose_lost(
    client: redis.Redis,
    keyspace: Keyspace,
    record: MessageRecord,
    stored: Mapping[str, Any],
    worker_states: Mapping[str, str],
) -> tuple[str, str]:
    """``(category, detail)`` of a lost message: committed or not, rq status, where its id sits."""
    job_id = job_id_for(keyspace.namespace, record.session, record.message_id)
    status_raw = client.hget(f"rq:job:{job_id}", "status")
    status = _text(status_raw) if status_raw is not None else "no job hash"
    places = []
    for worker in sorted(worker_states):
        queue = f"rq:queue:{keyspace.worker_queue(worker)}"
        if client.lpos(queue, job_id) is not None:
            places.append(("queue", worker))
        if client.lpos(keyspace.inflight(worker), job_id) is not None:
            places.append(("in-flight list", worker))
    committed = record.message_id in stored
    where = ", ".join(f"{kind} of {w} ({worker_states[w]})" for kind, w in places) or "no list"
    category = (
        f"{'committed, reply never received' if committed else 'not committed'}; job {status}; "
        + (
            ", ".join(f"{kind} of a {_state_word(worker_states[w])} worker" for kind, w in places)
            or "in no queue/in-flight list"
        )
    )
    routed = " -> ".join(f"{w}@{t:.1f}s" for t, w in record.routed_to)
    detail = (
        f"{record.message_id} (accepted {record.accepted_at:.1f}s, routed {routed}, "
        f"{record.resubmissions} resubmits, {record.attempt_timeouts} attempt timeouts): "
        f"{'committed' if committed else 'not committed'}, rq status {status}, in {where}"
    )
    return category, detail


def _state_word(state: str) -> str:
    return state.split("@", 1)[0]
