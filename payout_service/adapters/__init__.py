"""Adapters: the ports of the money core to the outside world.

PostgreSQL, split by job (payout_store: payouts and reads; transitions: the one writer of
state; attempt_store: attempt use cases; sequences: sequence numbers and channels;
work_queues: what each loop does next), the Stellar RPC gateway (ledger) and the signer
service client (signer_client).
"""
