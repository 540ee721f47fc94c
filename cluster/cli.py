"""The ``agent-cluster`` command line.

Subcommands:
    demo          run an embedded cluster (fakeredis, offline model) and talk to it
    chat          talk to an in-process agent (offline model by default)
    worker        run a worker process against Redis
    coordinator   submit JSON lines from stdin to a running cluster, print replies
    simulate-llm  run the provider simulator (OpenAI + Anthropic wire formats)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from cluster.errors import AgentClusterError


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
            for message in result.new_messages:
                if message["role"] == "tool":
                    print(f"  [{message['name']}] {message['content'][:400]}")
            print(f"agent> {result.text}")
            u = result.usage
            print(
                f"  ({u.api_calls} model calls, {u.input_tokens} input / {u.cache_read_tokens} cached "
                f"/ {u.output_tokens} output tokens)"
            )
    finally:
        agent.release_clients()
    return 0


def cmd_simulate_llm(args: argparse.Namespace) -> int:
    """Serve the provider simulator until interrupted."""
    from agent.simulator import serve

    serve(args.host, args.port, ttft=args.ttft, tokens_per_second=args.tps)
    return 0


def _settings(args: argparse.Namespace) -> Any:
    """Settings from the environment, overridden by the command line.

    The Redis URL comes from ``--redis-url-file``, ``--redis-url``,
    ``AGENT_CLUSTER_REDIS_URL`` or ``AGENT_CLUSTER_REDIS_URL_FILE``; a password
    given with ``--redis-url`` is visible to every local user in ``ps``, which
    is warned about.
    """
    from cluster.errors import ConfigError
    from cluster.settings import ClusterSettings, read_url_file, redact_url

    settings = ClusterSettings.from_env()
    url, url_file = args.redis_url, getattr(args, "redis_url_file", None)
    if url is not None and url_file is not None:
        raise ConfigError("give either --redis-url or --redis-url-file, not both")
    if url_file is not None:
        url = read_url_file(url_file)
    elif url is not None and redact_url(url) != url:
        logging.getLogger("cluster.cli").warning(
            "--redis-url carries a password that every local user can read in the process "
            "list; use AGENT_CLUSTER_REDIS_URL or --redis-url-file instead"
        )
    overrides = {"redis_url": url, "namespace": args.namespace}
    return dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def cmd_worker(args: argparse.Namespace) -> int:
    """Run one worker process until SIGTERM; exit 0 after a clean drain."""
    from worker.process import WorkerOptions, WorkerProcess

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    options = WorkerOptions(concurrency=args.concurrency, cache_size=args.cache_size)
    if args.id:
        options.worker_id = args.id
    return WorkerProcess(settings=_settings(args), options=options).run_forever()


def cmd_coordinator(args: argparse.Namespace) -> int:
    """Read ``{"session": ..., "text": ...}`` lines from stdin, print one JSON reply per line."""
    from coordinator.ingress import Coordinator

    coordinator = Coordinator(settings=_settings(args))
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                request = json.loads(line)
                reply = coordinator.submit(
                    request["session"], request["text"], message_id=request.get("message_id")
                )
                print(
                    json.dumps({"ok": True, "text": reply.text, "worker": reply.worker_id}),
                    flush=True,
                )
            except (AgentClusterError, ValueError, KeyError, TypeError) as exc:
                print(
                    json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}), flush=True
                )
    finally:
        coordinator.close()
    return 0


def cmd_drain(args: argparse.Namespace) -> int:
    """Mark a worker draining; with --wait, show progress until it has left."""
    import time

    from cluster.connection import connect
    from cluster.keys import Keyspace
    from coordinator.admin import drain_worker, wait_for_drain

    settings = _settings(args)
    client = connect(settings.redis_url)
    keyspace = Keyspace(settings.namespace)
    try:
        drain_worker(client, keyspace, args.worker, timeout=args.timeout)
        print(f"{args.worker}: marked draining", flush=True)
        if not args.wait:
            return 0
        limit = settings.drain_timeout if args.timeout is None else args.timeout
        deadline = time.monotonic() + limit + 3 * settings.heartbeat_ttl
        left = wait_for_drain(
            client,
            keyspace,
            args.worker,
            deadline=deadline,
            report=lambda progress: print(progress.line(), flush=True),
        )
        if not left:
            print(f"{args.worker}: still registered after {limit:g}s + grace", file=sys.stderr)
        return 0 if left else 1
    finally:
        client.close()


def cmd_demo(args: argparse.Namespace) -> int:
    """An embedded cluster: N workers and a coordinator on fakeredis, offline model."""
    from coordinator.embedded import EmbeddedCluster

    with EmbeddedCluster(workers=args.workers) as cluster:
        print(f"embedded cluster: {args.workers} workers on fakeredis, offline model")
        print("| session | message | worker | cached agent | reply |")
        print("|---------|---------|--------|--------------|-------|")
        for _turn, text in enumerate(args.message or DEMO_MESSAGES):
            for session in [f"chat-{i}" for i in range(1, args.sessions + 1)]:
                reply = cluster.submit(session, text)
                print(
                    f"| {session} | {text} | {reply.worker_id} | "
                    f"{'yes' if reply.cache_hit else 'no (built)'} | {reply.text.splitlines()[0][:60]} |"
                )
    return 0


DEMO_MESSAGES = ["hello", "!sh echo hi from the sandbox", "what did it print?"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent-cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    chat = sub.add_parser("chat", help="talk to an in-process agent")
    chat.add_argument("--provider", default="offline", choices=["offline", "openai", "anthropic"])
    chat.add_argument("--model", default="offline-echo")
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

    demo = sub.add_parser("demo", help="embedded cluster on fakeredis (no server, no api key)")
    demo.add_argument("--workers", type=int, default=2)
    demo.add_argument("--sessions", type=int, default=3)
    demo.add_argument("--message", "-m", action="append", help="messages to send (repeatable)")
    demo.set_defaults(func=cmd_demo)

    for name, func, text in (
        ("worker", cmd_worker, "run a worker process"),
        ("coordinator", cmd_coordinator, "submit JSON lines from stdin"),
        ("drain", cmd_drain, "drain a worker: its turns move to other workers, then it exits"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument(
            "--redis-url",
            default=None,
            help="redis://, rediss:// (TLS); with a password prefer AGENT_CLUSTER_REDIS_URL or "
            "--redis-url-file (argv is visible to every local user)",
        )
        cmd.add_argument(
            "--redis-url-file",
            default=None,
            metavar="PATH",
            help="read the Redis URL (with its password) from this file",
        )
        cmd.add_argument("--namespace", default=None, help="key namespace (default ac)")
        cmd.set_defaults(func=func)
        if name == "worker":
            cmd.add_argument("--id", default=None, help="worker id (default host-random)")
            cmd.add_argument("--concurrency", type=int, default=32, help="turns in flight")
            cmd.add_argument("--cache-size", type=int, default=128, help="cached agents")
        if name == "drain":
            cmd.add_argument("worker", help="id of the worker to drain")
            cmd.add_argument(
                "--timeout", type=float, default=None, help="seconds for running turns to finish"
            )
            cmd.add_argument("--wait", action="store_true", help="show progress until it is gone")

    sim = sub.add_parser("simulate-llm", help="run the OpenAI/Anthropic provider simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8199)
    sim.add_argument("--ttft", type=float, default=0.0, help="seconds to first token")
    sim.add_argument("--tps", type=float, default=None, help="output tokens per second")
    sim.set_defaults(func=cmd_simulate_llm)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``agent-cluster`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except AgentClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
