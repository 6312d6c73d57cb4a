"""One way for a test to wait: poll a condition until it holds, within a generous deadline.

A deadline here is a liveness bound, never a timing claim: the wait ends as soon as the
condition holds, and the deadline only turns "never" into a failure that names what was
awaited and what was last seen. A test that waits for something that can be observed polls
it with these; a bare sleep is only for letting time pass on purpose (a lease running out,
proving that nothing more happens).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0
DEFAULT_INTERVAL = 0.05


class NotYet(AssertionError):
    """The condition did not hold within the deadline."""


def _failure(what: str, within: float, last: object) -> NotYet:
    return NotYet(f"not within {within:g} s: {what} (last seen: {last!r})")


async def eventually(
    condition: Callable[[], Awaitable[T] | T],
    *,
    what: str,
    within: float = DEFAULT_TIMEOUT,
    interval: float = DEFAULT_INTERVAL,
    ignoring: tuple[type[BaseException], ...] = (),
) -> T:
    """Calls `condition` (sync or async) until it returns a truthy value, and returns it.

    An exception of a type in `ignoring` counts as "not yet" (a server still starting);
    any other propagates at once. After `within` seconds, fails naming `what` and the last
    value or ignored exception seen.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last: object = None
    while True:
        try:
            value = condition()
            if inspect.isawaitable(value):
                value = await value
        except ignoring as err:
            last = err
        else:
            if value:
                return value  # type: ignore[return-value]
            last = value
        if loop.time() >= deadline:
            raise _failure(what, within, last)
        await asyncio.sleep(interval)


def eventually_blocking(
    condition: Callable[[], T],
    *,
    what: str,
    within: float = DEFAULT_TIMEOUT,
    interval: float = DEFAULT_INTERVAL,
    ignoring: tuple[type[BaseException], ...] = (),
) -> T:
    """`eventually` for synchronous tests (hypothesis tests, threads)."""
    deadline = time.monotonic() + within
    last: object = None
    while True:
        try:
            value = condition()
        except ignoring as err:
            last = err
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise _failure(what, within, last)
        time.sleep(interval)
