"""The RPC nodes behind the sandbox's one URL, as a load balancer spreads calls over them.

Which node answers a call is decided in ``faults.route``; this keeps what the nodes remember
between calls: the ledger each one came back at after its last restart (an empty store starts
there, so its history does too).
"""

from __future__ import annotations

from typing import Any

from .chain_view import ChainView
from .faults import Faults, Route, node_route
from .ledger import Ledger


class RpcNodes:
    def __init__(self) -> None:
        self.restarted_at: dict[int, int] = {}
        # Every restart, oldest first: the ledger each node's history started at again.
        self.restarts: dict[int, list[int]] = {}

    def view(self, ledger: Ledger, route: Route, faults: Faults) -> ChainView:
        return ChainView.of_node(
            ledger,
            route,
            restarted_at=self.restarted_at.get(route.node, 0),
            retention_ledgers=faults.retention_ledgers,
        )

    def restart(self, node: int, ledger: Ledger, faults: Faults) -> dict[str, Any]:
        """The node comes back with an empty transaction store: it ingests from the ledger it
        is at, and holds nothing older (stellar-rpc without --backfill)."""
        if not 0 <= node < len(faults.node_lags):
            raise ValueError(f"node: must be 0..{len(faults.node_lags) - 1}, got {node!r}")
        self.restarted_at[node] = self.view(ledger, node_route(faults, node), faults).store_seq
        self.restarts.setdefault(node, []).append(self.restarted_at[node])
        return self.describe(ledger, faults)[node]

    def describe(self, ledger: Ledger, faults: Faults) -> list[dict[str, Any]]:
        nodes = []
        for node in range(len(faults.node_lags)):
            view = self.view(ledger, node_route(faults, node), faults)
            nodes.append(
                {
                    "node": node,
                    "latest_ledger": view.store_seq,
                    "oldest_ledger": view.history_from,
                    "core_ledger": view.core_seq,
                    "entries_ledger": view.entries_seq,
                    "restarted_at": self.restarted_at.get(node),
                    "restarts": list(self.restarts.get(node, [])),
                }
            )
        return nodes
