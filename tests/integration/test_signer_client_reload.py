"""payout-service's signer client picks up a rotated client certificate without a restart,
against a real signer-service over mTLS."""

from __future__ import annotations

import shutil

from payout_service.adapters.signer_client import SignerClient
from payout_service.config import SignerClientConfig
from signer_service.certs import generate_dev_certs
from signer_service.testing import running_signer

PASSPHRASE = "Test SDF Network ; September 2015"


async def test_a_rotated_client_certificate_is_used_without_a_restart(tmp_path):
    async with running_signer(tmp_path, network_passphrase=PASSPHRASE, backend="hot") as signer:
        # A certificate from a CA the signer does not trust: refused in the handshake.
        stranger = generate_dev_certs(tmp_path / "other-ca", ["payout-service"])
        live_cert, live_key = tmp_path / "client.pem", tmp_path / "client.key"
        shutil.copy(stranger.clients["payout-service"].cert, live_cert)
        shutil.copy(stranger.clients["payout-service"].key, live_key)
        client = SignerClient(SignerClientConfig(
            address=signer.address, ca_cert=str(signer.ca_cert), client_cert=str(live_cert),
            client_key=str(live_key), key_id=signer.key_id, server_name="signer-service",
        ), timeout_seconds=5)
        try:
            assert not await client.check()
            # The operator rotates the files in place (the signer's own CA issued these).
            shutil.copy(signer.client_cert, live_cert)
            shutil.copy(signer.client_key, live_key)
            assert await client.check()
            # A half-done rotation (a file missing) keeps the working certificate.
            live_key.unlink()
            assert await client.check()
        finally:
            await client.close()
