"""Request ids the signer has signed under: the same id for the same request gets the same
signature again without being decided or counted again; the same id for another request is
refused. Rebuilt from the verified audit log (each `allow` record carries its request id,
what was signed and the signature), so it survives a restart as the daily limits do.

Bound to the caller's identity and kept for WINDOW_SECONDS: long enough for any retry of a
transaction the signer would sign (max_time at most max_time_window_seconds ahead, minutes).
At most MAX_REMEMBERED ids are kept (the oldest go first), so a flood of small signatures
cannot exhaust the signer's memory. An id forgotten is a new id: the same request is then
decided and counted anew (never less than once).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

WINDOW_SECONDS = 3_600.0
MAX_REMEMBERED = 200_000  # a few hundred bytes each
SIGNING_KINDS = ("transaction", "authorization")


def fingerprint(kind: str, key_id: str, digest_hex: str) -> str:
    """What a request asks to be signed: its kind, the key and the hash to sign (which
    covers the network, the transaction or entry, and an entry's expiration)."""
    return f"{kind} {key_id} {digest_hex}"


@dataclass
class SignedRequest:
    fingerprint: str
    at: float
    # The signature, once the audit record of the first decision is durable; b"" when that
    # request was not signed after all (a waiting duplicate then decides anew).
    signature: asyncio.Future[bytes] = field(default_factory=lambda: asyncio.get_running_loop(
    ).create_future())
    seq: int = 0  # the audit record that signed it


class SignedRequests:
    def __init__(self) -> None:
        self._by_id: dict[tuple[str, str], SignedRequest] = {}
        self._order: deque[tuple[float, tuple[str, str]]] = deque()

    @classmethod
    def from_audit(cls, records: Iterable[dict[str, Any]], now: float) -> SignedRequests:
        known = cls()
        for r in records:
            signature, at = r.get("signature"), float(r.get("time", 0.0))
            if r.get("decision") != "allow" or r.get("kind") not in SIGNING_KINDS or \
                    not isinstance(signature, str) or at <= now - WINDOW_SECONDS:
                continue
            try:
                raw = bytes.fromhex(signature)
            except ValueError:
                continue
            entry = known.begin(str(r.get("client")), str(r.get("request_id")), fingerprint(
                str(r["kind"]), str(r.get("key_id")), str(r.get("tx_hash"))), at)
            entry.signature.set_result(raw)
            entry.seq = int(r.get("seq", 0))
        return known

    def get(self, client: str, request_id: str, now: float) -> SignedRequest | None:
        self._forget_before(now - WINDOW_SECONDS)
        return self._by_id.get((client, request_id))

    def begin(self, client: str, request_id: str, print_: str, now: float) -> SignedRequest:
        """Claim the id for a request being signed now (its signature to be set)."""
        entry = SignedRequest(print_, now)
        self._by_id[(client, request_id)] = entry
        self._order.append((now, (client, request_id)))
        while len(self._order) > MAX_REMEMBERED:
            self._forget_oldest()
        return entry

    def abandon(self, client: str, request_id: str, entry: SignedRequest) -> None:
        """The request was not signed after all (backend or audit failure): free the id."""
        if self._by_id.get((client, request_id)) is entry:
            del self._by_id[(client, request_id)]
        if not entry.signature.done():
            entry.signature.set_result(b"")

    def _forget_before(self, cutoff: float) -> None:
        while self._order and self._order[0][0] <= cutoff:
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        at, key = self._order.popleft()
        entry = self._by_id.get(key)
        if entry is not None and entry.at == at:
            del self._by_id[key]
