"""The seccomp program: well-formed for the known machines, absent for others."""

from __future__ import annotations

import struct

from agent.tools.seccomp import SYSCALLS, build_filter

_RET_K, _JEQ_K = 0x06, 0x15


def test_known_machines_get_a_well_formed_program() -> None:
    for machine, (_arch, numbers) in SYSCALLS.items():
        program = build_filter(machine)
        assert program is not None and len(program) % 8 == 0
        ops = [struct.unpack("=HBBI", program[i : i + 8]) for i in range(0, len(program), 8)]
        assert len(ops) < 4096  # the kernel's limit
        for index, (code, jt, jf, _k) in enumerate(ops):
            if code not in (_RET_K, 0x20):  # every jump stays inside the program
                assert index + 1 + max(jt, jf) < len(ops)
        compared = {k for code, _jt, _jf, k in ops if code == _JEQ_K}
        assert {numbers["keyctl"], numbers["unshare"], numbers["clone3"]} <= compared
        assert numbers.get("getpid") is None  # not a deny-listed call
        assert ops[-1][0] == _RET_K


def test_an_unknown_machine_gets_no_filter() -> None:
    assert build_filter("sparc64") is None
