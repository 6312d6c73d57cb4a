"""A throwaway primary with one synchronous standby, for failover tests and drills.

Streaming replication as deploy/README.md asks of production: the standby is a base backup of
the primary (`pg_basebackup -R`), named in the primary's `synchronous_standby_names`, and the
primary commits with `synchronous_commit=on`, so a commit is acknowledged to the client only
once the standby has flushed it. Killing the primary and promoting the standby then loses no
acknowledged commit. Both run on loopback from the machine's PostgreSQL binaries, like
embedded_postgres.py.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from payout_service.adapters.embedded_postgres import EmbeddedPostgres

STANDBY_NAME = "payouts_standby"
# Durable commits (a failover test judges them); fsync stays off: a killed process does not
# lose what it wrote to the operating system, only a machine crash would.
REPLICATED_SETTINGS = {
    "fsync": "off", "max_connections": "200", "wal_level": "replica",
    "max_wal_senders": "5", "hot_standby": "on",
}


class ReplicatedPostgres:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root or tempfile.mkdtemp(prefix="payouts-pg-pair-"))
        # The nodes may run as the `postgres` user (see embedded_postgres.py): let it in.
        self.root.chmod(0o755)
        self.primary = EmbeddedPostgres(self.root / "a", settings={
            **REPLICATED_SETTINGS, "synchronous_commit": "on",
            "synchronous_standby_names": STANDBY_NAME,
        })
        # The standby's own name is what the primary waits for; once promoted it has no
        # standby of its own, so it names none (it would wait for ever).
        self.standby = EmbeddedPostgres(self.root / "b", settings={
            **REPLICATED_SETTINGS, "cluster_name": STANDBY_NAME,
        })

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"

    def url(self, database: str = "postgres") -> str:
        """libpq multi-host syntax: whichever host takes writes."""
        return f"postgresql://postgres@{self.hosts}/{database}?target_session_attrs=read-write"

    def node_url(self, node: EmbeddedPostgres, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{node.port}/{database}"

    def start(self, within: float = 60.0) -> ReplicatedPostgres:
        self.primary.start()
        self.standby.prepare_root()
        self.standby.run("pg_basebackup", "-D", str(self.standby.data), "-h", "127.0.0.1",
                         "-p", str(self.primary.port), "-U", "postgres", "-X", "stream",
                         "-c", "fast", "-R")
        self.standby.start()
        self.wait_until_synchronous(within)
        return self

    def wait_until_synchronous(self, within: float) -> None:
        deadline = time.monotonic() + within
        while True:
            state = self.primary.run(
                "psql", "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "postgres",
                "-Atc", "SELECT sync_state FROM pg_stat_replication "  # noqa: S608 - constant
                        f"WHERE application_name = '{STANDBY_NAME}'").strip()
            if state == "sync":
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the standby is not synchronous (state {state!r})")
            time.sleep(0.1)

    def kill_primary(self) -> None:
        self.primary.kill()

    def promote_standby(self) -> None:
        """`pg_ctl promote -w`: returns once the standby takes writes."""
        self.standby.run("pg_ctl", "-D", str(self.standby.data), "-w", "promote")

    def stop(self) -> None:
        for node in (self.standby, self.primary):
            if (node.data / "postmaster.pid").exists():
                try:
                    node.run("pg_ctl", "-D", str(node.data), "-m", "immediate", "-w", "stop")
                except Exception:  # noqa: BLE001, S110 - a killed node has nothing to stop
                    pass
        shutil.rmtree(self.root, ignore_errors=True)
