"""Fault specs: strings, mappings and Fault objects."""

from __future__ import annotations

import pytest

from agent.simulator.faults import DEFAULT_SLOW_SECONDS, Fault, parse_fault
from cluster.errors import ConfigError


def test_string_specs() -> None:
    assert parse_fault("429") == Fault("429")
    assert parse_fault("500").kind == "500"
    assert parse_fault("drop").kind == "drop"
    assert parse_fault("slow") == Fault("slow", seconds=DEFAULT_SLOW_SECONDS)
    assert parse_fault("slow:2.5") == Fault.slow(2.5)
    assert parse_fault("429:3") == Fault.rate_limited(3.0)


def test_mapping_specs() -> None:
    assert parse_fault({"kind": "slow", "seconds": 1}) == Fault.slow(1.0)


@pytest.mark.parametrize("spec", ["404", "slow:soon", "drop:1", "", {"kind": "nap"}])
def test_bad_specs_say_what_is_accepted(spec: object) -> None:
    with pytest.raises(ConfigError):
        parse_fault(spec)  # type: ignore[arg-type]


def test_negative_delay_is_refused() -> None:
    with pytest.raises(ConfigError, match=">= 0"):
        Fault.slow(-1)
