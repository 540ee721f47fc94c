"""``agent-cluster schedules add|list|cancel``: scheduled messages of a session (UTC).

``add SESSION TEXT --at 2026-12-06T10:00:00Z`` sends TEXT once at that time;
``add SESSION TEXT --cron '*/5 * * * *'`` on every firing of the expression.
``list SESSION`` prints the session's schedules (``--json`` for scripts);
``cancel SESSION ID`` cancels one (exit 1 when the session has no such
schedule). SESSION is the stored key: a tenant's session is ``@TENANT/name``
(as for ``agent-cluster session``). The workers send the messages: each
firing once across the cluster, whichever worker claims it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from cluster.connection import connect
from coordinator.cli.errors import EXIT_NO
from coordinator.cli.settings import (
    CONNECTION_SETTINGS,
    HelpFormatter,
    add_settings_options,
    settings_from_args,
)

__all__ = ["register"]


def cmd_schedules(args: argparse.Namespace) -> int:
    """Run ``schedules add``, ``list`` or ``cancel``."""
    from coordinator.schedules import Schedules, schedule_dict

    settings = settings_from_args(args)
    client = connect(settings.redis_url)
    try:
        schedules = Schedules(settings=settings, client=client)
        if args.action == "add":
            made = schedule_dict(schedules.add(args.session, args.text, at=args.at, cron=args.cron))
            print(json.dumps(made, indent=2) if args.json else _line(made))
            return 0
        if args.action == "list":
            found = [schedule_dict(s) for s in schedules.list(args.session)]
            if args.json:
                print(json.dumps(found, indent=2))
            elif not found:
                print(f"session {args.session} has no schedules")
            for row in [] if args.json else found:
                print(_line(row))
            return 0
        if schedules.cancel(args.session, args.id):
            print(f"cancelled schedule {args.id} of session {args.session}")
            return 0
        print(f"session {args.session} has no schedule {args.id}")
        return EXIT_NO
    finally:
        client.close()


def _line(row: dict[str, Any]) -> str:
    when = f"cron '{row['cron']}'" if row["cron"] else f"at {row['at']}"
    return (
        f"{row['id']}  {when}  next {row['next'] or '-'}  fired {row['fired']}  "
        f"{json.dumps(row['text'], ensure_ascii=False)}"
    )


def register(sub: Any) -> None:
    """Add ``schedules`` to the top-level subparsers."""
    parser = sub.add_parser(
        "schedules",
        help="scheduled messages of a session: add (--at or --cron, UTC), list, cancel",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="schedule a message", formatter_class=HelpFormatter)
    add.add_argument("session", help="the session key (@TENANT/name for a tenant's session)")
    add.add_argument("text", help="the message to send")
    when = add.add_mutually_exclusive_group(required=True)
    when.add_argument("--at", help="once, at this ISO 8601 time (UTC unless it has an offset)")
    when.add_argument("--cron", help="on this five-field cron expression (UTC)")
    show = actions.add_parser("list", help="the session's schedules", formatter_class=HelpFormatter)
    show.add_argument("session", help="the session key")
    cancel = actions.add_parser("cancel", help="cancel a schedule", formatter_class=HelpFormatter)
    cancel.add_argument("session", help="the session key")
    cancel.add_argument("id", help="the schedule id (from add or list)")
    for action in (add, show, cancel):
        action.add_argument("--json", action="store_true", help="JSON for scripts")
        add_settings_options(action, (*CONNECTION_SETTINGS, "schedules_per_session"))
        action.set_defaults(func=cmd_schedules)
