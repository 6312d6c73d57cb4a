"""A webhook receiver for stellar-payouts, standard library only (copy it into any service).

It trusts a delivery only when
  1. a `v1=` of `Stellar-Payouts-Signature` is HMAC-SHA256 of `<t>.<raw body>` with one of
     its secrets (several while a secret is being rotated),
  2. `t` is within TOLERANCE_SECONDS of its own clock (an old capture replayed is refused),
and it processes each event id once: a delivery whose `Stellar-Payouts-Event-Id` was already
processed (a retry, a redelivery, or a replay inside the tolerance) is answered 200 and not
processed again, so the sender stops retrying.

    PAYOUTS_WEBHOOK_SECRETS=whsec-new,whsec-old python examples/webhook_receiver.py 8080

In production keep the seen ids in your database, inserted with a unique key in the same
transaction as the processing, for as long as the event can arrive again: every retry (hours
apart) and every operator redelivery is signed afresh, so the timestamp check alone does not
stop it. In practice: keep them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOLERANCE_SECONDS = 300
SIGNATURE_HEADER = "Stellar-Payouts-Signature"
EVENT_ID_HEADER = "Stellar-Payouts-Event-Id"


# Far above any event the service sends; a larger body is refused before it is read.
MAX_BODY_BYTES = 1 << 20


class Rejected(Exception):
    pass


def verify(body: bytes, header: str, secrets: Sequence[str], now: float,
           tolerance: float = TOLERANCE_SECONDS) -> int:
    """The delivery's timestamp, or Rejected. `body`: the bytes as received, unparsed."""
    pairs = [item.strip().split("=", 1) for item in header.split(",") if "=" in item]
    timestamps = [value for key, value in pairs if key == "t"]
    # Lowercase hex only: anything else can match nothing (and compare_digest raises on
    # non-ASCII text). ASCII digits only for t: "²".isdigit() is True.
    signatures = [value for key, value in pairs
                  if key == "v1" and value and all(c in "0123456789abcdef" for c in value)]
    stamp_ok = len(timestamps) == 1 and timestamps[0].isascii() and timestamps[0].isdigit()
    if not stamp_ok or not signatures:
        raise Rejected("malformed signature header")
    signed = timestamps[0].encode() + b"." + body
    expected = [hmac.new(s.encode(), signed, hashlib.sha256).hexdigest() for s in secrets if s]
    if not any(hmac.compare_digest(e, given) for e in expected for given in signatures):
        raise Rejected("no signature matches")
    if abs(now - int(timestamps[0])) > tolerance:
        raise Rejected("timestamp outside the tolerance")
    return int(timestamps[0])


class Receiver:
    """Verifies, de-duplicates on the event id, then hands each event to `process` once."""

    def __init__(self, secrets: Sequence[str], process: Callable[[dict[str, Any]], None],
                 clock: Callable[[], float] = time.time) -> None:
        self.secrets, self.process, self.clock = list(secrets), process, clock
        self.seen: set[str] = set()
        self.lock = threading.Lock()

    def handle(self, headers: Any, body: bytes) -> tuple[int, str]:
        try:
            verify(body, headers.get(SIGNATURE_HEADER, ""), self.secrets, self.clock())
        except Rejected as err:
            return 401, str(err)
        event = json.loads(body)
        event_id = headers.get(EVENT_ID_HEADER, "")
        if str(event.get("id")) != event_id:
            return 400, "event id header and body disagree"
        with self.lock:
            if event_id in self.seen:
                return 200, "duplicate: already processed"
            self.process(event)
            self.seen.add(event_id)
        return 204, ""

    def server(self, host: str, port: int) -> ThreadingHTTPServer:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = self.headers.get("Content-Length", "0")
                if not (length.isascii() and length.isdigit()) or int(length) > MAX_BODY_BYTES:
                    status, text = 413, "body too large or no length"  # read nothing
                else:
                    status, text = receiver.handle(self.headers, self.rfile.read(int(length)))
                self.send_response(status)
                self.send_header("Content-Length", str(len(text.encode())))
                self.end_headers()
                self.wfile.write(text.encode())

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return ThreadingHTTPServer((host, port), Handler)


if __name__ == "__main__":
    secrets = [s.strip() for s in os.environ["PAYOUTS_WEBHOOK_SECRETS"].split(",") if s.strip()]
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    Receiver(secrets, lambda event: print(event["id"], event["type"], flush=True)).server(
        "127.0.0.1", port).serve_forever()
