"""Hot-path rewrites give exactly the answers of the library code they replace: the G...
account check (StrKey) and the protobuf Timestamp of a datetime (FromDatetime)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st
from stellar_sdk import Keypair, StrKey

from payout_service.api.convert import timestamp
from payout_service.core.validation import is_account_id

BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
ACCOUNTS = [Keypair.random().public_key for _ in range(20)]


def same_as_stellar_sdk(value: str) -> None:
    assert is_account_id(value) == StrKey.is_valid_ed25519_public_key(value), repr(value)


@given(st.sampled_from(ACCOUNTS), st.integers(0, 55),
       st.sampled_from(BASE32 + "=01lo8 \n\x00é"))
def test_account_id_with_one_character_changed(account: str, at: int, char: str) -> None:
    assert is_account_id(account)
    same_as_stellar_sdk(account[:at] + char + account[at + 1:])


@given(st.binary(min_size=32, max_size=32), st.sampled_from(list(range(0, 256, 8))))
def test_account_id_of_any_key_and_version(key: bytes, version: int) -> None:
    # Right checksum, any version byte: only ed25519 public keys (G...) pass.
    import base64
    import binascii

    payload = bytes([version]) + key
    text = base64.b32encode(
        payload + binascii.crc_hqx(payload, 0).to_bytes(2, "little")).decode()
    same_as_stellar_sdk(text)


@given(st.text(max_size=70))
def test_account_id_of_any_text(text: str) -> None:
    same_as_stellar_sdk(text)


def test_account_id_edge_cases() -> None:
    account = ACCOUNTS[0]
    for value in ("", account.lower(), account[:-1], account + "A", account + "\n",
                  account[:-4] + "====", Keypair.random().secret, "G" * 56, "M" + account[1:]):
        same_as_stellar_sdk(value)


@given(st.integers(-(10**16), 10**17), st.integers(-900, 900), st.booleans())
def test_timestamp_equals_from_datetime(micros: int, offset_minutes: int, naive: bool) -> None:
    value = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    value = value.astimezone(timezone(timedelta(minutes=offset_minutes)))
    if naive:
        value = value.replace(tzinfo=None)  # FromDatetime reads a naive time as UTC
    expected = Timestamp()
    expected.FromDatetime(value)
    assert timestamp(value) == expected


def test_no_timestamp_for_no_time() -> None:
    assert timestamp(None) is None
