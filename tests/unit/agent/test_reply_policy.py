"""The deterministic reply policy shared by the offline provider and the simulator."""

from __future__ import annotations

from typing import Any

from agent.providers.reply_policy import PolicyReply, decide_reply


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def test_sh_command_calls_terminal_when_offered() -> None:
    reply = decide_reply([user("!sh ls -la /tmp")], ["memory", "terminal"])
    assert reply == PolicyReply(text=None, tool_calls=(("terminal", {"command": "ls -la /tmp"}),))


def test_sh_command_keeps_a_multiline_command() -> None:
    reply = decide_reply([user("!sh cd /tmp\nls")], ["terminal"])
    assert reply.tool_calls == (("terminal", {"command": "cd /tmp\nls"}),)


def test_sh_command_without_terminal_is_echoed() -> None:
    assert decide_reply([user("!sh ls")], ["memory"]) == PolicyReply(text="echo: !sh ls")


def test_tool_command_calls_the_named_tool_with_json_args() -> None:
    reply = decide_reply(
        [user('!tool todo {"action": "add", "items": [1, 2]}')], ["terminal", "todo"]
    )
    assert reply.text is None
    assert reply.tool_calls == (("todo", {"action": "add", "items": [1, 2]}),)


def test_tool_command_without_args_passes_an_empty_object() -> None:
    assert decide_reply([user("!tool memory")], ["memory"]).tool_calls == (("memory", {}),)


def test_tool_command_with_bad_json_says_so_in_text() -> None:
    reply = decide_reply([user("!tool todo {not json")], ["todo"])
    assert reply.tool_calls == ()
    assert reply.text is not None
    assert "not valid JSON" in reply.text and "todo" in reply.text


def test_tool_command_with_non_object_args_says_so() -> None:
    reply = decide_reply([user("!tool todo [1, 2]")], ["todo"])
    assert reply.tool_calls == ()
    assert reply.text is not None and "JSON object" in reply.text


def test_tool_command_for_a_tool_not_offered_is_echoed() -> None:
    assert decide_reply([user("!tool rm {}")], ["todo"]).text == "echo: !tool rm {}"


def test_tool_result_is_quoted_with_its_name_and_cut_at_500_chars() -> None:
    messages = [
        user("!sh yes"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "name": "terminal", "arguments": {}}],
        },
        {"role": "tool", "tool_call_id": "c1", "name": "terminal", "content": "y\n" * 400},
    ]
    reply = decide_reply(messages, ["terminal"])
    assert reply.tool_calls == ()
    assert reply.text == "[terminal] " + ("y\n" * 400)[:500]


def test_plain_text_is_echoed() -> None:
    assert decide_reply([user("hello there")], []) == PolicyReply(text="echo: hello there")


def test_echo_uses_the_last_user_message_when_the_last_is_from_the_assistant() -> None:
    messages = [user("first"), {"role": "assistant", "content": "prefill"}]
    assert decide_reply(messages, []).text == "echo: first"


def test_multipart_user_content_is_joined() -> None:
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]
    assert decide_reply(messages, []).text == "echo: a\nb"


def test_empty_conversation_gives_an_empty_echo() -> None:
    assert decide_reply([], ["terminal"]).text == "echo: "


def test_the_reply_is_deterministic() -> None:
    messages = [user('!tool todo {"a": 1}')]
    assert decide_reply(messages, ("todo",)) == decide_reply(messages, ("todo",))
