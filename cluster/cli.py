"""The ``agent-cluster`` command line.

Subcommands:
    chat          talk to an in-process agent (offline model by default)
    simulate-llm  run the provider simulator (OpenAI + Anthropic wire formats)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence

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
