"""Signs an envelope for the dev stack's --external-signing mode, as an offline signer would.

    payoutctl unsigned ID | python -m local_stack.sign .devstack/external-signer.secret \\
        | payoutctl submit-signed ID -

Reads the unsigned envelope XDR on stdin and prints it signed by the key in the file, for the
network in STELLAR_NETWORK_PASSPHRASE (the dev stack's env files set it to the sandbox's).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from stellar_sdk import Keypair, TransactionEnvelope


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    passphrase = os.environ.get("STELLAR_NETWORK_PASSPHRASE")
    if not passphrase:
        sys.exit("local_stack.sign: STELLAR_NETWORK_PASSPHRASE is not set "
                 "(. .devstack/operator.env sets it)")
    keypair = Keypair.from_secret(Path(sys.argv[1]).read_text().strip())
    envelope = TransactionEnvelope.from_xdr(sys.stdin.read().strip(), passphrase)
    envelope.sign(keypair)
    print(envelope.to_xdr())


if __name__ == "__main__":
    main()
