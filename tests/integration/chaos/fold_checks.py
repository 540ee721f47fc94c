"""Checks of folded messages (``steer``/``collect``): one turn answered several messages.

A turn that took in messages answers each with its own reply: the taking
turn's reply lists them in ``folded``; each taken message's reply names the
turn's message in ``folded_into`` and carries the same ``text`` and ``turn``
(see the README's steer/collect section). On top of the checks every message
gets (:mod:`tests.integration.chaos.checks`: answered once, in the history
once and in order), a folded message must:

* have been folded into a message of its own session that was answered by the
  same turn (same ``turn``, same ``text``) and lists it in ``folded``;
* follow the taking message directly, with the other folded ones in submit
  order (a turn takes the run of messages queued right after its own);
* be committed (in the session's ``replies`` hash) with the taking turn's turn.

The taking turn answers its last folded message (the offline model echoes
the last user message), so its ``text`` is checked against that one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.integration.chaos.checks import Findings, SessionData
    from tests.integration.chaos.traffic import MessageRecord


def folded_into(reply: Mapping[str, Any]) -> str | None:
    """The message whose turn answered this reply's message, None when it ran its own turn."""
    value = reply.get("folded_into")
    return str(value) if value else None


def answered_message(record: MessageRecord, by_id: Mapping[str, MessageRecord]) -> MessageRecord:
    """The message the text of ``record``'s reply answers: the last one its turn took in."""
    folded = record.replies[0].get("folded") if record.replies else None
    if isinstance(folded, list) and folded and str(folded[-1]) in by_id:
        return by_id[str(folded[-1])]
    return record


def turn_replies(stored: Mapping[str, Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The committed replies of the turns themselves (not the copies given to folded messages)."""
    return [r for r in stored.values() if not folded_into(r)]


def check_folds(records: Sequence[MessageRecord], data: SessionData, f: Findings) -> None:
    """The fold checks above, for one session's messages."""
    by_id = {r.message_id: r for r in records}
    for r in records:
        if not r.answered:
            continue
        reply = r.replies[0]
        host_id = folded_into(reply)
        if host_id is None:
            if reply.get("folded"):
                f.counts["turns that took in messages (info)"] += 1
                _check_order(r, [str(x) for x in reply["folded"]], by_id, f)
            continue
        f.counts["folded messages (info)"] += 1
        host = by_id.get(host_id)
        if host is None:
            f.add("folded into a foreign message", f"{r.message_id} into {host_id}")
            continue
        if host.answered:
            ours = host.replies[0]
            folded = [str(x) for x in ours.get("folded") or []]
            same = ours.get("turn") == reply.get("turn") and ours.get("text") == reply.get("text")
            if r.message_id not in folded or not same:
                f.add(
                    "folded reply differs from its turn's reply",
                    f"{r.message_id} into {host_id}: turn {reply.get('turn')} vs "
                    f"{ours.get('turn')}, listed {folded}",
                )
        committed = data.stored.get(r.message_id)
        turn = data.stored.get(host_id, {}).get("turn")
        if committed is None or committed.get("turn") != turn or turn is None:
            f.add(
                "folded but not committed with its turn",
                f"{r.message_id}: committed {committed is not None}, turn of {host_id}: {turn}",
            )


def _check_order(
    host: MessageRecord, folded: list[str], by_id: Mapping[str, MessageRecord], f: Findings
) -> None:
    """The messages a turn took in follow its own directly, in submit order."""
    indexes = [by_id[m].index if m in by_id else -1 for m in folded]
    if indexes != list(range(host.index + 1, host.index + 1 + len(folded))):
        f.add("folded out of order", f"{host.message_id} took {folded}")
