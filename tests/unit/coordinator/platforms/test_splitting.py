"""Long replies become several platform messages; code blocks stay code in every one."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.platforms.splitting import TELEGRAM_LIMIT, split_reply


def _balanced(message: str) -> bool:
    return sum(1 for line in message.split("\n") if line.strip().startswith("```")) % 2 == 0


def test_a_short_reply_is_one_message_unchanged() -> None:
    assert split_reply("hello") == ["hello"]
    assert split_reply("") == []


def test_a_long_reply_is_cut_at_paragraphs_within_telegrams_limit() -> None:
    paragraphs = [f"paragraph {n} " + "word " * 300 for n in range(10)]
    messages = split_reply("\n\n".join(paragraphs))
    assert len(messages) > 1
    assert all(len(m) <= TELEGRAM_LIMIT for m in messages)
    assert all(m.startswith("paragraph") for m in messages)  # no paragraph cut in two
    assert "".join("".join(messages).split()) == "".join("".join(paragraphs).split())


def test_a_code_block_cut_in_two_is_closed_and_reopened_with_its_language() -> None:
    code = "\n".join(f"print({n})" for n in range(2000))
    text = f"Here:\n```python\n{code}\n```\nDone."
    messages = split_reply(text)
    assert len(messages) >= 3
    assert all(len(m) <= TELEGRAM_LIMIT and _balanced(m) for m in messages)
    assert all(m.startswith("```python\n") for m in messages[1:])
    assert messages[-1].endswith("```\nDone.")
    body = [line for m in messages for line in m.split("\n") if line.startswith("print(")]
    assert body == [f"print({n})" for n in range(2000)]  # every line once, none broken


def test_a_word_longer_than_the_limit_is_cut_hard() -> None:
    messages = split_reply("x" * 200, limit=64)
    assert all(len(m) <= 64 for m in messages)
    assert "".join(messages) == "x" * 200


def test_a_tiny_limit_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="at least 64"):
        split_reply("hi", limit=10)


@given(st.text(alphabet="ab `\n", max_size=600), st.integers(min_value=64, max_value=200))
def test_no_message_is_ever_over_the_limit(text: str, limit: int) -> None:
    assert all(len(m) <= limit for m in split_reply(text, limit))
