"""`payoutctl proof ID`: a confirmed payout's proof of payment, with a link an explorer
understands (stellar.expert knows the public network and testnet; on any other network the
transaction hash is what to look up)."""

from __future__ import annotations

import json
import os
from datetime import UTC
from typing import Any

from google.protobuf.json_format import MessageToDict
from stellar_sdk import Network

from stellar_payouts_pb.payout.v1 import payout_pb2 as pb

EXPLORER = "https://stellar.expert/explorer/{network}/tx/{tx_hash}"
EXPLORER_NETWORKS = {
    Network.PUBLIC_NETWORK_PASSPHRASE: "public",
    Network.TESTNET_NETWORK_PASSPHRASE: "testnet",
}
NETWORK_NAMES = {"public": Network.PUBLIC_NETWORK_PASSPHRASE,
                 "testnet": Network.TESTNET_NETWORK_PASSPHRASE}


def explorer_link(network: str, tx_hash: str) -> str | None:
    """The explorer's page of the transaction, or None on a network it does not index."""
    passphrase = NETWORK_NAMES.get(network, network)
    name = EXPLORER_NETWORKS.get(passphrase)
    return EXPLORER.format(network=name, tx_hash=tx_hash) if name else None


def add_parser(command: Any) -> None:
    p = command("proof", "a confirmed payout's proof of payment, with an explorer link")
    p.add_argument("payout_id", help="your payout id or the server id (UUID)")
    p.add_argument("--network", default=os.environ.get("STELLAR_NETWORK_PASSPHRASE", ""),
                   help="public, testnet or a network passphrase, for the explorer link "
                        "(default: STELLAR_NETWORK_PASSPHRASE, as the service is set; on "
                        "another network only the hash is printed)")


def render(payout: pb.Payout, network: str, output: str, *, memo: str) -> str:
    """`memo` is the proof's memo as `create --memo` takes it ('' for none)."""
    proof = payout.proof
    link = explorer_link(network, proof.tx_hash)
    if output == "json":
        document = {"payout_id": payout.payout_id,
                    "proof": MessageToDict(proof, preserving_proto_field_name=True),
                    "explorer_url": link}
        return json.dumps(document, indent=2)
    closed = proof.ledger_closed_at.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    fields = [
        ("payout_id", payout.payout_id), ("tx_hash", proof.tx_hash),
        ("ledger", str(proof.ledger)), ("closed_at", closed),
        ("op_index", str(proof.op_index)), ("event_id", proof.event_id or "-"),
        ("fee_charged", f"{proof.fee_charged_stroops} stroops"),
        ("fee_share", f"{proof.fee_share_stroops} stroops"),
        ("memo", memo or "-"),
        ("muxed_id", str(proof.muxed_id) if proof.HasField("muxed_id") else "-"),
        ("treasury", proof.treasury), ("explorer", link or proof.tx_hash),
    ]
    return "\n".join(f"{name + ':':16}{value}" for name, value in fields)
