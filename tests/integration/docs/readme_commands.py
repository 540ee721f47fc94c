"""The shell commands the README shows, read from its code blocks, and what the test does with each.

A ``sh`` block is a script: one command per line, ``\\`` continuations and
here-documents joined. In a block without a language, only lines after a
``$ `` prompt are commands (the rest is their output). Every command must
match exactly one rule of :data:`RULES`: run it, start it in the background,
or skip it for the reason given. A command no rule knows fails the test, so a
new command in the README is either run or consciously skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[3] / "README.md"


@dataclass(frozen=True)
class Command:
    """One command of the README: its text and the heading it stands under."""

    text: str
    section: str


@dataclass(frozen=True)
class Rule:
    """What to do with the commands matching ``pattern`` (a regular expression, searched).

    Attributes:
        pattern: Matched against the command's text.
        action: ``run`` (it must exit 0, or ``status``), ``background`` (a
            server: started, waited for, stopped at the end) or ``skip``.
        reason: Why a command is skipped; for the others what is checked.
        rewrite: ``(regex, replacement)`` pairs applied before running
            (placeholders the README leaves to the reader).
        stdin: Given on standard input.
        expect: Text its output must contain.
        status: The exit status it must end with.
    """

    pattern: str
    action: str
    reason: str = ""
    rewrite: tuple[tuple[str, str], ...] = ()
    stdin: str = ""
    expect: str = ""
    status: int = 0


RULES: tuple[Rule, ...] = (
    Rule(
        r"^python3 -m venv",
        "skip",
        "creates a virtual environment and installs from the package index (minutes); "
        "CI's own install (.ci/run) is this command",
    ),
    Rule(
        r"^\.venv/bin/ruff check",
        "skip",
        "lint, format, types and the whole suite: what .ci/run runs",
    ),
    Rule(
        r"^\.venv/bin/python benchmarks/",
        "skip",
        "benchmarks take minutes and print figures; they are not tests",
    ),
    Rule(
        r"^\.venv/bin/python -m tests\.integration\.chaos\.run",
        "skip",
        "a 600 s chaos run; tests/integration/chaos runs short ones",
    ),
    Rule(r"^agent-cluster demo", "run", "the demo's story", expect="drained in"),
    Rule(
        r"^redis-server --port \d+ &$",
        "background",
        "a real redis-server",
        rewrite=((r" &$", " --bind 127.0.0.1 --save '' --appendonly no &"),),
    ),
    Rule(r"^export ", "run", "the variable reaches the later commands"),
    Rule(r"^agent-cluster worker --id w\d &", "background", "a worker process"),
    Rule(r"^agent-cluster simulate-llm --port \d+", "background", "the provider simulator"),
    Rule(r"^agent-cluster serve ", "background", "the HTTP gateway"),
    Rule(
        r"^echo '\{\"session\".*\| agent-cluster coordinator",
        "run",
        "answered",
        expect='"ok": true',
    ),
    Rule(
        r"^agent-cluster chat --provider openai",
        "run",
        "a turn through the simulator",
        stdin="hello\n",
        expect="agent>",
    ),
    Rule(
        r"^agent-cluster chat\b",
        "run",
        "a turn of the offline model",
        stdin="hello\n",
        expect="agent> ",
    ),
    Rule(r"^agent-cluster status$", "run", "the worker table", expect="| w1 "),
    Rule(
        r"^agent-cluster session chat-1$",
        "run",
        "the session the coordinator created",
        expect="session chat-1",
    ),
    Rule(r"^agent-cluster health w2; echo \$\?$", "run", "w2 is healthy", expect="healthy"),
    Rule(
        r"^curl -sN \.\.\.",
        "skip",
        "its arguments are elided (...); resuming with Last-Event-ID is tested in "
        "tests/integration/http/test_streaming.py",
    ),
    Rule(r"^curl ", "run", "no error in the JSON reply (a 415 or 401 would be one)"),
    Rule(r"^cat > real\.yaml <<'YAML'", "run", "writes the file the next push reads"),
    Rule(
        r"^agent-cluster config push --check FILE",
        "run",
        "validates",
        rewrite=((r"FILE", "deploy/cluster.example.yaml"),),
        expect="valid",
    ),
    Rule(
        r"^agent-cluster config show \[--version N\] \[--json\]",
        "run",
        "the current version",
        rewrite=((r" \[--version N\] \[--json\]", ""),),
        expect="# config version",
    ),
    Rule(
        r"^agent-cluster config push bad\.yaml$",
        "skip",
        "bad.yaml stands for any invalid file; the refusals are tested in "
        "tests/unit/cluster/test_config_schema.py and tests/integration/config/",
    ),
    Rule(r"^agent-cluster config (push|rollback|history|diff) ", "run", "exit 0"),
    Rule(r"^agent-cluster config history$", "run", "exit 0", expect="| version |"),
    Rule(
        r"^agent-cluster (registry bump|mcp reload)\b",
        "run",
        "every live worker acknowledges",
        expect="live worker(s)",
    ),
)


def _heading(lines: list[str], index: int) -> str:
    for line in reversed(lines[:index]):
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def _script_commands(body: list[str]) -> list[str]:
    commands: list[str] = []
    i = 0
    while i < len(body):
        line = body[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\") and i < len(body):
            line = line + "\n" + body[i]
            i += 1
        heredoc = re.search(r"<<'?(\w+)'?", line)
        if heredoc:
            while i < len(body):
                line += "\n" + body[i]
                i += 1
                if body[i - 1] == heredoc[1]:
                    break
        commands.append(line)
    return commands


def readme_commands(text: str | None = None) -> list[Command]:
    """Every shell command of the README's code blocks, in order."""
    lines = (README.read_text(encoding="utf-8") if text is None else text).splitlines()
    found: list[Command] = []
    i = 0
    while i < len(lines):
        opening = re.fullmatch(r"```(\w*)", lines[i])
        i += 1
        if not opening:
            continue
        start = i
        while lines[i] != "```":
            i += 1
        body, section = lines[start:i], _heading(lines, start)
        i += 1
        if opening[1] == "sh":
            found.extend(Command(c, section) for c in _script_commands(body))
        elif opening[1] == "":
            found.extend(Command(line[2:], section) for line in body if line.startswith("$ "))
    return found


def strip_comment(command: str) -> str:
    """The command without a trailing ``# comment`` (outside quotes) and spaces."""
    first, _, rest = command.partition("\n")
    quote = ""
    for index, char in enumerate(first):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or first[index - 1] in " \t"):
            first = first[:index]
            break
    return (first.rstrip() + ("\n" + rest if rest else "")).strip()


def rule_for(command: str) -> Rule | None:
    """The first rule matching the command (comments removed), if any."""
    text = strip_comment(command)
    return next((rule for rule in RULES if re.search(rule.pattern, text)), None)
