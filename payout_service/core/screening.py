"""Destination screening: allow and deny lists decide whether a destination may be paid. Pure.

The rules, in order:
1. A destination on the deny list is refused, whatever the allow list says: a deny entry is a
   decision someone made about that payee, an allow entry only a default to let through.
2. With the allow list only mode (PAYOUTS_SCREENING_ALLOWLIST_ONLY=true), a destination not on
   the allow list is refused; otherwise it passes.

An M... destination credits its G... account (SEP-23), so it is screened by both addresses:
denying a G... account denies every muxed address over it, and allowing the G... account
allows them; an M... address can also be listed on its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from payout_service.core.validation import destination_problem, is_muxed_account_id, muxed_parts

MAX_REASON_CHARS = 512
NOT_ALLOWED = "not on the allow list (PAYOUTS_SCREENING_ALLOWLIST_ONLY=true)"


class ListKind(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True)
class ScreeningEntry:
    address: str
    kind: ListKind
    reason: str


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


ALLOW = Decision(True)


def normalise_address(text: str) -> str:
    """The address as stored and compared: StrKeys are upper-case base32, so an address typed
    in lower case or with blanks around it is the same address."""
    return text.strip().upper()


def address_problem(address: str) -> str | None:
    """Why a normalised address cannot be listed (a G..., M... or C... StrKey is needed)."""
    return destination_problem(address)


def reason_problem(reason: str) -> str | None:
    if not reason.strip():
        return "is required: say why the destination is listed"
    if len(reason) > MAX_REASON_CHARS:
        return f"must be at most {MAX_REASON_CHARS} characters"
    return None


def screened_addresses(destination: str) -> tuple[str, ...]:
    """The addresses whose entries apply to a destination: itself and, for an M... address,
    the G... account it credits."""
    if is_muxed_account_id(destination):
        return destination, muxed_parts(destination)[0]
    return (destination,)


def screen(destination: str, entries: Iterable[ScreeningEntry], *, allowlist_only: bool
           ) -> Decision:
    """Allow or deny(reason), from the entries of the destination's screened addresses (other
    entries are ignored, so callers may pass the whole lists)."""
    addresses = screened_addresses(destination)
    relevant = [e for e in entries if e.address in addresses]
    denied = [e for e in relevant if e.kind is ListKind.DENY]
    if denied:
        # The destination's own entry first, then its account's: the most specific reason.
        denied.sort(key=lambda e: addresses.index(e.address))
        return Decision(False, f"on the deny list: {denied[0].reason}")
    if allowlist_only and not any(e.kind is ListKind.ALLOW for e in relevant):
        return Decision(False, NOT_ALLOWED)
    return ALLOW
