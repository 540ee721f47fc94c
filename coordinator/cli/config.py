"""``agent-cluster config ...``, ``registry bump`` and ``mcp reload``.

``config push FILE`` validates the YAML document (secrets first, then the
schema of :mod:`cluster.config_schema`), and only then stores it, bumps the
version, records it in the history and announces it, in one script; an
invalid document changes nothing. ``show``, ``history``, ``diff`` and
``rollback`` read the last :data:`~cluster.versions.HISTORY_LIMIT` versions
kept in Redis. ``registry bump`` and ``mcp reload`` bump the cluster-wide tool
registry generation: every worker re-discovers its MCP tools and its cached
agents are rebuilt on their next turn.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import yaml

from cluster.config_diff import check_removals, diff_configs, removed_paths
from cluster.config_schema import parse_config
from cluster.connection import connect
from cluster.errors import ConfigError
from cluster.keys import Keyspace
from cluster.membership import RedisMembership
from cluster.versions import RedisVersionStore
from coordinator.cli.settings import (
    CONNECTION_SETTINGS,
    HelpFormatter,
    add_settings_options,
    settings_from_args,
)

__all__ = ["register"]


def _author() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


@contextmanager
def _store(args: argparse.Namespace) -> Iterator[RedisVersionStore]:
    settings = settings_from_args(args)
    client = connect(settings.redis_url)
    try:
        yield RedisVersionStore(
            client, Keyspace(settings.namespace), max_config_bytes=settings.max_config_bytes
        )
    finally:
        client.close()


def read_config_file(path: str) -> dict[str, Any]:
    """Read and validate a config file (YAML or JSON).

    Raises:
        ConfigError: unreadable, invalid YAML, a secret, or failing the schema.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path!r}: {exc.strerror}") from None
    return parse_config(text, source=os.path.basename(path))


def cmd_push(args: argparse.Namespace) -> int:
    """Validate FILE, then publish it as the next config version.

    A push that removes keys of the current config is refused unless
    ``--yes`` confirms it; ``--check`` validates without Redis, or with
    ``--diff`` also lists what the push would change (removals included).
    """
    document = read_config_file(args.file)
    if args.check and not args.diff:
        print(f"{args.file}: valid")
        return 0
    with _store(args) as store:
        current, before = store.current_config()
        if args.check:
            changes = diff_configs(before, document)
            removed = removed_paths(before, document)
            print(
                f"{args.file}: valid; {len(changes)} key(s) would change"
                + (f", {len(removed)} removed (push needs --yes)" if removed else "")
            )
            for change in changes:
                print(f"  {change.line()}")
            return 0
        if not args.yes:
            check_removals(before, document, confirm="--yes")
        version = store.publish_config(
            document,
            author=args.author or _author(),
            source=args.file,
            note=args.note or "",
            expect_version=current,
        )
    changes = diff_configs(before, document)
    print(f"config version {version} published ({len(changes)} key(s) changed)")
    for change in changes:
        print(f"  {change.line()}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print the current config (or version N) as YAML."""
    with _store(args) as store:
        if args.version is None:
            version, document = store.current_config()
        else:
            version, document = args.version, store.config_at(args.version)
    if args.json:
        print(json.dumps(document, indent=2, sort_keys=True))
    else:
        print(f"# config version {version}")
        print(
            yaml.safe_dump(document, sort_keys=False, allow_unicode=True).rstrip()
            if document
            else "{}"
        )
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    """Print the last publishes, newest first."""
    with _store(args) as store:
        current = store.versions()[0]
        records = store.history(args.limit)
    print("| version | published (UTC) | by | digest | source | note |")
    print("|---|---|---|---|---|---|")
    for r in records:
        when = datetime.datetime.fromtimestamp(r.at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
        mark = " (current)" if r.version == current else ""
        print(f"| {r.version}{mark} | {when} | {r.author} | {r.digest} | {r.source} | {r.note} |")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    """Print what changed from version A to version B."""
    with _store(args) as store:
        before, after = store.config_at(args.a), store.config_at(args.b)
    changes = diff_configs(before, after)
    for change in changes:
        print(change.line())
    if not changes:
        print(f"versions {args.a} and {args.b} are the same")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    """Publish the document of an earlier version as the next version."""
    with _store(args) as store:
        document = store.config_at(args.version)
        version = store.publish_config(
            document,
            author=args.author or _author(),
            source="rollback",
            note=f"rollback to {args.version}",
        )
    print(f"config version {version} published: the document of version {args.version}")
    return 0


def cmd_registry_bump(args: argparse.Namespace) -> int:
    """Bump the registry generation, then wait until every live worker re-discovered its tools.

    Exits 1 when a live worker has not acknowledged within ``--timeout``
    (its cached agents are still rebuilt on their next turn: the turn-start
    check sees the new generation; only its MCP tool list may be the old one).
    """
    reason = getattr(args, "reason", None) or args.default_reason
    settings = settings_from_args(args)
    with _store(args) as store:
        generation = store.bump_registry_generation(reason)
        print(
            f"registry generation {generation} ({reason}): cached agents rebuild on their next turn"
        )
        if args.timeout <= 0:
            return 0
        membership = RedisMembership(
            store.client, Keyspace(settings.namespace), heartbeat_ttl=settings.heartbeat_ttl
        )
        deadline = time.monotonic() + args.timeout
        while True:
            live = [w.worker_id for w in membership.live_workers()]
            acks = store.registry_acks(live)
            waiting = sorted(w for w, seen in acks.items() if seen < generation)
            if not waiting or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        has_mcp = bool(store.current_config()[1].get("mcp_servers"))
    done = len(live) - len(waiting)
    if has_mcp:
        print(f"MCP tools re-discovered on {done}/{len(live)} live worker(s)")
    else:
        print(
            f"generation {generation} applied by {done}/{len(live)} live worker(s) "
            "(the config has no mcp_servers: no MCP tools to re-discover)"
        )
    if waiting:
        print(
            f"error: not yet acknowledged after {args.timeout:g}s by: {', '.join(waiting)} "
            "(see their logs: an MCP server may be slow or failing)",
            file=sys.stderr,
        )
        return 1
    return 0


def _command(sub: Any, name: str, help_text: str, func: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help_text,
        description=help_text,
        formatter_class=HelpFormatter,
    )
    add_settings_options(parser, CONNECTION_SETTINGS)
    parser.set_defaults(func=func)
    return parser


def register(sub: Any) -> None:
    """Add ``config``, ``registry`` and ``mcp`` to the top-level subparsers."""
    config = sub.add_parser("config", help="push, show, diff and roll back the cluster config")
    verbs = config.add_subparsers(dest="verb", required=True)
    push = _command(
        verbs, "push", "validate a YAML config and publish it as the next version", cmd_push
    )
    push.add_argument("file", help="YAML config (see deploy/cluster.example.yaml)")
    push.add_argument("--note", default=None, help="kept in the history")
    push.add_argument("--author", default=None, help="kept in the history (default user@host)")
    push.add_argument("--check", action="store_true", help="only validate; touch nothing")
    push.add_argument(
        "--diff",
        action="store_true",
        help="with --check: also list what the push would change (reads the current config)",
    )
    push.add_argument(
        "--yes",
        action="store_true",
        help="publish even though the document removes keys of the current config",
    )
    show = _command(verbs, "show", "print the current config (or an earlier version)", cmd_show)
    show.add_argument("--version", type=int, default=None, help="an earlier version")
    show.add_argument("--json", action="store_true", help="JSON instead of YAML")
    history = _command(verbs, "history", "who published which version, when", cmd_history)
    history.add_argument("--limit", type=int, default=20, help="how many versions")
    diff = _command(verbs, "diff", "what changed between two versions", cmd_diff)
    diff.add_argument("a", type=int, help="the earlier version")
    diff.add_argument("b", type=int, help="the later version")
    rollback = _command(
        verbs, "rollback", "publish an earlier version's document again", cmd_rollback
    )
    rollback.add_argument("version", type=int, help="the version to go back to")
    rollback.add_argument("--author", default=None, help="kept in the history (default user@host)")

    registry = sub.add_parser("registry", help="the cluster-wide tool registry generation")
    registry_verbs = registry.add_subparsers(dest="verb", required=True)
    bump = _command(
        registry_verbs,
        "bump",
        "bump it: MCP tools re-discovered, agents rebuilt",
        cmd_registry_bump,
    )
    bump.add_argument("--reason", default=None, help="carried in the announcement")
    bump.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for the workers; 0: do not wait",
    )
    bump.set_defaults(default_reason="registry bump")

    mcp = sub.add_parser("mcp", help="MCP servers of the workers")
    mcp_verbs = mcp.add_subparsers(dest="verb", required=True)
    reload = _command(
        mcp_verbs,
        "reload",
        "every worker re-discovers its MCP tools; agents rebuild",
        cmd_registry_bump,
    )
    reload.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for the workers; 0: do not wait",
    )
    reload.set_defaults(default_reason="mcp reload")
