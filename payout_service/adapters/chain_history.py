"""The chain's record of transactions, page by page: getTransactions by TOID cursor (and
getHealth for the history the node keeps). stellar-sdk's SorobanServerAsync is the client, so
the same code reads testnet, mainnet or the local sandbox."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from stellar_sdk.client.aiohttp_client import AiohttpClient
from stellar_sdk.exceptions import BaseRequestError, SorobanRpcErrorResponse
from stellar_sdk.soroban_server_async import SorobanServerAsync

from payout_service.adapters.ledger import LedgerUnavailable
from payout_service.core.watchdog import ChainTransaction

# stellar-rpc methods/get_transactions.go fetchLedgerData: a cursor in a ledger the node no
# longer (or does not yet) keep in its database.
NO_METADATA = "database does not contain metadata for ledger"


class CursorBeforeHistory(Exception):
    """The node cannot serve the cursor's ledger (it is older than its history, or the node
    restarted with less); getHealth says which ledgers it has."""


@dataclass(frozen=True)
class TransactionsPage:
    transactions: list[ChainTransaction]
    latest_ledger: int
    oldest_ledger: int
    cursor: str


@dataclass(frozen=True)
class HistoryWindow:
    oldest_ledger: int
    latest_ledger: int


class ChainHistory:
    def __init__(self, rpc_url: str, *, timeout_seconds: float = 10.0) -> None:
        self._server = SorobanServerAsync(
            rpc_url, client=AiohttpClient(request_timeout=timeout_seconds))
        self._timeout = timeout_seconds

    async def close(self) -> None:
        await self._server.close()

    async def page(self, cursor: int, limit: int) -> TransactionsPage:
        """The transactions after `cursor`, at most `limit`. Raises CursorBeforeHistory and
        LedgerUnavailable."""
        try:
            response = await asyncio.wait_for(
                self._server.get_transactions(cursor=str(cursor), limit=limit), self._timeout)
        except SorobanRpcErrorResponse as err:
            if NO_METADATA in (err.message or ""):
                raise CursorBeforeHistory(err.message) from None
            raise LedgerUnavailable(f"getTransactions: {err.message}"[:200]) from None
        except (BaseRequestError, TimeoutError, OSError) as err:
            raise LedgerUnavailable(type(err).__name__) from None
        return TransactionsPage(
            transactions=[ChainTransaction(
                tx_hash=t.transaction_hash, ledger=t.ledger, successful=t.status == "SUCCESS",
                fee_bump=t.fee_bump, envelope_xdr=t.envelope_xdr, result_xdr=t.result_xdr,
                meta_xdr=t.result_meta_xdr,
            ) for t in response.transactions],
            latest_ledger=response.latest_ledger, oldest_ledger=response.oldest_ledger,
            cursor=response.cursor,
        )

    async def window(self) -> HistoryWindow:
        """The ledgers the node keeps (getHealth)."""
        try:
            health = await asyncio.wait_for(self._server.get_health(), self._timeout)
        except (BaseRequestError, SorobanRpcErrorResponse, TimeoutError, OSError) as err:
            raise LedgerUnavailable(type(err).__name__) from None
        return HistoryWindow(health.oldest_ledger, health.latest_ledger)
