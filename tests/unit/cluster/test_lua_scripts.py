"""The Lua files document every KEYS[i]/ARGV[i] they use and never spell or build a key.

Every key a script touches comes in ``KEYS`` (so it runs on Redis Cluster),
except where the keys are only known inside the script: then the header
declares an ``ARGV[i]  key prefix: ...`` and the script's only other keys are
``ARGV[i] .. id`` (``turn_claim.lua``: the job hashes of the ids it pops).
"""

from __future__ import annotations

import re
from importlib import resources

import pytest

from cluster.scripts import SCRIPT_NAMES, lua_source

LUA_DIR = resources.files("cluster").joinpath("lua")


def test_every_lua_file_is_known_and_every_name_has_a_file() -> None:
    files = {p.name.removesuffix(".lua") for p in LUA_DIR.iterdir() if p.name.endswith(".lua")}
    assert files == set(SCRIPT_NAMES)


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_header_names_every_key_and_argument_used(name: str) -> None:
    source = lua_source(name)
    header = "\n".join(line for line in source.splitlines() if line.startswith("--"))
    body = "\n".join(line for line in source.splitlines() if not line.startswith("--"))
    for kind in ("KEYS", "ARGV"):
        for index in sorted(set(re.findall(rf"{kind}\[(\d+)\]", body))):
            ranged = re.search(rf"{kind}\[(\d+)\.\.n\]", header)
            covered = ranged is not None and int(index) >= int(ranged.group(1))
            assert f"{kind}[{index}]" in header or covered, (
                f"{name}.lua: {kind}[{index}] undocumented"
            )
        loops = re.findall(rf"for \w+ = (\d+), #{kind}", body)
        for start in loops:
            assert f"{kind}[{start}.." in header, f"{name}.lua: {kind}[{start}..] undocumented"


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_scripts_never_build_key_names(name: str) -> None:
    body = "\n".join(line for line in lua_source(name).splitlines() if not line.startswith("--"))
    # A key built in Lua would need a namespace separator in a literal (JSON event text aside).
    # A bare ':' joins rq's started-registry members (job id:execution id), which are not keys.
    literals = re.findall(r"'[^'\"]*:[^'\"]*'", body)
    assert [lit for lit in literals if lit != "':'"] == [], f"{name}.lua spells a key-like literal"


# Commands whose first argument is not a key (INFO: a section name; the fenced scripts read
# the primary's replication id with it).
_KEYLESS = {"INFO", "PUBLISH", "TIME"}
_CALL = re.compile(r"redis\.p?call\(\s*'([A-Za-z]+)'\s*(?:,\s*([^,)]+))?")


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_every_key_comes_from_KEYS_or_a_declared_key_prefix(name: str) -> None:
    source = lua_source(name)
    header = [line for line in source.splitlines() if line.startswith("--")]
    body = "\n".join(line for line in source.splitlines() if not line.startswith("--"))
    prefixes = {
        match.group(1)
        for line in header
        if (match := re.match(r"-- (ARGV\[\d+\])\s+key prefix:", line)) is not None
    }
    for command, key in _CALL.findall(body):
        if command.upper() in _KEYLESS or not key:
            continue
        key = key.strip()
        derived = re.fullmatch(r"(ARGV\[\d+\]) \.\. \w+", key)
        assert re.fullmatch(r"KEYS\[\w+\]", key) or (
            derived is not None and derived.group(1) in prefixes
        ), f"{name}.lua: {command} on {key}: pass the key in KEYS (or declare its key prefix)"
