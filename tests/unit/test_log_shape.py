"""Both services write one log shape, so one query reads both: an RFC 3339 UTC timestamp with
milliseconds, level, logger, message, service, and the extra fields flat at the top level.
Each service has its own formatter (the signer imports nothing from the payout service)."""

from __future__ import annotations

import json
import logging
import re
import sys

from payout_service.logs import JsonFormatter as PayoutFormatter
from signer_service.logs import JsonFormatter as SignerFormatter

RFC3339_MS_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
CORE = {"timestamp", "level", "logger", "message", "service"}


def record(extra: dict[str, object]) -> logging.LogRecord:
    made = logging.LogRecord("x", logging.WARNING, __file__, 1, "sent %s", ("tx",), None)
    made.created = 1_767_225_600.0071  # 2026-01-01T00:00:00.007Z
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_both_services_write_the_same_keys_and_timestamp_format():
    fields = {"payout_id": "p-1", "attempt": 2, "tx_hash": "ab" * 32}
    payout = json.loads(PayoutFormatter("payout-service").format(record(fields)))
    # The signer's log_event passes its fields as one `fields` extra; they land flat too.
    signer = json.loads(SignerFormatter().format(record({"fields": fields})))
    assert set(payout) == set(signer) == CORE | set(fields)
    for line, service in ((payout, "payout-service"), (signer, "signer-service")):
        assert RFC3339_MS_UTC.fullmatch(line["timestamp"]), line["timestamp"]
        assert line["timestamp"] == "2026-01-01T00:00:00.007Z"
        assert (line["level"], line["logger"], line["message"]) == ("warning", "x", "sent tx")
        assert line["service"] == service
        assert (line["payout_id"], line["attempt"]) == ("p-1", 2)


def test_plain_extra_fields_are_flat_in_both():
    extra = {"current_ledger": 7}
    payout = json.loads(PayoutFormatter("payout-service").format(record(extra)))
    signer = json.loads(SignerFormatter().format(record(extra)))
    assert payout["current_ledger"] == signer["current_ledger"] == 7
    assert set(payout) == set(signer) == CORE | {"current_ledger"}


def test_an_extra_field_never_overwrites_the_core_ones():
    extra = {"service": "spoofed", "level": "debug"}
    for formatter in (PayoutFormatter("payout-service"), SignerFormatter()):
        line = json.loads(formatter.format(record(extra)))
        assert line["service"] != "spoofed" and line["level"] == "warning"


def test_an_exception_keeps_the_callers_error_field_and_puts_the_stack_beside_it():
    try:
        raise TimeoutError("node slow")
    except TimeoutError:
        made = record({"error": "LedgerUnavailable: TimeoutError"})
        made.exc_info = sys.exc_info()
    line = json.loads(PayoutFormatter("payout-service").format(made))
    assert line["error"] == "LedgerUnavailable: TimeoutError"
    assert "Traceback" in line["traceback"] and "node slow" in line["traceback"]
    plain = record({})
    plain.exc_info = made.exc_info
    assert json.loads(PayoutFormatter("payout-service").format(plain))["error"] == "TimeoutError"
