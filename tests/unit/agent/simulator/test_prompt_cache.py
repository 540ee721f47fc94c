"""Prompt caching rules of both providers, driven by a fake clock (no sleeps)."""

from __future__ import annotations

import pytest

from agent.simulator.prompt_cache import PromptCache, cache_partition
from agent.simulator.tokens import PromptBlock, TokenizedPrompt
from cluster.errors import ConfigError
from tests.fakes import FakeClock

KEY = cache_partition("sk-test", "model-a")


def words(n: int, word: str = "w") -> str:
    """Text of exactly ``n`` tokens."""
    return f" {word}" * n


def prompt(*sizes: int, breakpoints: tuple[int, ...] = (), word: str = "w") -> TokenizedPrompt:
    """Blocks of the given token sizes; ``breakpoints`` are block indices."""
    return TokenizedPrompt(
        [
            PromptBlock(words(n, word), cache_breakpoint=i in breakpoints)
            for i, n in enumerate(sizes)
        ]
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(clock: FakeClock) -> PromptCache:
    return PromptCache(clock=clock)


# -- partition -----------------------------------------------------------------


def test_partition_hashes_the_full_key_and_keeps_the_model() -> None:
    jwt_a, jwt_b = "eyJhbGciOiJIUzI1NiJ9.a", "eyJhbGciOiJIUzI1NiJ9.b"
    assert cache_partition(jwt_a, "m") != cache_partition(jwt_b, "m")
    assert cache_partition(jwt_a, "m") != cache_partition(jwt_a, "n")
    assert jwt_a not in cache_partition(jwt_a, "m")
    assert cache_partition(jwt_a, "m").endswith(":m")


# -- OpenAI --------------------------------------------------------------------


def test_openai_first_request_reads_nothing(cache: PromptCache) -> None:
    usage = cache.openai(KEY, prompt(1500))
    assert (usage.prompt_tokens, usage.cached_tokens) == (1500, 0)


def test_openai_repeat_reads_the_prefix_in_128_token_steps_from_1024(cache: PromptCache) -> None:
    cache.openai(KEY, prompt(1500))
    usage = cache.openai(KEY, prompt(1500))
    assert usage.cached_tokens == 1024 + 3 * 128  # 1408 <= 1500 < 1536
    assert usage.uncached_tokens == 1500 - 1408


def test_openai_growing_conversation_reads_the_old_prompt(cache: PromptCache) -> None:
    cache.openai(KEY, prompt(1200, 100))
    usage = cache.openai(KEY, prompt(1200, 100, 400))
    assert usage.prompt_tokens == 1700
    assert usage.cached_tokens == 1280  # longest 128-step prefix of the 1300 seen tokens


def test_openai_prompts_under_1024_tokens_are_never_cached(cache: PromptCache) -> None:
    cache.openai(KEY, prompt(1023))
    assert cache.openai(KEY, prompt(1023)).cached_tokens == 0
    assert len(cache) == 0


def test_openai_exactly_1024_tokens_is_cached(cache: PromptCache) -> None:
    cache.openai(KEY, prompt(1024))
    assert cache.openai(KEY, prompt(1024)).cached_tokens == 1024


def test_openai_a_changed_early_block_misses(cache: PromptCache) -> None:
    cache.openai(KEY, prompt(10, 1500))
    changed = TokenizedPrompt([PromptBlock(words(10, "x")), PromptBlock(words(1500))])
    assert cache.openai(KEY, changed).cached_tokens == 0


def test_openai_change_after_the_first_1152_tokens_keeps_that_prefix(cache: PromptCache) -> None:
    cache.openai(KEY, prompt(1200, 500))
    edited = TokenizedPrompt([PromptBlock(words(1200)), PromptBlock(words(500, "x"))])
    assert cache.openai(KEY, edited).cached_tokens == 1152


def test_openai_minimum_and_step_are_configurable(clock: FakeClock) -> None:
    cache = PromptCache(clock=clock, openai_min_tokens=10, openai_step=5)
    cache.openai(KEY, prompt(23))
    assert cache.openai(KEY, prompt(23)).cached_tokens == 20


def test_openai_partitions_by_key_and_model(cache: PromptCache) -> None:
    cache.openai(KEY, prompt(2000))
    assert cache.openai(cache_partition("sk-other", "model-a"), prompt(2000)).cached_tokens == 0
    assert cache.openai(cache_partition("sk-test", "model-b"), prompt(2000)).cached_tokens == 0
    assert cache.openai(KEY, prompt(2000)).cached_tokens == 1920


def test_openai_entries_expire_after_the_ttl(cache: PromptCache, clock: FakeClock) -> None:
    cache.openai(KEY, prompt(1100))
    clock.advance(299.9)
    assert cache.openai(KEY, prompt(1100)).cached_tokens == 1024
    clock.advance(300.0)
    assert cache.openai(KEY, prompt(1100)).cached_tokens == 0


def test_openai_a_hit_refreshes_the_entry(cache: PromptCache, clock: FakeClock) -> None:
    cache.openai(KEY, prompt(1100))
    for _ in range(5):  # 5 x 200 s: far past the TTL in total, never 300 s apart
        clock.advance(200)
        assert cache.openai(KEY, prompt(1100)).cached_tokens == 1024


def test_ttl_is_configurable(clock: FakeClock) -> None:
    cache = PromptCache(clock=clock, ttl=10)
    cache.openai(KEY, prompt(1100))
    clock.advance(10)
    assert cache.openai(KEY, prompt(1100)).cached_tokens == 0


# -- Anthropic -----------------------------------------------------------------


def test_anthropic_without_breakpoints_caches_nothing(cache: PromptCache) -> None:
    cache.anthropic(KEY, prompt(3000))
    usage = cache.anthropic(KEY, prompt(3000))
    assert (
        usage.input_tokens,
        usage.cache_read_input_tokens,
        usage.cache_creation_input_tokens,
    ) == (3000, 0, 0)


def test_anthropic_writes_then_reads_at_the_breakpoint(cache: PromptCache) -> None:
    first = cache.anthropic(KEY, prompt(1500, 40, breakpoints=(0,)))
    assert (
        first.cache_read_input_tokens,
        first.cache_creation_input_tokens,
        first.input_tokens,
    ) == (0, 1500, 40)
    second = cache.anthropic(KEY, prompt(1500, 60, breakpoints=(0,)))
    assert (
        second.cache_read_input_tokens,
        second.cache_creation_input_tokens,
        second.input_tokens,
    ) == (1500, 0, 60)


def test_anthropic_prefix_under_the_minimum_is_not_cached(cache: PromptCache) -> None:
    first = cache.anthropic(KEY, prompt(1000, 500, breakpoints=(0,)))
    assert first.cache_creation_input_tokens == 0 and first.input_tokens == 1500
    second = cache.anthropic(KEY, prompt(1000, 500, breakpoints=(0,)))
    assert second.cache_read_input_tokens == 0 and second.input_tokens == 1500


def test_anthropic_minimum_is_configurable(clock: FakeClock) -> None:
    cache = PromptCache(clock=clock, anthropic_min_tokens=100)
    cache.anthropic(KEY, prompt(100, 5, breakpoints=(0,)))
    assert cache.anthropic(KEY, prompt(100, 5, breakpoints=(0,))).cache_read_input_tokens == 100


def test_anthropic_moving_breakpoint_reads_the_previous_one_and_writes_the_rest(
    cache: PromptCache,
) -> None:
    # system (breakpoint) + a conversation whose last block carries the second breakpoint
    cache.anthropic(KEY, prompt(1100, 50, 50, breakpoints=(0, 2)))
    usage = cache.anthropic(KEY, prompt(1100, 50, 50, 50, 50, breakpoints=(0, 4)))
    assert (
        usage.cache_read_input_tokens == 1200
    )  # hit found at block 2 by looking back from block 4
    assert usage.cache_creation_input_tokens == 100
    assert usage.input_tokens == 0


def test_anthropic_lookback_stops_20_blocks_before_the_breakpoint(cache: PromptCache) -> None:
    cache.anthropic(KEY, prompt(1100, *[5] * 30, breakpoints=(0, 1)))
    # 21 blocks after the cached boundary: block 1 is 21 boundaries back from block 22 -> miss;
    # only the system breakpoint (block 0) hits.
    far = cache.anthropic(KEY, prompt(1100, *[5] * 30, breakpoints=(0, 22)))
    assert far.cache_read_input_tokens == 1100
    assert far.cache_creation_input_tokens == 22 * 5
    # 20 blocks after: still found.
    cache.anthropic(KEY, prompt(1100, *[5] * 30, breakpoints=(0, 1)))
    near = cache.anthropic(KEY, prompt(1100, *[5] * 30, breakpoints=(0, 21)))
    assert near.cache_read_input_tokens == 1105


def test_anthropic_lookback_is_configurable(clock: FakeClock) -> None:
    cache = PromptCache(clock=clock, anthropic_lookback_blocks=0)
    cache.anthropic(KEY, prompt(1100, 5, 5, breakpoints=(0,)))
    usage = cache.anthropic(KEY, prompt(1100, 5, 5, breakpoints=(1,)))
    assert usage.cache_read_input_tokens == 0  # block 0 was cached, but block 1 does not look back
    assert usage.cache_creation_input_tokens == 1105


def test_anthropic_reads_the_longest_hit_over_all_breakpoints(cache: PromptCache) -> None:
    cache.anthropic(KEY, prompt(1100, 200, 10, breakpoints=(0, 1)))
    usage = cache.anthropic(KEY, prompt(1100, 200, 10, breakpoints=(0, 1)))
    assert usage.cache_read_input_tokens == 1300
    assert usage.input_tokens == 10


def test_anthropic_changed_system_prompt_misses(cache: PromptCache) -> None:
    cache.anthropic(KEY, prompt(1500, 10, breakpoints=(0,)))
    changed = TokenizedPrompt(
        [PromptBlock(words(1500, "z"), cache_breakpoint=True), PromptBlock(words(10))]
    )
    assert cache.anthropic(KEY, changed).cache_read_input_tokens == 0


def test_anthropic_partitions_by_key_and_model(cache: PromptCache) -> None:
    cache.anthropic(KEY, prompt(1500, breakpoints=(0,)))
    assert (
        cache.anthropic(
            cache_partition("other", "model-a"), prompt(1500, breakpoints=(0,))
        ).cache_read_input_tokens
        == 0
    )
    assert (
        cache.anthropic(
            cache_partition("sk-test", "m2"), prompt(1500, breakpoints=(0,))
        ).cache_read_input_tokens
        == 0
    )


def test_anthropic_does_not_read_openai_entries(cache: PromptCache) -> None:
    cache.openai(KEY, prompt(1500))
    assert cache.anthropic(KEY, prompt(1500, breakpoints=(0,))).cache_read_input_tokens == 0


def test_anthropic_ttl_expiry_and_refresh_on_hit(cache: PromptCache, clock: FakeClock) -> None:
    cache.anthropic(KEY, prompt(1500, 10, breakpoints=(0,)))
    clock.advance(250)
    assert cache.anthropic(KEY, prompt(1500, 10, breakpoints=(0,))).cache_read_input_tokens == 1500
    clock.advance(250)  # 500 s after the write, 250 s after the refreshing hit
    assert cache.anthropic(KEY, prompt(1500, 10, breakpoints=(0,))).cache_read_input_tokens == 1500
    clock.advance(300)
    expired = cache.anthropic(KEY, prompt(1500, 10, breakpoints=(0,)))
    assert expired.cache_read_input_tokens == 0
    assert expired.cache_creation_input_tokens == 1500


def test_expired_entries_are_dropped(cache: PromptCache, clock: FakeClock) -> None:
    cache.openai(KEY, prompt(1300))
    cache.anthropic(KEY, prompt(1300, breakpoints=(0,)))
    assert len(cache) == 3 + 1
    clock.advance(301)
    assert len(cache) == 0


def test_bad_settings_are_refused(clock: FakeClock) -> None:
    with pytest.raises(ConfigError, match="ttl"):
        PromptCache(clock=clock, ttl=0)
