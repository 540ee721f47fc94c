"""The agent-cluster command line.

Subcommands:
    demo          the product in seconds: embedded cluster, provider simulator, push, drain
    chat          talk to an in-process agent (offline model by default)
    worker        run a worker process against Redis
    coordinator   submit JSON lines from stdin to a running cluster, print replies
    simulate-llm  run the provider simulator (OpenAI + Anthropic wire formats)
    drain         drain a worker: its sessions move on, then it exits
    config        push, show, diff, roll back the cluster config (YAML)
    registry      bump the tool registry generation (agents rebuild)
    mcp           reload: every worker re-discovers its MCP tools
    settings      the settings in effect and where each came from
    status        workers, sessions owned, caches, queues, dead letters (--json)
    session       one session: owner, turns, pending messages, lease, cached
    health        deploy probe: exit 0 when the worker is beating and active
    serve         the HTTP API: JSON and SSE, OpenAI-compatible, admin
    platforms     chat platform bots (Telegram, Slack): lease holder, waiting, lag
    schedules     scheduled messages of a session: add (--at or --cron, UTC), list, cancel
    bench         benchmark suite against the baselines (--full: BENCHMARKS.md's run)

Settings come from flags, AGENT_CLUSTER_* variables and a settings file, in
that order (see docs/settings.md). A mistake prints one line and exits non-zero.

Exit status:
    0  done, or the answer is yes (health: the worker is healthy)
    1  the answer is no: an unhealthy worker, an unknown session, a drain
       that did not finish in time, a coordinator line that failed
    2  a wrong request: bad config, setting or flag, unknown worker
    3  Redis cannot be used: unreachable, credentials refused, no such database
    4  serve cannot listen on its address (the port is taken, or not allowed)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from importlib import metadata
from typing import Any

from cluster.errors import AgentClusterError, InvalidMessage
from coordinator.cli import config as cli_config
from coordinator.cli import platforms as cli_platforms
from coordinator.cli import schedules as cli_schedules
from coordinator.cli import serve as cli_serve
from coordinator.cli import status as cli_status
from coordinator.cli.bench import add_bench_parser
from coordinator.cli.errors import EXIT_NO, explain
from coordinator.cli.settings import (
    CONNECTION_SETTINGS,
    WORKER_SETTINGS,
    HelpFormatter,
    add_settings_options,
    configure_logging,
    settings_from_args,
)


def _chat_lines(args: argparse.Namespace) -> Iterable[str]:
    if args.message:
        yield from args.message
        return
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("you> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            return
        line = line.strip()
        if line in ("/quit", "/exit"):
            return
        if line:
            yield line


def _tool_calls(messages: Sequence[dict[str, Any]]) -> Iterator[str]:
    """``name {arguments}`` of each tool the turn called (the reply carries what they printed)."""
    for message in messages:
        for call in message.get("tool_calls") or ():
            arguments = json.dumps(call.get("arguments"), ensure_ascii=False)
            if len(arguments) > 200:
                arguments = arguments[:199] + "…"
            yield f"{call.get('name')} {arguments}"


def cmd_chat(args: argparse.Namespace) -> int:
    """An interactive conversation with one in-process agent."""
    from agent import AIAgent

    agent = AIAgent(
        model=args.model,
        provider=args.provider,
        base_url=args.base_url,
        session_id=args.session,
        platform="cli",
    )
    agent.stream_delta_callback = None
    try:
        for line in _chat_lines(args):
            if line == "/new":
                agent.close()
                agent = AIAgent(
                    model=args.model,
                    provider=args.provider,
                    base_url=args.base_url,
                    session_id=args.session,
                    platform="cli",
                )
                print("(new conversation)")
                continue
            result = agent.run_conversation(line)
            for call in _tool_calls(result.new_messages):
                print(f"  [{call}]")
            print(f"agent> {result.text}")
            u = result.usage
            print(
                f"  ({u.api_calls} model calls, {u.input_tokens} input / {u.cache_read_tokens} "
                f"cached / {u.output_tokens} output tokens)"
            )
    finally:
        agent.release_clients()
    return 0


def cmd_simulate_llm(args: argparse.Namespace) -> int:
    """Serve the provider simulator until interrupted."""
    from agent.simulator import serve

    serve(
        args.host,
        args.port,
        ttft=args.ttft,
        tokens_per_second=args.tps,
        context_window=args.context_window,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Run one worker process until SIGTERM; exit 0 after a clean drain."""
    from worker.process import WorkerOptions, WorkerProcess

    settings = settings_from_args(args)
    configure_logging(settings.log_level)
    options = WorkerOptions.from_settings(settings)
    if args.id:
        options.worker_id = args.id
    return WorkerProcess(settings=settings, options=options).run_forever()


def _request(line: str, number: int) -> tuple[str, str, str | None]:
    """Parse one coordinator input line, or say what to fix in it."""
    usage = 'expected a JSON object like {"session": "chat-1", "text": "hello"}'
    try:
        request = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidMessage(
            f"line {number} is not JSON ({exc.msg} at column {exc.colno}); {usage}"
        ) from None
    if not isinstance(request, dict):
        raise InvalidMessage(f"line {number} is a JSON {type(request).__name__}; {usage}")
    for field, meaning in (("session", "the conversation's key"), ("text", "the message to send")):
        if field not in request:
            raise InvalidMessage(f'line {number} has no "{field}" ({meaning}); {usage}')
        if not isinstance(request[field], str):
            raise InvalidMessage(
                f'line {number}: "{field}" must be a string, got {request[field]!r}'
            )
    message_id = request.get("message_id")
    if message_id is not None and not isinstance(message_id, str):
        raise InvalidMessage(f'line {number}: "message_id" must be a string, got {message_id!r}')
    return request["session"], request["text"], message_id


def cmd_coordinator(args: argparse.Namespace) -> int:
    """Read ``{"session": ..., "text": ...}`` lines from stdin, print one JSON reply per line.

    Exits 1 when any line failed (its output line says why and what to fix).
    """
    from coordinator.ingress import Coordinator

    coordinator = Coordinator(settings=settings_from_args(args))
    failed = 0
    try:
        for number, line in enumerate(sys.stdin, start=1):
            if not line.strip():
                continue
            try:
                session, text, message_id = _request(line, number)
                reply = coordinator.submit(session, text, message_id=message_id)
                print(
                    json.dumps({"ok": True, "text": reply.text, "worker": reply.worker_id}),
                    flush=True,
                )
            except AgentClusterError as exc:
                failed += 1
                print(
                    json.dumps(
                        {"ok": False, "line": number, "error": f"{type(exc).__name__}: {exc}"}
                    ),
                    flush=True,
                )
    finally:
        coordinator.close()
    if failed:
        print(f"error: {failed} line(s) failed", file=sys.stderr)
    return EXIT_NO if failed else 0


def cmd_drain(args: argparse.Namespace) -> int:
    """Mark a worker draining; with --wait, show progress until it has left.

    ``--drain-timeout`` given on the command line is sent to the worker (its
    running turns get that long); without it the worker uses its own
    ``drain_timeout``, and ``--wait`` waits for the one in effect here.
    """
    import time

    from cluster.connection import connect
    from cluster.keys import Keyspace
    from coordinator.admin import drain_worker, wait_for_drain

    settings = settings_from_args(args)
    client = connect(settings.redis_url)
    keyspace = Keyspace(settings.namespace)
    try:
        drain_worker(client, keyspace, args.worker, timeout=args.setting_drain_timeout)
        print(f"{args.worker}: marked draining", flush=True)
        if not args.wait:
            return 0
        limit = settings.drain_timeout
        deadline = time.monotonic() + limit + 3 * settings.heartbeat_ttl
        left = wait_for_drain(
            client,
            keyspace,
            args.worker,
            deadline=deadline,
            report=lambda progress: print(progress.line(), flush=True),
        )
        if not left:
            print(
                f"error: {args.worker} is still registered after {limit:g}s + grace; "
                "see its log (agent-cluster health WORKER says why)",
                file=sys.stderr,
            )
        return 0 if left else EXIT_NO
    finally:
        client.close()


def cmd_demo(args: argparse.Namespace) -> int:
    """The product in a few seconds: an embedded cluster, the simulator, a push, a drain."""
    if args.platform == "telegram":
        from coordinator.demo_platform import run_platform_demo

        return run_platform_demo()
    from coordinator.demo import run_demo

    return run_demo(workers=args.workers, sessions=args.sessions, messages=args.message)


def cmd_settings(args: argparse.Namespace) -> int:
    """Print each setting in effect and where it came from (or the docs table)."""
    from cluster.settings_sources import settings_markdown

    if args.markdown:
        print(settings_markdown(), end="")
        return 0
    settings = settings_from_args(args)
    print("| setting | value | from |")
    print("|---|---|---|")
    for name, source in args.settings_origins.items():
        value = settings.redacted_url() if name == "redis_url" else getattr(settings, name)
        print(f"| {name} | {value} | {source} |")
    return 0


def _version() -> str:
    try:
        return metadata.version("agent-cluster")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(
        prog="agent-cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    chat = sub.add_parser("chat", help="talk to an in-process agent", formatter_class=HelpFormatter)
    chat.add_argument(
        "--provider",
        default="offline",
        choices=["offline", "openai", "anthropic"],
        help="model provider (openai and anthropic read OPENAI_API_KEY / ANTHROPIC_API_KEY)",
    )
    chat.add_argument("--model", default="offline-echo", help="model name sent to the provider")
    chat.add_argument("--base-url", default=None, help="provider base URL (e.g. the simulator's)")
    chat.add_argument(
        "--session", default="cli", help="session id (tool state is kept per session)"
    )
    chat.add_argument(
        "--message",
        "-m",
        action="append",
        help="send this message instead of reading stdin (repeatable)",
    )
    chat.set_defaults(func=cmd_chat)

    demo = sub.add_parser(
        "demo",
        help="embedded cluster on fakeredis (no server, no api key)",
        formatter_class=HelpFormatter,
    )
    demo.add_argument("--workers", type=int, default=3, help="worker count (at least 2)")
    demo.add_argument("--sessions", type=int, default=6, help="conversations")
    demo.add_argument(
        "--message", "-m", action="append", help="the messages of turns 1-4, cycled (repeatable)"
    )
    demo.add_argument(
        "--platform",
        choices=["telegram"],
        default=None,
        help="instead: a Telegram bot served by two gateways, one poller, a killed poller "
        "handing on (simulated Telegram, no token)",
    )
    demo.set_defaults(func=cmd_demo)

    worker = sub.add_parser("worker", help="run a worker process", formatter_class=HelpFormatter)
    worker.add_argument("--id", default=None, help="worker id (default host-random)")
    add_settings_options(worker, WORKER_SETTINGS)
    worker.set_defaults(func=cmd_worker)

    coordinator = sub.add_parser(
        "coordinator", help="submit JSON lines from stdin", formatter_class=HelpFormatter
    )
    add_settings_options(coordinator, (*CONNECTION_SETTINGS, "turn_timeout"))
    coordinator.set_defaults(func=cmd_coordinator)

    drain = sub.add_parser(
        "drain",
        help="drain a worker: its turns move to other workers, then it exits",
        description="Mark a worker draining: it takes no new turn, hands its queued turns on, "
        "finishes its running ones (up to --drain-timeout when given, else its own "
        "drain_timeout), releases its agents and exits. --wait shows progress until it is gone.",
        formatter_class=HelpFormatter,
    )
    drain.add_argument("worker", help="id of the worker to drain")
    drain.add_argument("--wait", action="store_true", help="show progress until it is gone")
    add_settings_options(drain, (*CONNECTION_SETTINGS, "drain_timeout", "heartbeat_ttl"))
    drain.set_defaults(func=cmd_drain)

    settings = sub.add_parser(
        "settings",
        help="print the settings in effect (or --markdown: docs/settings.md)",
        formatter_class=HelpFormatter,
    )
    settings.add_argument("--markdown", action="store_true", help="print the settings table")
    add_settings_options(settings, WORKER_SETTINGS)
    settings.set_defaults(func=cmd_settings)

    cli_config.register(sub)
    cli_status.register(sub)
    cli_serve.register(sub)
    cli_platforms.register(sub)
    cli_schedules.register(sub)
    add_bench_parser(sub)

    sim = sub.add_parser(
        "simulate-llm",
        help="run the OpenAI/Anthropic provider simulator",
        formatter_class=HelpFormatter,
    )
    sim.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)"
    )
    sim.add_argument("--port", type=int, default=8199, help="port to listen on")
    sim.add_argument("--ttft", type=float, default=0.0, help="seconds to first token")
    sim.add_argument("--tps", type=float, default=None, help="output tokens per second")
    sim.add_argument(
        "--context-window",
        type=int,
        default=None,
        help="refuse prompts longer than this many tokens with 400, as a model's context "
        "window does (default: no limit)",
    )
    sim.set_defaults(func=cmd_simulate_llm)
    return parser


class CliParser(argparse.ArgumentParser):
    """An argument parser without prefix matching that knows which command it parses.

    With abbreviations on, ``worker --name w1`` would mean ``--namespace w1``
    and join another cluster without a word. Subparsers are made of the same
    class (argparse uses the parent's class), and each records itself as
    ``cli_parser`` (the innermost one wins), so an unknown flag is reported
    with the usage of the command that was given.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)
        self.set_defaults(cli_parser=self)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``agent-cluster`` console script.

    A mistake (bad setting or config, unknown worker, Redis unreachable,
    refused credentials, no such database) prints one line on stderr and
    exits non-zero (coordinator.cli.errors); only a bug shows a traceback.
    """
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:
        args.cli_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        explained = explain(exc, getattr(args, "resolved_settings", None))
        if explained is None:
            raise
        line, code = explained
        print(line, file=sys.stderr)
        return code


if __name__ == "__main__":
    raise SystemExit(main())
