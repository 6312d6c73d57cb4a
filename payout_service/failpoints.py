"""Crash points for tests: PAYOUTS_FAILPOINT=<name> makes the process SIGKILL itself there.

Used by the crash-safety tests to stop the service between two steps of the pipeline
exactly where a power cut could. Unset in production, where it costs one comparison. The
configuration (config.py) reads the variable; the process arms it once at start-up.
"""

from __future__ import annotations

import os
import signal

NAMES = frozenset({"after_reserve", "after_sign", "after_send", "before_confirm"})

_armed: str | None = None


def arm(name: str | None) -> None:
    global _armed
    _armed = name


def failpoint(name: str) -> None:
    if _armed == name:
        os.kill(os.getpid(), signal.SIGKILL)
