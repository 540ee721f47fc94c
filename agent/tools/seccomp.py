"""A small seccomp filter for the sandbox: system calls a chat's commands never need.

``bwrap --seccomp FD`` loads a classic-BPF program (an array of 8-byte
``struct sock_filter``) before it starts the command. This one is a deny
list, so ordinary programs (shells, compilers, Python, servers) keep working,
while kernel interfaces that are not namespaced or are frequent sources of
kernel bugs answer ``EPERM``:

- new namespaces and joining others (``unshare``, ``setns``, ``clone`` with
  ``CLONE_NEWUSER``; ``clone3``, whose flags a filter cannot read, answers
  ``ENOSYS`` so libc falls back to ``clone``): no nested user namespace, even
  with a root worker, whose sandbox has no user namespace of its own;
- the kernel keyring (``keyctl``, ``add_key``, ``request_key``), ``bpf``,
  ``perf_event_open``, ``userfaultfd``, ``io_uring_*``;
- mounting (the new mount API too), module loading, ``kexec``, ``acct``;
- any other architecture's system calls (32-bit, x32) on this one.

Only x86_64 and aarch64 have tables; elsewhere no filter is installed (the
worker logs it once).
"""

from __future__ import annotations

import errno
import functools
import os
import platform
import struct

# BPF opcodes (linux/filter.h, linux/bpf_common.h) and seccomp return values.
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_CLONE_NEWUSER = 0x10000000
_X32_BIT = 0x40000000
# Offsets in struct seccomp_data: nr, arch, instruction pointer, args[6].
_NR, _ARCH, _ARG0_LOW = 0, 4, 16

_DENIED_NAMES = (
    "unshare",
    "setns",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "mount",
    "umount2",
    "pivot_root",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "acct",
)
# (AUDIT_ARCH, syscall numbers) per machine.
SYSCALLS: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (
        0xC000003E,
        {
            "clone": 56,
            "clone3": 435,
            "unshare": 272,
            "setns": 308,
            "keyctl": 250,
            "add_key": 248,
            "request_key": 249,
            "bpf": 321,
            "perf_event_open": 298,
            "userfaultfd": 323,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "mount": 165,
            "umount2": 166,
            "pivot_root": 155,
            "open_tree": 428,
            "move_mount": 429,
            "fsopen": 430,
            "fsconfig": 431,
            "fsmount": 432,
            "fspick": 433,
            "mount_setattr": 442,
            "init_module": 175,
            "finit_module": 313,
            "delete_module": 176,
            "kexec_load": 246,
            "kexec_file_load": 320,
            "acct": 163,
        },
    ),
    "aarch64": (
        0xC00000B7,
        {
            "clone": 220,
            "clone3": 435,
            "unshare": 97,
            "setns": 268,
            "keyctl": 219,
            "add_key": 217,
            "request_key": 218,
            "bpf": 280,
            "perf_event_open": 241,
            "userfaultfd": 282,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
            "mount": 40,
            "umount2": 39,
            "pivot_root": 41,
            "open_tree": 428,
            "move_mount": 429,
            "fsopen": 430,
            "fsconfig": 431,
            "fsmount": 432,
            "fspick": 433,
            "mount_setattr": 442,
            "init_module": 105,
            "finit_module": 273,
            "delete_module": 106,
            "kexec_load": 104,
            "kexec_file_load": 294,
            "acct": 89,
        },
    ),
}


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def build_filter(machine: str) -> bytes | None:
    """The filter program for ``machine`` (``platform.machine()``), or ``None`` if unknown."""
    if machine not in SYSCALLS:
        return None
    arch, numbers = SYSCALLS[machine]
    deny = _RET_ERRNO | errno.EPERM
    denied = [numbers[name] for name in _DENIED_NAMES]
    # Layout: [arch check] [x32 check] [one jeq per denied nr] [clone3] [clone]
    #         [allow] [deny] [enosys] [clone flags...]
    # (syscall number, where to jump when it matches); no match falls through.
    body = [(numbers["clone3"], "enosys"), (numbers["clone"], "clone")]
    body += [(nr, "deny") for nr in denied]
    start = 4  # after the arch and x32 checks below
    # Absolute positions.
    allow_at = start + len(body)
    deny_at, enosys_at, clone_at = allow_at + 1, allow_at + 2, allow_at + 3
    labels = {"deny": deny_at, "enosys": enosys_at, "clone": clone_at}

    def rel(target: int, at: int) -> int:
        return target - at - 1

    program = [
        _op(_LD_W_ABS, _ARCH),
        _op(_JEQ_K, arch, 0, rel(deny_at, 1)),
        _op(_LD_W_ABS, _NR),
        _op(_JGE_K, _X32_BIT, rel(deny_at, 3), 0),
    ]
    for index, (nr, label) in enumerate(body):
        program.append(_op(_JEQ_K, nr, rel(labels[label], start + index), 0))
    program += [
        _op(_RET_K, _RET_ALLOW),
        _op(_RET_K, deny),
        _op(_RET_K, _RET_ERRNO | errno.ENOSYS),
        _op(_LD_W_ABS, _ARG0_LOW),
        _op(_JSET_K, _CLONE_NEWUSER, 1, 0),
        _op(_RET_K, _RET_ALLOW),
        _op(_RET_K, deny),
    ]
    return b"".join(program)


@functools.cache
def host_filter() -> bytes | None:
    """The filter for this machine, built once."""
    return build_filter(platform.machine())


def filter_fd(program: bytes) -> int:
    """A descriptor holding ``program`` at offset 0, for ``bwrap --seccomp FD``."""
    fd = os.memfd_create("agent-sandbox-seccomp", os.MFD_CLOEXEC)
    os.write(fd, program)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


__all__ = ["SYSCALLS", "build_filter", "filter_fd", "host_filter"]
