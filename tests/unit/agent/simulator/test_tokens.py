"""The approximate tokenizer: lossless, deterministic and prefix-stable block by block."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent.simulator.tokens import PromptBlock, TokenizedPrompt, count_tokens, tokenize


def test_words_punctuation_and_long_words() -> None:
    assert tokenize("Hello, world!") == ["Hell", "o", ",", " worl", "d", "!"]
    assert count_tokens("") == 0
    assert count_tokens("a b c") == 3


def test_about_one_token_per_short_word() -> None:
    assert count_tokens("the cat sat on the mat " * 100) == 600 + 1  # trailing space


@given(st.text())
def test_tokens_join_back_to_the_text(text: str) -> None:
    assert "".join(tokenize(text)) == text


@given(
    st.lists(st.text(max_size=40), max_size=8),
    st.lists(st.text(max_size=40), min_size=1, max_size=4),
)
def test_appending_blocks_only_appends_tokens(head: list[str], tail: list[str]) -> None:
    short = TokenizedPrompt([PromptBlock(t) for t in head])
    long = TokenizedPrompt([PromptBlock(t) for t in head + tail])
    assert long.block_ends[: len(head)] == short.block_ends
    assert long.block_prefix_digests()[: len(head)] == short.block_prefix_digests()
    positions = range(short.total_tokens + 1)
    assert long.token_prefix_digests(positions) == short.token_prefix_digests(positions)


def test_block_boundaries_are_part_of_the_prefix() -> None:
    one = TokenizedPrompt([PromptBlock("ab"), PromptBlock("c")])
    other = TokenizedPrompt([PromptBlock("a"), PromptBlock("bc")])
    assert one.block_prefix_digests()[-1] != other.block_prefix_digests()[-1]


def test_a_changed_byte_changes_every_later_prefix_digest() -> None:
    base = TokenizedPrompt(
        [PromptBlock("system prompt"), PromptBlock("hello"), PromptBlock("more")]
    )
    edited = TokenizedPrompt(
        [PromptBlock("system prompt"), PromptBlock("hellp"), PromptBlock("more")]
    )
    a, b = base.block_prefix_digests(), edited.block_prefix_digests()
    assert a[0] == b[0]
    assert a[1] != b[1] and a[2] != b[2]


def test_breakpoints_and_totals() -> None:
    prompt = TokenizedPrompt(
        [PromptBlock("a b"), PromptBlock("c", cache_breakpoint=True), PromptBlock("d e f")]
    )
    assert prompt.breakpoints == [1]
    assert prompt.block_ends == (2, 3, 6)
    assert prompt.total_tokens == 6


def test_token_prefix_digests_ignore_positions_out_of_range() -> None:
    prompt = TokenizedPrompt([PromptBlock("a b c")])
    assert set(prompt.token_prefix_digests([0, 2, 3, 4, -1])) == {0, 2, 3}
