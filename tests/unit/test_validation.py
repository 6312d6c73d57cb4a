"""Request validation and idempotency fingerprints: pure, no database."""

from __future__ import annotations

import pytest
from stellar_sdk import Keypair

from payout_service.core.errors import ValidationFailed
from payout_service.core.idempotency import canonical_parameters, differing_fields, fingerprint
from payout_service.core.validation import (
    AmountLimits,
    asset_problem,
    destination_problem,
    validate_payout_request,
)

DEST = Keypair.random().public_key
XLM_SAC = "CDLZFC3SYJYDZT7K67VZ75HPJVIEUVNIXF47ZG2FB2RMQQVU2HHGCYSC"


def make(**overrides):
    fields = dict(payout_id="p1", destination=DEST, amount="1", asset="XLM",
                  idempotency_key="k1", metadata={}, reference="", limits=AmountLimits())
    fields.update(overrides)
    return validate_payout_request(**fields)


def test_contract_destinations_are_accepted():
    assert destination_problem(XLM_SAC) is None


def test_checksum_errors_are_caught():
    broken = DEST[:-2] + ("AA" if DEST[-2:] != "AA" else "BB")
    assert destination_problem(broken) is not None


def test_issued_assets_need_a_valid_issuer():
    assert asset_problem(f"USDC:{DEST}") is None
    assert asset_problem("USDC:GXXX") is not None


def test_every_bad_field_is_reported_at_once():
    with pytest.raises(ValidationFailed) as caught:
        make(destination="nope", amount="-1", asset="", idempotency_key="")
    fields = {v.field for v in caught.value.violations}
    assert fields == {"destination", "amount", "asset", "idempotency_key"}


def test_paying_the_source_account_is_refused():
    with pytest.raises(ValidationFailed):
        make(source_account=DEST)


def test_native_is_normalised_to_xlm_so_fingerprints_match():
    a = canonical_parameters(make(asset="native"))
    b = canonical_parameters(make(asset="XLM"))
    assert fingerprint(a) == fingerprint(b)


def test_fingerprint_ignores_metadata_order_but_not_values():
    a = canonical_parameters(make(metadata={"x": "1", "y": "2"}))
    b = canonical_parameters(make(metadata={"y": "2", "x": "1"}))
    c = canonical_parameters(make(metadata={"y": "2", "x": "3"}))
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)
    assert [v.field for v in differing_fields(a, c)] == ["metadata"]
