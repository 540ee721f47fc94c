"""The command line's parser: no prefix matching, the right usage, help a person can read."""

from __future__ import annotations

import re

import pytest

from coordinator.cli.main import build_parser

COMMANDS = [
    [],
    ["chat"],
    ["demo"],
    ["worker"],
    ["coordinator"],
    ["drain"],
    ["settings"],
    ["config"],
    ["config", "push"],
    ["config", "show"],
    ["config", "history"],
    ["config", "diff"],
    ["config", "rollback"],
    ["registry"],
    ["registry", "bump"],
    ["mcp"],
    ["mcp", "reload"],
    ["status"],
    ["session"],
    ["health"],
    ["serve"],
    ["simulate-llm"],
]

# reStructuredText roles, literal quotes and source file paths belong in docstrings, not in --help.
MARKUP = re.compile(r"``|:(mod|func|class|data|meth|attr):|\b[\w/]+\.py\b")


def help_of(command: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([*command, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_help_has_no_docstring_markup_and_every_option_says_what_it_is(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    text = help_of(command, capsys)
    assert not MARKUP.search(text), MARKUP.search(text)
    lines = [*text.splitlines(), ""]
    # An option whose help does not fit beside it has it on the next, deeper-indented line.
    bare = [
        line
        for line, after in zip(lines, lines[1:], strict=False)
        if re.fullmatch(r"  (-\w, )?--[\w-]+( [A-Z_]+)?", line) and not after.startswith(" " * 8)
    ]
    assert not bare, f"options without help: {bare}"


def test_an_abbreviated_flag_is_refused_not_taken_for_a_longer_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from coordinator.cli.main import main

    with pytest.raises(SystemExit) as done:
        main(["worker", "--name", "w1"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --name w1" in err
    with pytest.raises(SystemExit):
        main(["config", "push", "--che", "x.yaml"])
    assert "unrecognized arguments: --che" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (["status", "--bogus"], "usage: agent-cluster status"),
        (["config", "history", "--bogus"], "usage: agent-cluster config history"),
        (["mcp", "reload", "--bogus"], "usage: agent-cluster mcp reload"),
    ],
)
def test_an_unknown_flag_shows_the_usage_of_the_command_given(
    argv: list[str], usage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from coordinator.cli.main import main

    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage), err
    assert err.rstrip().endswith(f"error: unrecognized arguments: {argv[-1]}")


def test_drain_has_one_timeout_flag(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of(["drain"], capsys)
    assert "--drain-timeout" in text
    assert not re.search(r"--timeout\b", text)
    args = build_parser().parse_args(["drain", "w1", "--drain-timeout", "30"])
    assert args.setting_drain_timeout == 30.0
