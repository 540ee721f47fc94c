"""System prompt assembly and the frozen prefix."""

from __future__ import annotations

from pathlib import Path

import msgpack

from agent.prompt import FrozenPrompt, build_system_prompt, read_context_files, read_skills


def test_parts_appear_in_a_fixed_order() -> None:
    prompt = build_system_prompt(
        identity="ID",
        platform="telegram",
        memory_notes=["likes tea"],
        skills=[("deploy", "ship it")],
        context_files=[("AGENTS.md", "be terse")],
        ephemeral_prompt="EPHEMERAL",
    )
    order = [
        prompt.index(s)
        for s in ("ID", "Telegram", "deploy: ship it", "be terse", "likes tea", "EPHEMERAL")
    ]
    assert order == sorted(order)


def test_same_inputs_give_identical_prompts() -> None:
    assert build_system_prompt(platform="slack") == build_system_prompt(platform="slack")


def test_context_files_and_skills_are_read_from_disk(tmp_path: Path) -> None:
    (tmp_path / "AGENTS.md").write_text("Run tests with make test.\n")
    skills = tmp_path / "skills"
    (skills / "release").mkdir(parents=True)
    (skills / "release" / "SKILL.md").write_text("# Cut a release\nsteps...\n")
    assert read_context_files(tmp_path) == [("AGENTS.md", "Run tests with make test.\n")]
    assert read_skills(skills) == [("release", "Cut a release")]
    assert read_skills(tmp_path / "missing") == []


def test_frozen_prompt_survives_a_msgpack_round_trip_byte_for_byte() -> None:
    frozen = FrozenPrompt(
        system_prompt="S" * 100,
        tool_schemas=({"name": "t", "description": "d", "parameters": {"type": "object"}},),
    )
    restored = FrozenPrompt.from_dict(msgpack.unpackb(msgpack.packb(frozen.as_dict())))
    assert restored == frozen
    assert restored.fingerprint() == frozen.fingerprint()
