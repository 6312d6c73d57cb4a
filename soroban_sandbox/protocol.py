"""The protocol version the sandbox models, and which rules each version switches on. Pure.

One table, so a rule that depends on the version asks here instead of comparing numbers where
it is applied. The sandbox is built on protocol 23's shapes (CAP-67 unified events and
TransactionMetaV4, CAP-62/66 archival and automatic restore, LedgerCloseMeta v2), so 23 is the
oldest it models; 27 is the newest.
"""

from __future__ import annotations

from dataclasses import dataclass

OLDEST = 23
NEWEST = 27


class ProtocolError(ValueError):
    """A version the sandbox does not model, or a feature the chosen version lacks."""


@dataclass(frozen=True)
class Protocol:
    version: int = NEWEST

    def __post_init__(self) -> None:
        if not OLDEST <= self.version <= NEWEST:
            raise ProtocolError(
                f"protocol: the sandbox models protocols {OLDEST} to {NEWEST}, not {self.version}"
            )

    @property
    def soroban_memo_in_check_valid(self) -> bool:
        """A Soroban transaction with a memo or a muxed source is txSOROBAN_INVALID inside
        checkValid from protocol 25 (stellar-core TransactionFrame::commonValidPreSeqNum,
        validateSorobanMemo); before, the same code came from the queue's flooding filter
        after checkValid (TransactionQueue::canAdd)."""
        return self.version >= 25

    @property
    def sac_creates_accounts(self) -> bool:
        """CAP-73 (protocol 26): an XLM SAC transfer to a missing G account creates it."""
        return self.version >= 26

    @property
    def frozen_keys(self) -> bool:
        """CAP-77 (protocol 26): the network configuration can freeze ledger keys."""
        return self.version >= 26

    @property
    def address_v2_credentials(self) -> bool:
        """CAP-71 (protocol 27): SOROBAN_CREDENTIALS_ADDRESS_V2 and
        SOROBAN_CREDENTIALS_ADDRESS_WITH_DELEGATES parse; before, the envelope does not parse
        for the protocol (validateXDRForProtocol) and is txMALFORMED."""
        return self.version >= 27

    def require(self, feature: str, since: int, cap: str) -> None:
        """Refuse an admin action whose feature the running protocol does not have."""
        if self.version < since:
            raise ProtocolError(
                f"{feature} ({cap}) needs protocol {since}; the sandbox runs protocol "
                f"{self.version} (--protocol)"
            )


LATEST = Protocol()
