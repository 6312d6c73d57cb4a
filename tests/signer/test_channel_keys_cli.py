"""`signerctl channel-keys generate` on a real SoftHSM token."""

from __future__ import annotations

import json

from stellar_sdk import StrKey

from signer_service.backends.token_admin import next_numbers
from signer_service.testing import make_softhsm_token, run_signerctl

TOKEN = ("--token-label", "payouts")


async def test_channel_keys_are_generated_in_one_command_and_never_relabelled(tmp_path):
    env: dict[str, str] = {"PATH": "/usr/bin:/bin"}
    await make_softhsm_token(tmp_path, env, "payouts")
    first = (await run_signerctl(env, "channel-keys", "generate", *TOKEN, "--count", "3"))
    rows = [line.split() for line in first.splitlines()]
    assert [r[0] for r in rows] == ["channel-1", "channel-2", "channel-3"]
    again = await run_signerctl(env, "channel-keys", "generate", *TOKEN, "--count", "2",
                                "-o", "json")
    objects = [json.loads(line) for line in again.splitlines()]
    assert [o["key_id"] for o in objects] == ["channel-4", "channel-5"]
    addresses = [r[1] for r in rows] + [o["public_key"] for o in objects]
    assert len(set(addresses)) == 5 and all(map(StrKey.is_valid_ed25519_public_key, addresses))
    shown = await run_signerctl(env, "key", "show", *TOKEN, "--label", "channel-2")
    assert shown.split() == rows[1]


def test_numbering_continues_after_the_highest_label_of_the_prefix():
    labels = ["channel-2", "channel-10", "payout-key", "channel-x", "other-99"]
    assert list(next_numbers(labels, "channel-", 2)) == [11, 12]
    assert list(next_numbers([], "channel-", 1)) == [1]
