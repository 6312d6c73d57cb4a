"""Export cursors and rows, and payout files checked line by line: pure, no database."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from stellar_sdk import Keypair

from payout_service.core.errors import ValidationFailed
from payout_service.core.exports import (
    EXPORT_COLUMNS,
    ExportFormat,
    ExportPosition,
    decode_cursor,
    encode_cursor,
    export_row,
    neutralize_formula,
    render_chunk,
    render_fitting,
    validate_export_request,
)
from payout_service.core.payout_file import parse_payout_file, parse_winner_file
from payout_service.core.states import PayoutState

DEST = Keypair.random().public_key


def test_a_cursor_gives_back_the_exact_position_it_was_made_from():
    position = ExportPosition(datetime(2026, 11, 3, 8, 1, 2, 345678, tzinfo=UTC), uuid4())
    assert decode_cursor(encode_cursor(position)) == position


@pytest.mark.parametrize("cursor", ["", "x", "bm90LWEtY3Vyc29y", "LTEuMDA", "!!!"])
def test_anything_else_is_not_a_cursor(cursor):
    with pytest.raises(ValueError, match="not a cursor"):
        decode_cursor(cursor)


def valid(**overrides):
    fields = dict(format_name="csv", created_from=None, created_before=None, states=[],
                  round_id="", run_id="", destination="", rows_per_chunk=0, resume_cursor="")
    fields.update(overrides)
    return validate_export_request(**fields)


def test_every_bad_filter_is_named_at_once():
    with pytest.raises(ValidationFailed) as caught:
        valid(format_name=None, states=[None], destination="G", rows_per_chunk=1001,
              created_from=datetime(2026, 2, 1, tzinfo=UTC),
              created_before=datetime(2026, 1, 1, tzinfo=UTC), resume_cursor="zz")
    assert [v.field for v in caught.value.violations] == [
        "format", "created_before", "states", "destination", "rows_per_chunk",
        "resume_cursor"]


def test_unset_filters_export_everything_in_default_chunks():
    request = valid(states=[PayoutState.CONFIRMED])
    assert request.format is ExportFormat.CSV and request.rows_per_chunk == 500
    assert request.filter.states == (PayoutState.CONFIRMED,) and request.after is None


def stored(**overrides):
    row = {name: None for name in EXPORT_COLUMNS}
    row.update(id=uuid4(), payout_id="p,1", idempotency_key="k", destination=DEST,
               asset="XLM", gross_stroops=2**62, fee_stroops=0, net_stroops=2**62,
               state="CONFIRMED", created_at=datetime(2026, 1, 1, tzinfo=UTC),
               updated_at=datetime(2026, 1, 1, tzinfo=UTC), metadata={"b": "2", "a": "1"})
    row.update(overrides)
    return row


def test_amounts_leave_as_integer_strings_and_absent_values_as_empty_or_null():
    row = export_row(stored())
    assert row["gross_stroops"] == str(2**62) and row["network_fee_stroops"] is None
    assert row["created_at"] == "2026-01-01T00:00:00Z"
    line = json.loads(render_chunk([row], ExportFormat.JSONL, header=False))
    assert list(line) == list(EXPORT_COLUMNS) and line["ledger"] is None
    text = render_chunk([row], ExportFormat.CSV, header=True)
    header, body = text.splitlines()
    assert header == ",".join(EXPORT_COLUMNS)
    assert body.startswith(f'{row["id"]},"p,1",k,') and '"{""a"":""1"",""b"":""2""}"' in body


def test_a_payout_file_names_each_bad_line_and_field():
    text = ("id,destination,amount,metadata.team\n"
            f"a-1,{DEST},1.5,x\n"
            f"a-2,{DEST},-1,\n"
            "\n"
            f'"bad id",{DEST},2,\n'
            f"a-1,{DEST},3,\n")
    rows, problems = parse_payout_file(text)
    assert [str(p) for p in problems] == [
        "line 3: amount: must be positive, written without a sign, e.g. '100.5'",
        "line 5: id: must be 1-128 characters from A-Z a-z 0-9 : _ . -",
        "line 6: id: repeats line 2", "line 6: idempotency_key: repeats line 2"]
    assert [(r.line, r.request.amount_stroops, dict(r.request.metadata)) for r in rows] == [
        (2, 15_000_000, {"team": "x"})]


def test_a_winner_file_names_every_bad_line_and_field_and_keeps_no_row():
    text = ("rank,destination,amount\n"
            f"1,{DEST},100\n"
            f"2,{DEST},-1\n"
            f"x,{DEST},1\n"
            "\n"
            f"1,G,5\n"
            "4,oops\n")
    rows, problems = parse_winner_file(text, "round-7", "XLM")
    assert rows == []
    assert [(p.line, p.field) for p in problems] == [
        (3, "amount"), (4, "rank"), (6, "rank"), (6, "destination"), (7, "row")]
    assert "used by another winner" in str(problems[2])


def test_a_good_winner_file_becomes_the_round_s_winners_in_file_order():
    rows, problems = parse_winner_file(
        f"amount,rank,destination\n0.5,2,{DEST}\n100,1,{DEST}\n", "round-7", "XLM")
    assert problems == []
    assert [(r.line, r.winner.rank, r.winner.amount) for r in rows] == [
        (2, 2, "0.5"), (3, 1, "100")]


def test_a_winner_file_takes_no_payout_columns_and_at_least_one_winner():
    _, problems = parse_winner_file("rank,destination,amount,metadata.x,id\n", "r", "XLM")
    assert [(p.line, p.field) for p in problems] == [(1, "metadata.x"), (1, "id")]
    _, problems = parse_winner_file("rank,destination,amount\n", "r", "XLM")
    assert [str(p) for p in problems] == ["line 1: rows: at least one winner is required"]


def test_a_payout_file_with_unknown_or_missing_columns_is_refused_at_the_header():
    rows, problems = parse_payout_file("id,amount,memo,colour\n")
    assert [(p.line, p.field) for p in problems] == [
        (1, "destination"), (1, "memo"), (1, "colour")]


def test_a_page_too_large_for_one_message_goes_out_in_smaller_chunks_in_order():
    rows = [export_row(stored(payout_id=f"p-{i}", metadata={"note": "x" * 400}))
            for i in range(20)]
    whole = render_chunk(rows, ExportFormat.CSV, header=True)
    parts = render_fitting(rows, ExportFormat.CSV, header=True, max_chars=2000)
    assert len(parts) > 1 and all(len(text) <= 2000 for text, _ in parts)
    assert "".join(text for text, _ in parts) == whole
    assert sum(count for _, count in parts) == 20


def test_an_exchange_deposit_exports_its_memo_and_muxed_id_as_text():
    row = export_row(stored(memo_type="id", memo_value="18446744073709551615",
                            muxed_id=2**64 - 1))
    assert (row["memo_type"], row["memo_value"]) == ("id", "18446744073709551615")
    assert row["muxed_id"] == "18446744073709551615"  # a uint64: no reader may round it
    line = json.loads(render_chunk([row], ExportFormat.JSONL, header=False))
    assert line["muxed_id"] == "18446744073709551615"
    assert export_row(stored())["muxed_id"] is None


@pytest.mark.parametrize("text", ["=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx",
                                  "=HYPERLINK(\"http://x\")"])
def test_a_cell_a_spreadsheet_would_run_as_a_formula_gets_a_leading_apostrophe(text):
    assert neutralize_formula(text) == "'" + text


@pytest.mark.parametrize("text", ["", "p1", "100", "'quoted", " =1", "a=b", "{\"a\":\"=1\"}"])
def test_any_other_cell_is_left_as_it_is(text):
    assert neutralize_formula(text) == text


def test_only_csv_neutralizes_formulas_json_lines_keeps_the_value():
    row = export_row(stored(reference="=cmd|' /C calc'!A0", memo_type="text",
                            memo_value="-5", metadata={"note": "@x"}))
    line = json.loads(render_chunk([row], ExportFormat.JSONL, header=False))
    assert line["reference"] == "=cmd|' /C calc'!A0" and line["memo_value"] == "-5"
    text = render_chunk([row], ExportFormat.CSV, header=True)
    cells = dict(zip(*csv.reader(io.StringIO(text)), strict=True))
    assert cells["reference"] == "'=cmd|' /C calc'!A0" and cells["memo_value"] == "'-5"
    assert cells["metadata"] == '{"note":"@x"}' and cells["gross_stroops"] == str(2**62)
