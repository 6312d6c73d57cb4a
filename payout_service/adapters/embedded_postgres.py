"""A throwaway PostgreSQL cluster from the machine's own binaries, for local runs and tests.

Used when DATABASE_URL is not set: `initdb` into a folder, start on a free loopback port with
trust auth, drop it afterwards. PostgreSQL refuses to run as root, so as root the cluster runs
as the `postgres` system user (created by Debian's postgresql package).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

# Fast and crash-unsafe (a throwaway cluster): no fsync, commits not waited for.
THROWAWAY_SETTINGS = {
    "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
    "max_connections": "200",
}


class PostgresNotFound(RuntimeError):
    pass


def find_pg_bin() -> Path:
    candidates = []
    if os.environ.get("PAYOUTS_PG_BIN"):
        candidates.append(os.environ["PAYOUTS_PG_BIN"])
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run(  # noqa: S603
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for folder in candidates:
        if folder and (Path(folder) / "initdb").exists():
            return Path(folder)
    raise PostgresNotFound(
        "no PostgreSQL server binaries found (install Debian's 'postgresql' or set "
        "PAYOUTS_PG_BIN, or set DATABASE_URL)"
    )


def _parent_of(proc: Path) -> int | None:
    try:
        # /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces and brackets.
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedPostgres:
    def __init__(self, root: Path | None = None, port: int | None = None,
                 settings: Mapping[str, str] = THROWAWAY_SETTINGS) -> None:
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="payouts-pg-"))
        self.data = self.root / "data"
        self.port = port or free_port()
        self.settings = dict(settings)
        self.bin = find_pg_bin()
        self._user = None
        if os.geteuid() == 0:
            self._user = pwd.getpwnam("postgres")

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, *args: str) -> str:
        """A PostgreSQL program of this installation, as the cluster's user; its stdout."""
        cmd = [str(self.bin / args[0]), *args[1:]]
        user = self._user
        done = subprocess.run(  # noqa: S603
            cmd, check=True, capture_output=True, text=True,
            user=user.pw_uid if user else None, group=user.pw_gid if user else None,
            cwd=self.root,
        )
        return done.stdout

    def prepare_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._user:
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)

    def start(self) -> EmbeddedPostgres:
        self.prepare_root()
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        settings = {"listen_addresses": "127.0.0.1", **self.settings}
        opts = f"-p {self.port} -k {self.root} " + " ".join(
            f"-c {name}={value}" for name, value in settings.items())
        self.run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"),
                 "-w", "start")
        return self

    def _initdb(self, tries: int = 3) -> None:
        """initdb, again from an empty folder if it was killed by a signal: on a loaded
        machine it has died of SIGSEGV while probing shared memory, once in hundreds of runs;
        a throwaway cluster has nothing to lose by starting over."""
        for attempt in range(1, tries + 1):
            try:
                self.run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                         "--encoding=UTF8", "--no-instructions")
                return
            except subprocess.CalledProcessError as err:
                if err.returncode >= 0 or attempt == tries:
                    raise
                shutil.rmtree(self.data, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL the postmaster and every server process at once, as a power cut would:
        no shutdown checkpoint, no goodbye to the clients or the standby."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        children = [int(p.name) for p in Path("/proc").iterdir()
                    if p.name.isdigit() and _parent_of(p) == pid]
        for victim in (pid, *children):
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        try:
            self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            if self._own_root:
                shutil.rmtree(self.root, ignore_errors=True)
