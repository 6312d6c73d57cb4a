"""soroban-sandbox: a local Stellar RPC look-alike for tests. A TEST HARNESS, NOT A NODE.

It speaks Stellar RPC's JSON-RPC 2.0 as stellar-rpc answers it (getHealth, getNetwork,
getVersionInfo, getLatestLedger, getLedgers, getLedgerEntries, getFeeStats, simulateTransaction,
sendTransaction, getTransaction, getTransactions, getEvents), so stellar-sdk clients (Python and
JavaScript) work against it unchanged; what it cannot model it refuses loudly (README). It
closes ledgers on a timer, checks signatures, sequence numbers, fees and time bounds like
stellar-core, applies Stellar Asset Contract ``transfer`` and one configured payout method,
and injects faults on demand. It runs no WASM, keeps state in memory only, and must never
hold real funds.

Layout: ``ledger`` (pure state and ledger close), ``admission`` (checks at submission),
``execution`` (archived entries, auth and the call at apply time), ``sac`` (the Stellar Asset
Contract's balance rules), ``classic`` (classic operations), ``asset_events`` (the CAP-67
event of each movement), ``archival`` (TTLs, archive and restore), ``frozen`` (CAP-77 frozen
keys), ``protocol`` (which rules each protocol version has), ``simulation``, ``contracts``,
``authority`` (signatures), ``xdr_build`` (XDR values), ``entry_history`` (entries as recent
ledgers left them), ``faults`` (settings, the seeded dice, which node answers), ``chain_view``
(one node's view of the chain), ``nodes`` (restarts), ``replay`` (public envelopes); the edge
is ``rpc`` (JSON shapes; ``rpc_history`` for the paginated methods, ``rpc_params`` for
parameter checks and the real error messages), ``server`` (aiohttp, admin API, ledger clock)
and ``main`` (CLI);
``testing`` starts it as a subprocess for other components' tests. See README.md.
"""
