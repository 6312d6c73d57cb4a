"""The audit log's bytes: how a record line and a checkpoint are written and verified. Pure.

A record is one line: the canonical JSON of its fields (keys sorted, no spaces, ASCII),
with `"hash":"<MAC>"` appended as its last member. The MAC is HMAC-SHA256, under the chain
key, of the exact bytes of the line before the MAC's 64 hex digits. A verifier needs no
JSON library to check it (the bytes are the input), and a line is accepted only when its
fields are the canonical serialisation byte for byte (no duplicate key, no other spacing or
escaping, no NaN), so every reader of a verified line sees the same record.

Lines written before this format (v1: the hash among the sorted keys, MAC over the
canonical JSON of the other fields) still verify under the same canonical rules, but only
before the first line of this format: an upgraded log never goes back.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
CHAIN_KEY_CONTEXT = b"stellar-payouts signer audit chain v1"
_MAC_AT = b',"hash":"'
_SUFFIX_LENGTH = len(_MAC_AT) + 64 + 2  # ,"hash":"<64 hex>"}
_HEX = re.compile(rb"[0-9a-f]{64}")
# The checkpoint file is one slot of this size, rewritten in place (pwrite + fdatasync):
# a write within one 512-byte sector is atomic on the disks a signer runs on, the
# assumption PostgreSQL makes for pg_control.
CHECKPOINT_SIZE = 512


class ChainKey:
    """HMAC-SHA256 under the audit chain key. Held in memory by the signer process only."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("audit chain key must be at least 32 bytes")
        self._secret = secret

    def mac(self, data: bytes) -> str:
        return hmac.new(self._secret, data, hashlib.sha256).hexdigest()

    def for_instance(self, instance: str) -> ChainKey:
        """The chain key of one named instance: logs of two instances sharing an audit key
        cannot be swapped or spliced into each other."""
        return ChainKey(hmac.new(self._secret, b"instance " + instance.encode(),
                                 hashlib.sha256).digest()) if instance else self

    @property
    def key_id(self) -> str:
        """A fingerprint that names the key without revealing it."""
        return self.mac(b"audit key id")[:16]


def canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    body = dict(pairs)
    if len(body) != len(pairs):
        raise ValueError("duplicate key")
    return body


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_canonical(raw: bytes) -> dict[str, Any]:
    """The object `raw` is the canonical serialisation of; ValueError otherwise."""
    body = json.loads(raw, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    if canonical(body) != raw:
        raise ValueError("not in canonical form")
    return body


def seal(key: ChainKey, body: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """The record (its fields and `hash`) and its line, newline included."""
    prefix = canonical(body)[:-1] + _MAC_AT
    mac = key.mac(prefix)
    return {**body, "hash": mac}, prefix + mac.encode() + b'"}\n'


def line_of(record: dict[str, Any]) -> bytes:
    """The line of a record as it stands (its `hash` as given, right or wrong)."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return canonical(body)[:-1] + _MAC_AT + str(record.get("hash", "")).encode() + b'"}\n'


@dataclass(frozen=True)
class Line:
    record: dict[str, Any] | None
    reason: str  # why it is not a record, when record is None
    legacy: bool = False  # written in the v1 format


def read_line(raw: bytes, key: ChainKey | None) -> Line:
    """One line (without its newline) as a record, checked for form and, with the key, for
    its MAC. Chain links and sequence are the caller's to check."""
    if len(raw) > _SUFFIX_LENGTH and raw[-_SUFFIX_LENGTH:-66] == _MAC_AT and \
            raw.endswith(b'"}') and _HEX.fullmatch(raw[-66:-2]):
        try:
            body = parse_canonical(raw[:-_SUFFIX_LENGTH] + b"}")
        except ValueError as err:
            return Line(None, f"not a canonical record ({err})")
        if not body or "hash" in body:
            return Line(None, "not a canonical record (hash inside the fields)")
        mac = raw[-66:-2].decode()
        if key is not None and not hmac.compare_digest(mac, key.mac(raw[:-66])):
            return Line(None, "hash is not this log's keyed MAC of the line (edited, "
                              "rechained or forged)")
        return Line({**body, "hash": mac}, "")
    try:
        record = parse_canonical(raw)
    except json.JSONDecodeError:
        return Line(None, "not a JSON object")
    except ValueError as err:
        return Line(None, f"not a canonical record ({err})")
    stated = record.get("hash")
    if not isinstance(stated, str):
        return Line(None, "not a canonical record (no hash)")
    expected = stated if key is None else \
        key.mac(canonical({k: v for k, v in record.items() if k != "hash"}))
    if not hmac.compare_digest(stated, expected):
        return Line(None, "hash is not this log's keyed MAC of the record (edited, "
                          "rechained or forged)")
    return Line(record, "", legacy=True)


@dataclass(frozen=True)
class Checkpoint:
    records: int
    head: str

    def mac(self, key: ChainKey) -> str:
        return key.mac(f"checkpoint|{self.records}|{self.head}".encode())

    def to_json(self, key: ChainKey) -> bytes:
        return canonical({"records": self.records, "head": self.head, "mac": self.mac(key)})

    def to_slot(self, key: ChainKey) -> bytes:
        """The checkpoint file's content: the JSON, space-padded to CHECKPOINT_SIZE."""
        return self.to_json(key).ljust(CHECKPOINT_SIZE - 1) + b"\n"

    @classmethod
    def from_json(cls, raw: bytes, key: ChainKey) -> Checkpoint:
        try:
            body = parse_canonical(raw.rstrip(b" \n"))
            records, head, mac = body["records"], body["head"], body["mac"]
            if not isinstance(records, int) or not isinstance(head, str) or \
                    not isinstance(mac, str) or set(body) != {"records", "head", "mac"}:
                raise ValueError("fields")
            cp = cls(records, head)
        except (ValueError, KeyError):
            raise CheckpointUnreadable("audit checkpoint is not readable") from None
        if not hmac.compare_digest(mac, cp.mac(key)):
            raise CheckpointUnreadable("audit checkpoint MAC does not verify (edited, or "
                                       "another key)")
        return cp


class CheckpointUnreadable(ValueError):
    pass
