"""PAYOUTS_TX_WINDOW_SECONDS below what the network accepts fails at start-up.

stellar-core answers txTOO_LATE to a maxTime under the last close + 2 expected ledger closes
(TransactionFrame::isTooLate): on the 5 s public networks a window must outlast 10 s from
submission, so the service refuses windows under 15 s there (one more ledger to sign and send).
"""

from __future__ import annotations

import pytest
from stellar_sdk import Keypair, Network

from payout_service.config import ConfigError, load_config

BASE = {
    "DATABASE_URL": "postgresql://x/y",
    "PAYOUT_SOURCE_ACCOUNT": Keypair.random().public_key,
    "PAYOUTS_PLAINTEXT": "true",
}
PUBLIC_NETWORKS = [
    Network.PUBLIC_NETWORK_PASSPHRASE,
    Network.TESTNET_NETWORK_PASSPHRASE,
    Network.FUTURENET_NETWORK_PASSPHRASE,
]


@pytest.mark.parametrize("passphrase", PUBLIC_NETWORKS)
@pytest.mark.parametrize("variable", ["PAYOUTS_TX_WINDOW_SECONDS",
                                      "PAYOUTS_EXTERNAL_SIGNING_WINDOW_SECONDS"])
def test_a_window_shorter_than_two_ledger_closes_is_refused_on_public_networks(
    passphrase: str, variable: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({**BASE, "STELLAR_NETWORK_PASSPHRASE": passphrase, variable: "14"})
    message = str(caught.value)
    assert message.startswith(f"{variable} must be at least 15 s")
    assert "txTOO_LATE" in message and "\n" not in message
    config = load_config({**BASE, "STELLAR_NETWORK_PASSPHRASE": passphrase, variable: "15"})
    assert 15 in (config.tx_window_seconds, config.external_window_seconds)


def test_the_default_network_is_testnet_so_the_floor_applies_without_a_passphrase() -> None:
    with pytest.raises(ConfigError, match="PAYOUTS_TX_WINDOW_SECONDS"):
        load_config({**BASE, "PAYOUTS_TX_WINDOW_SECONDS": "10"})


def test_networks_with_their_own_close_time_keep_the_five_second_floor() -> None:
    standalone = {**BASE, "STELLAR_NETWORK_PASSPHRASE": Network.STANDALONE_NETWORK_PASSPHRASE}
    assert load_config({**standalone, "PAYOUTS_TX_WINDOW_SECONDS": "5"}).tx_window_seconds == 5
    with pytest.raises(ConfigError, match="PAYOUTS_TX_WINDOW_SECONDS must be at least 5 s"):
        load_config({**standalone, "PAYOUTS_TX_WINDOW_SECONDS": "4"})
