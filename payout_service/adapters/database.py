"""Connections to PostgreSQL: always to the primary, found again after a failover.

DATABASE_URL may name several hosts in libpq's syntax
(`postgresql://user@db-a:5432,db-b:5432/payouts`): every new connection tries them in turn,
starting with the one that answered last, and keeps the first that accepts writes
(`target_session_attrs=read-write`, the default here: every replica writes, so a session on a
standby is never useful). asyncpg alone spends one connect timeout on all hosts together, so
a first host that drops packets would use it all and the next host would never be tried;
here each host gets `connect_timeout` seconds of its own, as in libpq.

A connection that finds itself on a node that no longer takes writes (a primary fenced with
`default_transaction_read_only`, or any session that reports `in_hot_standby`) is not handed
out again: the whole pool is expired, and the next connections go through the host list to
the node that is primary now. Without that, a pool could keep answering
read_only_sql_transaction for as long as those sessions live.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

log = logging.getLogger(__name__)

WRITABLE_SESSION_ATTRS = ("read-write", "primary")
DEFAULT_CONNECT_TIMEOUT_SECONDS = 10.0

NETWORK_ERRNOS = frozenset({
    errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED, errno.ECONNRESET,
    errno.ETIMEDOUT, errno.ENETDOWN, errno.EHOSTDOWN, errno.EPIPE, errno.ECONNABORTED,
})


class NotPrimary(ConnectionError):
    """The session's node does not take writes (now); the pool drops it and reconnects."""


class NoPrimaryReachable(ConnectionError):
    """No host of DATABASE_URL is a reachable primary right now (a failover in progress)."""


@dataclass(frozen=True)
class DatabaseUrl:
    """DATABASE_URL split into one URL per host, with the settings asyncpg does not take."""

    host_urls: tuple[str, ...]
    hosts: tuple[str, ...]  # host:port as written, for log lines (never the password)
    target_session_attrs: str
    connect_timeout: float


def parse_database_url(url: str) -> DatabaseUrl:
    """Raises ValueError with the reason (the caller names DATABASE_URL)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError("must be a postgresql:// URL")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    hosts = tuple(h for h in hostlist.split(",")) if hostlist else ("",)
    if any(not h for h in hosts) and len(hosts) > 1:
        raise ValueError("has an empty host in its host list")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    attrs = query.pop("target_session_attrs", "read-write")
    if attrs not in WRITABLE_SESSION_ATTRS:
        raise ValueError(
            f"target_session_attrs={attrs} could connect payout-service to a standby; "
            "use read-write (the default) or primary")
    raw_timeout = query.pop("connect_timeout", "")
    try:
        timeout = float(raw_timeout) if raw_timeout else DEFAULT_CONNECT_TIMEOUT_SECONDS
    except ValueError:
        raise ValueError("connect_timeout must be a number of seconds") from None
    if timeout <= 0:
        raise ValueError("connect_timeout must be above 0 seconds")
    rest = urlencode(query)
    host_urls = tuple(
        urlunsplit(parts._replace(netloc=f"{userinfo}@{host}" if userinfo else host,
                                  query=rest))
        for host in hosts
    )
    return DatabaseUrl(host_urls, hosts, attrs, timeout)


# A host that fails this way may serve later (down, starting, a standby, full): the next one
# is tried, and if none serves, NoPrimaryReachable says "wait and try again". Any other error
# (bad password, unknown database) also moves on to the next host, as libpq does (a standby
# that has not yet replayed CREATE DATABASE says "unknown database"); it is raised only if
# every host failed that way, as a configuration error.
_TRANSIENT_HOST_ERRORS = (
    OSError, TimeoutError, asyncpg.TargetServerAttributeNotMatched,
    asyncpg.CannotConnectNowError, asyncpg.PostgresConnectionError,
    asyncpg.TooManyConnectionsError,
)


class PrimaryConnector:
    """asyncpg's `connect` for a pool: the first host that is a primary, each with its own
    connect timeout, starting from the host that was primary last time."""

    def __init__(self, url: DatabaseUrl) -> None:
        self.url = url
        self._first = 0

    async def __call__(self, *_args: Any, **kwargs: Any) -> asyncpg.Connection:
        failed: list[tuple[str, Exception]] = []
        count = len(self.url.host_urls)
        for step in range(count):
            index = (self._first + step) % count
            try:
                conn: asyncpg.Connection = await asyncpg.connect(
                    self.url.host_urls[index], timeout=self.url.connect_timeout,
                    target_session_attrs=self.url.target_session_attrs, **kwargs)
            except Exception as err:  # noqa: BLE001 - sorted below
                failed.append((self.url.hosts[index] or "default host", err))
                continue
            if index != self._first:
                log.warning("PostgreSQL primary found on another host",
                            extra={"host": self.url.hosts[index]})
                self._first = index
            return conn
        if not any(isinstance(err, _TRANSIENT_HOST_ERRORS) for _, err in failed):
            raise failed[0][1]
        raise NoPrimaryReachable("no primary among " + ", ".join(
            f"{host} ({_why(err)})" for host, err in failed))


def _why(err: Exception) -> str:
    if isinstance(err, asyncpg.TargetServerAttributeNotMatched):
        return "standby or read-only"
    return type(err).__name__


def session_read_only(conn: asyncpg.Connection) -> bool:
    """What the server last reported for this session (PostgreSQL 14+ reports both
    parameters whenever they change): no round trip."""
    settings = conn.get_settings()
    return "on" in (getattr(settings, "in_hot_standby", "off"),
                    getattr(settings, "default_transaction_read_only", "off"))


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    url = parse_database_url(dsn)
    pools: list[asyncpg.Pool] = []

    async def refuse_read_only(conn: asyncpg.Connection) -> None:
        if session_read_only(conn):
            for pool in pools:
                await pool.expire_connections()
            raise NotPrimary("the database session is read-only (no longer the primary)")

    pool = await asyncpg.create_pool(
        min_size=min_size, max_size=max_size, init=_init_connection,
        connect=PrimaryConnector(url), setup=refuse_read_only,
    )
    assert pool is not None  # noqa: S101 - asyncpg types the pool as Optional
    pools.append(pool)
    return pool


async def expire_if_read_only(pool: asyncpg.Pool, err: BaseException) -> bool:
    """After read_only_sql_transaction (a server that does not report its read-only state):
    every pooled session may be on the demoted node; replace them all. True if it did."""
    if isinstance(err, asyncpg.ReadOnlySQLTransactionError):
        await pool.expire_connections()
        return True
    return False


# Reasons to wait rather than exit: the server is not (yet) reachable or not accepting.
_TRANSIENT_CONNECT_ERRORS = (OSError, TimeoutError, asyncpg.CannotConnectNowError,
                             asyncpg.TooManyConnectionsError)


def redacted_dsn(dsn: str) -> str:
    """The DSN as it may be logged: any password replaced by ***."""
    parts = urlsplit(dsn)
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return dsn
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostlist}"))


async def create_pool_waiting(dsn: str, *, max_backoff: float = 30.0) -> asyncpg.Pool:
    """create_pool, waiting with exponential backoff while no primary is reachable (a
    replica started before its database, or during a failover, keeps trying instead of
    exiting). One log line per try, naming DATABASE_URL without its password; other errors
    (bad credentials, unknown database) are raised at once."""
    return await retry_while_unavailable(lambda: create_pool(dsn), dsn, max_backoff)


T = TypeVar("T")


async def retry_while_unavailable(
    make: Callable[[], Awaitable[T]], dsn: str, max_backoff: float = 30.0,
) -> T:
    """Runs `make` until it does not fail for want of a usable primary."""
    failures = 0
    while True:
        try:
            return await make()
        except Exception as err:
            if not (isinstance(err, _TRANSIENT_CONNECT_ERRORS) or database_unavailable(err)):
                raise
            failures += 1
            wait = min(max_backoff, 0.5 * 2 ** (failures - 1))
            log.warning("PostgreSQL unreachable; waiting", extra={
                "database_url": redacted_dsn(dsn),
                "error": f"{type(err).__name__}: {err}"[:200],
                "tries": failures, "retry_in_seconds": wait})
            await asyncio.sleep(wait)


def database_unavailable(err: BaseException) -> bool:
    """PostgreSQL cannot be used right now (unreachable, restarting, failing over, or this
    session is on a node that no longer takes writes): the call changed nothing and may be
    retried, on this replica or another."""
    if isinstance(err, asyncpg.InterfaceError):
        # Raised by a pool shutting down or a connection lost mid-call.
        return "pool is clos" in str(err) or "connection is closed" in str(err)
    if isinstance(err, OSError) and not isinstance(err, TimeoutError):
        # Refused, reset, unreachable, unknown host: not a file error of ours.
        return isinstance(err, (ConnectionError, socket.gaierror)) or err.errno in NETWORK_ERRNOS
    return isinstance(err, (
        TimeoutError,  # connecting or acquiring a connection timed out
        asyncpg.PostgresConnectionError,  # SQLSTATE class 08
        asyncpg.exceptions.OperatorInterventionError,  # class 57: shutdown, cannot connect now
        asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections
        asyncpg.ReadOnlySQLTransactionError,  # 25006: a demoted or fenced primary
        asyncpg.TargetServerAttributeNotMatched,  # only standbys answered
    ))
