"""The workspace snapshot format and its policy: what goes in, how it is encoded, what is safe.

Pure functions only (no file system, no clock): :mod:`worker.workspace_files`
reads and writes workspaces with them, the worker moves the bytes through Redis.

A snapshot is one msgpack document, zlib-compressed::

    [1, [[path, "d" | "f", mode, data | None], ...], [[path, size, reason], ...]]

``path`` is the member's path relative to the workspace, as bytes (file names
need not be UTF-8), components joined with ``/``; members are sorted by path,
so equal workspaces encode to equal bytes and the SHA-256 of the encoding (the
snapshot's *digest*) names the content. Modification times are not kept, so
touching a file does not make a new snapshot. The third list names what was
left out (files over the size cap, symlinks, special files, unreadable
entries), so the restoring side can tell the agent.

Decoding trusts nothing: the size after decompression is bounded, every
field is type-checked, and :func:`check_member_path` refuses absolute paths,
``..``, ``.``, empty components and NUL bytes.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import msgpack

from cluster.errors import ToolError

__all__ = [
    "FORMAT_VERSION",
    "MAX_MEMBERS",
    "Member",
    "Omitted",
    "ScannedEntry",
    "SnapshotPlan",
    "WorkspaceArchive",
    "check_member_path",
    "decode_archive",
    "encode_archive",
    "fingerprint",
    "plan_snapshot",
]

FORMAT_VERSION = 1
MAX_MEMBERS = 50_000
"""Most files and directories one snapshot holds; the rest are listed as left out."""
# Room for paths and msgpack framing on top of the file bytes when decompressing.
_OVERHEAD_BYTES = 8 * 1024 * 1024

EntryKind = Literal["dir", "file", "symlink", "special", "unreadable"]


@dataclass(frozen=True)
class ScannedEntry:
    """One entry found in a workspace (``lstat``, never following a link).

    Attributes:
        path: relative path, ``/``-separated bytes.
        kind: ``dir``, ``file``, ``symlink``, ``special`` (fifo, socket,
            device) or ``unreadable`` (a directory that could not be listed).
        mode: permission bits.
        size: bytes (files), else 0.
        mtime_ns: modification time, for :func:`fingerprint` only.
        inode: inode number, for :func:`fingerprint` only.
    """

    path: bytes
    kind: EntryKind
    mode: int
    size: int = 0
    mtime_ns: int = 0
    inode: int = 0


@dataclass(frozen=True)
class Omitted:
    """A workspace entry a snapshot does not carry, and why (shown to the agent)."""

    path: bytes
    size: int
    reason: str


@dataclass(frozen=True)
class SnapshotPlan:
    """Which entries a snapshot carries (``members``) and which it leaves out."""

    members: tuple[ScannedEntry, ...]
    omitted: tuple[Omitted, ...]


@dataclass(frozen=True)
class Member:
    """One member of an archive: a directory (``data`` is None) or a file with its bytes."""

    path: bytes
    mode: int
    data: bytes | None


@dataclass(frozen=True)
class WorkspaceArchive:
    """A decoded snapshot: its members and what its taker left out."""

    members: tuple[Member, ...]
    omitted: tuple[Omitted, ...]


_SKIP_REASONS = {
    "symlink": "a symbolic link (links are never snapshotted)",
    "special": "a special file (fifo, socket or device)",
    "unreadable": "unreadable",
}


def plan_snapshot(
    entries: Iterable[ScannedEntry], *, max_bytes: int, max_members: int = MAX_MEMBERS
) -> SnapshotPlan:
    """Decide what a snapshot of these entries carries, within ``max_bytes`` of file content.

    Entries are taken in path order; a file that does not fit in what is left
    of the cap is left out (listed) and later, smaller files may still go in.
    Directories always go in (they cost nothing) until ``max_members``;
    symlinks, special files and unreadable entries never do.

    Raises:
        ToolError: ``max_bytes`` is negative.
    """
    if max_bytes < 0:
        raise ToolError(f"the workspace snapshot cap must be >= 0 bytes, got {max_bytes}")
    members: list[ScannedEntry] = []
    omitted: list[Omitted] = []
    left = max_bytes
    for entry in sorted(entries, key=lambda e: e.path):
        if entry.kind in _SKIP_REASONS:
            omitted.append(Omitted(entry.path, entry.size, _SKIP_REASONS[entry.kind]))
        elif len(members) >= max_members:
            omitted.append(Omitted(entry.path, entry.size, f"more than {max_members} entries"))
        elif entry.kind == "dir":
            members.append(entry)
        elif entry.size > left:
            omitted.append(Omitted(entry.path, entry.size, "over the snapshot size cap"))
        else:
            members.append(entry)
            left -= entry.size
    return SnapshotPlan(tuple(members), tuple(omitted))


def fingerprint(entries: Iterable[ScannedEntry]) -> str:
    """A digest of the entries' metadata: equal when nothing was created, removed or written.

    Used to skip reading a workspace whose listing did not change since the
    last snapshot (a write changes size or mtime; a replace changes the inode).
    """
    digest = hashlib.sha256()
    for e in sorted(entries, key=lambda e: e.path):
        digest.update(
            msgpack.packb([e.path, e.kind, e.mode, e.size, e.mtime_ns, e.inode], use_bin_type=True)
        )
    return digest.hexdigest()


def check_member_path(path: bytes) -> bytes:
    """Return ``path`` if it names something inside the workspace, else raise.

    Raises:
        ToolError: empty, absolute, with a NUL byte, or with an empty, ``.``
            or ``..`` component.
    """
    if not isinstance(path, bytes) or not path:
        raise ToolError(f"snapshot member path must be non-empty bytes, got {path!r}")
    if path.startswith(b"/") or b"\0" in path:
        raise ToolError(f"snapshot member path {path!r} is absolute or holds a NUL byte")
    for part in path.split(b"/"):
        if part in (b"", b".", b".."):
            raise ToolError(f"snapshot member path {path!r} has an empty, '.' or '..' component")
    return path


def encode_archive(
    members: Sequence[Member], omitted: Sequence[Omitted] = ()
) -> tuple[str, bytes, int]:
    """Encode members (sorted by path here) and the omitted list.

    Returns:
        ``(digest, compressed bytes, uncompressed size)``; the digest is the
        SHA-256 (hex) of the uncompressed encoding.
    """
    body = [
        [m.path, "d" if m.data is None else "f", m.mode & 0o777, m.data]
        for m in sorted(members, key=lambda m: m.path)
    ]
    left_out = [[o.path, o.size, o.reason] for o in sorted(omitted, key=lambda o: o.path)]
    raw = msgpack.packb([FORMAT_VERSION, body, left_out], use_bin_type=True)
    return hashlib.sha256(raw).hexdigest(), zlib.compress(raw, 6), len(raw)


def decode_archive(blob: bytes, *, digest: str, max_bytes: int) -> WorkspaceArchive:
    """Decode a snapshot, checking its digest, its size and every member path.

    Args:
        blob: the compressed snapshot.
        digest: the SHA-256 it must have (from the snapshot record).
        max_bytes: the largest file content accepted (the snapshot cap); the
            decompressed size may exceed it by a fixed allowance for metadata.

    Raises:
        ToolError: corrupt, too large, a different digest, or a member with an
            unsafe path or a wrong type.
    """
    limit = max_bytes + _OVERHEAD_BYTES
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(blob, limit)
    except zlib.error as exc:
        raise ToolError(f"workspace snapshot is corrupt (zlib: {exc})") from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise ToolError(
            f"workspace snapshot is truncated or larger than {limit} bytes uncompressed; refused"
        )
    if hashlib.sha256(raw).hexdigest() != digest:
        raise ToolError("workspace snapshot does not match its digest; refused")
    try:
        document = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise ToolError(f"workspace snapshot is not a valid document ({exc})") from None
    if (
        not isinstance(document, list)
        or len(document) != 3
        or document[0] != FORMAT_VERSION
        or not isinstance(document[1], list)
        or not isinstance(document[2], list)
    ):
        raise ToolError(f"workspace snapshot is not format version {FORMAT_VERSION}; refused")
    members = tuple(_member(item) for item in document[1])
    omitted = tuple(_omitted(item) for item in document[2])
    return WorkspaceArchive(members, omitted)


def _member(item: object) -> Member:
    if not isinstance(item, list) or len(item) != 4:
        raise ToolError(f"workspace snapshot member {item!r:.80} is malformed")
    path, kind, mode, data = item
    if not isinstance(path, bytes) or kind not in ("d", "f") or not isinstance(mode, int):
        raise ToolError(f"workspace snapshot member {item!r:.80} is malformed")
    if (kind == "d") != (data is None) or (data is not None and not isinstance(data, bytes)):
        raise ToolError(f"workspace snapshot member {path!r} has the wrong content for its kind")
    return Member(check_member_path(path), mode & 0o777, data)


def _omitted(item: object) -> Omitted:
    if (
        not isinstance(item, list)
        or len(item) != 3
        or not isinstance(item[0], bytes)
        or not isinstance(item[1], int)
        or not isinstance(item[2], str)
    ):
        raise ToolError(f"workspace snapshot omission {item!r:.80} is malformed")
    return Omitted(item[0], item[1], item[2])
