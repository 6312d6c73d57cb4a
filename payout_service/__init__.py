"""Soroban payout service: takes payout requests, pays each exactly once, never holds a key."""

from payout_service.logs import quiet_grpc_core

quiet_grpc_core()  # before anything imports grpc: keeps gRPC core's text out of the JSON logs
