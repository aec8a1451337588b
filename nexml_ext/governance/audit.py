"""The audit-chain format: canonical JSON, record hashes, and chain verification.

Each record stores ``prev_hash`` and ``hash = SHA-256(prev_hash ‖ canonical JSON of the record)``,
where canonical JSON has sorted keys, UTF-8, and no whitespace; the first record's ``prev_hash`` is
64 zeros. The hashed record holds every stored column except ``id``, ``prev_hash`` and ``hash``, so
editing any field, deleting, inserting or reordering rows breaks the chain at that row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

GENESIS = "0" * 64


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8; datetimes as ISO-8601 UTC with microseconds."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_encode
    ).encode("utf-8")


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    raise TypeError(f"not JSON-serialisable in an audit record: {type(value).__name__}")


def format_time(value: datetime) -> str:
    """The one text form of a stored (naive UTC) time inside hashed records."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_hash(prev_hash: str, record: Mapping[str, Any]) -> str:
    """SHA-256 hex of ``prev_hash`` followed by the canonical JSON of ``record``."""
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(canonical_json(dict(record)))
    return digest.hexdigest()


@dataclass(frozen=True)
class Link:
    """One stored record as verification sees it."""

    seq: int
    record: Mapping[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class VerifyResult:
    chain: str
    ok: bool
    count: int
    head: str
    first_bad_seq: int | None = None
    problem: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"{self.chain}: {self.count} records verified, head {self.head[:16]}…"
        return f"{self.chain}: broken at record {self.first_bad_seq}: {self.problem}"


def verify_links(
    chain: str, links: Iterable[Link], head: tuple[int, str] | None = None
) -> VerifyResult:
    """Recompute a chain from its stored links (ordered by ``seq``) and find the first bad one.

    ``head`` is the stored (seq, hash) of the chain's last record; it catches deletion of the
    newest records, which the links alone cannot show.
    """
    prev, expected_seq, count = GENESIS, 1, 0
    for link in links:
        if link.seq != expected_seq:
            what = "missing (deleted)" if link.seq > expected_seq else "out of order or duplicated"
            return VerifyResult(
                chain,
                False,
                count,
                prev,
                expected_seq,
                f"record {expected_seq} is {what}; found record {link.seq} in its place",
            )
        if link.prev_hash != prev:
            return VerifyResult(
                chain,
                False,
                count,
                prev,
                link.seq,
                f"prev_hash does not match record {expected_seq - 1}: a record was inserted, "
                "deleted or reordered before it",
            )
        if record_hash(prev, link.record) != link.hash:
            return VerifyResult(
                chain, False, count, prev, link.seq, "contents changed after it was written"
            )
        prev, expected_seq, count = link.hash, expected_seq + 1, count + 1
    if head is not None and (head[0], head[1]) != (count, prev):
        if head[0] > count:
            return VerifyResult(
                chain,
                False,
                count,
                prev,
                count + 1,
                f"record {count + 1} is missing (deleted); the chain head says {head[0]} records",
            )
        if head[0] < count:
            return VerifyResult(
                chain,
                False,
                count,
                prev,
                head[0] + 1,
                f"record {head[0] + 1} lies beyond the chain head (appended outside the platform)",
            )
        return VerifyResult(
            chain,
            False,
            count,
            prev,
            head[0],
            "the chain head does not match the last record (head or record altered)",
        )
    return VerifyResult(chain, True, count, prev)
