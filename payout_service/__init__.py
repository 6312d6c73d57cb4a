"""Soroban payout service: takes payout requests, pays each exactly once, never holds a key."""
