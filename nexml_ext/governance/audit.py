"""The audit-chain format: canonical JSON, record hashes, and chain verification.

Each record stores ``prev_hash`` and ``hash = SHA-256(prev_hash ‖ canonical JSON of the record)``,
where canonical JSON has sorted keys, UTF-8, and no whitespace; the first record's ``prev_hash`` is
64 zeros. The hashed record holds every stored column except ``id``, ``prev_hash`` and ``hash``, so
editing any field, deleting, inserting or reordering rows breaks the chain at that row.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
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
    walk = Walk()
    for link in links:
        if not walk.link(link.seq, link.prev_hash):
            break
        if record_hash(walk.last, link.record) != link.hash:
            walk.fail(link.seq, CHANGED)
            break
        walk.step(link.hash)
    return walk.result(chain, head)


CHANGED = "contents changed after it was written"


class Walk:
    """A walk along (part of) a chain in ``seq`` order: the link checks and the messages of
    :func:`verify_links`, shared with the fast verification of raw rows (``scan_rows``).

    A walk may start mid-chain (``start_seq`` and the stored hash before it as ``last``):
    a chain split into consecutive ranges, each walked on its own, fails at the same record
    with the same message as one walk, because a range's walk starts exactly where the walk
    of the ranges before it would have arrived had they all verified.
    """

    __slots__ = ("expected", "last", "count", "bad_seq", "problem")

    def __init__(self, start_seq: int = 1, last: str = GENESIS) -> None:
        self.expected, self.last, self.count = start_seq, last, 0
        self.bad_seq: int | None = None
        self.problem = ""

    @property
    def ok(self) -> bool:
        return self.bad_seq is None

    def fail(self, seq: int, problem: str) -> None:
        self.bad_seq, self.problem = seq, problem

    def link(self, seq: int, prev_hash: str) -> bool:
        """Whether the next stored record sits where it should and points at its predecessor."""
        if seq != self.expected:
            what = "missing (deleted)" if seq > self.expected else "out of order or duplicated"
            self.fail(
                self.expected,
                f"record {self.expected} is {what}; found record {seq} in its place",
            )
            return False
        if prev_hash != self.last:
            self.fail(
                seq,
                f"prev_hash does not match record {self.expected - 1}: a record was inserted, "
                "deleted or reordered before it",
            )
            return False
        return True

    def step(self, hash_: str) -> None:
        self.last, self.expected, self.count = hash_, self.expected + 1, self.count + 1

    def result(
        self, chain: str, head: tuple[int, str] | None, before: int = 0
    ) -> VerifyResult:
        """The verdict; ``before`` counts records verified by walks of earlier ranges."""
        count = before + self.count
        if not self.ok:
            return VerifyResult(chain, False, count, self.last, self.bad_seq, self.problem)
        prev = self.last
        if head is not None and (head[0], head[1]) != (count, prev):
            if head[0] > count:
                return VerifyResult(
                    chain,
                    False,
                    count,
                    prev,
                    count + 1,
                    f"record {count + 1} is missing (deleted); the chain head says {head[0]} "
                    "records",
                )
            if head[0] < count:
                return VerifyResult(
                    chain,
                    False,
                    count,
                    prev,
                    head[0] + 1,
                    f"record {head[0] + 1} lies beyond the chain head (appended outside the "
                    "platform)",
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


# --- fast verification of raw stored rows ------------------------------------------------------
#
# Verifying by loading ORM objects, decoding every JSON column and re-encoding the record costs
# tens of microseconds a record. JSON columns are written in canonical form (the engine's
# ``json_serializer``, store/database.py), so the stored text of a chained row's JSON columns is
# the very text that was hashed. ``scan_rows`` therefore hashes the record's canonical bytes
# assembled from stored tokens — JSON column text verbatim, the other columns encoded by the
# database query as the JSON tokens canonical JSON gives them (store/chains.py), floats here —
# and compares. A match is a proof: SHA-256 is collision resistant, so the assembled bytes are
# the bytes hashed when the record was written, and (below) each column's token is then that
# column's canonical text, so every column reads back as what was written. A mismatch is not yet
# a verdict: the row goes through the exact path (ORM object, ``chain_record``,
# ``canonical_json``), so rows whose JSON was stored in another formatting (written before this
# serializer, or edited to equal-but-differently-formatted JSON) still verify when their content
# is what was hashed, and are named when it is not.
#
# Why a match pins every column: the assembled text is ``{"k1":t1,"k2":t2,...}``. Tokens built
# by the query cannot contain the two characters `,"` (inside a JSON string every `"` is
# escaped; numbers, literals and times hold none), so only a JSON column's text could hold a
# separator `,"k":` and shift the column boundaries while keeping the same bytes (say, moving
# the end of ``inputs`` into ``explanation``). Working through the first shifted boundary shows
# any such shift needs some JSON column's text to contain the separator of a key that follows a
# JSON column. So a row is taken on the fast path only when each of those separators occurs
# exactly once in its assembled text (the one placed there); otherwise the exact path decides.
# (On PostgreSQL the json type admits valid JSON only, which parses one way: no separators.)
#
# On PostgreSQL the server also hashes (``RowPlan.digest``): it assembles the record as above
# (floats spelt by it too), hashes prev_hash and those bytes with ``pg_catalog.sha256``, and only
# the digest crosses the connection, which Python compares with the stored hash. That relies on
# the server computing SHA-256 over what it assembled just as the fast path already relies on it
# assembling the stored columns; the function is named with its schema, so no same-named
# function on the search path can stand in for it. A digest that differs sends the row to the
# exact path, hashed here.


def float_token(value: Any) -> bytes:
    """The canonical-JSON token of a float column's stored value (``json.dumps``'s own
    spelling: ``repr`` for finite floats, NaN/Infinity, null)."""
    if value is None or value.__class__ is float:
        return json.dumps(value).encode("ascii")
    raise TypeError(f"not a float: {type(value).__name__}")


@dataclass(frozen=True)
class RowPlan:
    """How to assemble a record's canonical bytes from the slots of a raw row.

    Rows are ``(id, seq, prev_hash, hash, *slots)``; each slot is bytes (a token, or a run of
    keys and tokens) except those at ``float_slots``, which hold a float column's stored value.
    ``template % slots`` is the record's canonical JSON; float slots are ``%r`` there, right for
    every finite float (``repr`` is JSON's spelling), and spelt exactly by ``float_token`` when
    that does not hash (None, NaN, infinities). ``separators`` are the `,"key":` runs that must
    each occur exactly once (see above).

    With ``digest``, the one slot is not the canonical bytes but their SHA-256 as the record's
    hash has it (SHA-256 of prev_hash followed by those bytes), computed by the database from
    the bytes it assembled (PostgreSQL, whose json type pins the column boundaries: no
    separators to count); only a record that hashes to its stored hash is proven this way.
    """

    template: bytes
    float_slots: tuple[int, ...]
    separators: tuple[bytes, ...]
    digest: bool = False

    def pattern(self) -> re.Pattern[bytes] | None:
        if not self.separators:
            return None
        keys = b"|".join(re.escape(sep[2:-2]) for sep in self.separators)
        return re.compile(b',"(?:' + keys + b')":')

    def exact_floats(self, slots: tuple[Any, ...]) -> bytes:
        values = list(slots)
        for i in self.float_slots:
            values[i] = float_token(values[i])
        return self.template.replace(b"%r", b"%b") % tuple(values)

    def prover(self) -> Callable[[tuple[Any, ...]], bool]:
        """``proven(row)``: whether the row's fast assembly proves it (hashes to its stored
        hash, each separator once); False sends it to the exact path."""
        if self.digest:
            assert self.template == b"%b" and not self.separators

            def digest_matches(row: tuple[Any, ...]) -> bool:
                digest = row[4]
                return digest.__class__ is bytes and digest.hex() == row[3]

            return digest_matches
        template, sha256 = self.template, hashlib.sha256
        pattern, separators = self.pattern(), len(self.separators)
        findall = pattern.findall if pattern is not None else None
        whole = template == b"%b"  # one slot, the whole record: no need to copy it

        def assembled(row: tuple[Any, ...]) -> bool:
            try:
                body = row[4] if whole else template % row[4:]
                digest = sha256(row[2].encode())  # prev_hash: equal to the last hash walked
                digest.update(body)
            except TypeError:  # a slot the query could not encode (NULL token, odd type)
                return False
            return digest.hexdigest() == row[3] and (
                findall is None or len(findall(body)) == separators
            )

        return assembled


def scan_rows(
    rows: Iterable[tuple[Any, ...]],
    plan: RowPlan,
    exact: Callable[[Any], Mapping[str, Any] | None],
    walk: Walk,
    until: int | None = None,
) -> Walk:
    """Walk raw rows (ordered by seq) with ``plan``; rows whose assembled bytes do not hash to
    their stored hash (or cannot be assembled) are decided by ``exact(id)``: the record as
    ``chain_record`` gives it, or None when the stored row cannot even be decoded.

    With ``until``, the walk stops before the first row once record ``until`` is verified
    (``walk.expected > until`` tells the range was walked to its end).
    """
    proven = plan.prover()
    stop = until + 1 if until is not None else None
    expected, last, count = walk.expected, walk.last, walk.count
    try:
        for row in rows:
            if expected == stop:
                break
            seq, prev_hash, hash_ = row[1], row[2], row[3]
            if seq != expected or prev_hash != last:
                walk.expected, walk.last = expected, last
                walk.link(seq, prev_hash)  # names the problem
                break
            if not proven(row) and not _exact_ok(plan, row, exact, hash_):
                walk.fail(seq, CHANGED)
                break
            expected, last, count = expected + 1, hash_, count + 1
    finally:  # the walk as far as it verified
        walk.expected, walk.last, walk.count = expected, last, count
    return walk


def _exact_ok(
    plan: RowPlan,
    row: tuple[Any, ...],
    exact: Callable[[Any], Mapping[str, Any] | None],
    hash_: str,
) -> bool:
    """The exact decision for a row the fast assembly did not prove: floats spelt exactly
    (None, NaN), then, failing that, the record decoded by the ORM."""
    prev_hash = row[2]
    if plan.float_slots:
        try:
            body = plan.exact_floats(row[4:])
        except TypeError:
            pass
        else:
            pattern = plan.pattern()
            if (pattern is None or len(pattern.findall(body)) == len(plan.separators)) and (
                hashlib.sha256(prev_hash.encode() + body).hexdigest() == hash_
            ):
                return True
    record = exact(row[0])
    return record is not None and _hashes_to(prev_hash, record, hash_)


def _hashes_to(prev: str, record: Mapping[str, Any], hash_: str) -> bool:
    try:
        return record_hash(prev, record) == hash_
    except (TypeError, ValueError):  # a stored value no canonical JSON can hold
        return False
