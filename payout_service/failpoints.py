"""Crash points for tests: PAYOUTS_FAILPOINT=<name> makes the process SIGKILL itself there.

Used by the crash-safety tests to stop the service between two steps of the pipeline
exactly where a power cut could. Unset in production, where it costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

NAMES = frozenset({"after_reserve", "after_sign", "after_send", "before_confirm"})


def failpoint(name: str) -> None:
    if os.environ.get("PAYOUTS_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
