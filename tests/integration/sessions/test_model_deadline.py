"""A provider that does not answer: the turn ends at the model-call deadline and says why."""

from __future__ import annotations

import re
import time

import pytest

from agent.simulator import ProviderSimulator
from cluster.errors import TurnFailed
from tests.support.fleet import Fleet, coordinator

pytestmark = pytest.mark.integration

DEADLINE = 2.0


def test_a_provider_that_never_answers_ends_the_turn_at_the_deadline_naming_the_timeout(
    workers: Fleet, slow_model: ProviderSimulator
) -> None:
    slow_model.set_latency(ttft=0.0)
    slow_model.inject_faults(*["slow:60"] * 4)  # each try waits a minute for its answer
    workers.start("w0", env={"AGENT_CLUSTER_MODEL_CALL_DEADLINE": str(DEADLINE)})
    with coordinator(workers.settings()) as coord:
        sent = time.monotonic()
        with pytest.raises(TurnFailed) as err:
            coord.submit("stuck", "hello?", timeout=60)
        took = time.monotonic() - sent
    message = str(err.value)
    assert took < DEADLINE + 5.0, f"the caller waited {took:.1f}s, not minutes"
    assert f"model_call_deadline {DEADLINE:g} s" in message, message
    waited = re.search(r"the last try timed out after ([0-9.]+) s", message)
    assert waited is not None and DEADLINE <= float(waited.group(1)) < took, message
    assert "rate limiting" not in message, message
    assert ".." not in message
    print(
        f"model call deadline {DEADLINE:g}s: error reply {took:.2f}s after the message: {message}"
    )
