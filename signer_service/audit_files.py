"""The audit directory, opened once: every file in it is opened relative to that descriptor,
never through a symbolic link, and only when it is a regular file with one link.

Whoever can plant files beside the audit log must not be able to make the signer write,
truncate or block on anything else: a planted symbolic link is refused (O_NOFOLLOW), a
planted hard link is refused (st_nlink), a FIFO or device is refused (opened non-blocking,
then checked), and a file the signer creates new gets an unpredictable name and O_EXCL, so
nothing planted in advance can stand in for it. At start the directory itself must belong
to the signer's user and be writable by nobody else.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_MODE = 0o600


class AuditFileError(Exception):
    """A file in the audit directory is not what the signer writes (planted or tampered)."""


class AuditDirectoryError(Exception):
    """The audit directory is unsafe to write in (owner, mode) or cannot be opened."""


class AuditDir:
    def __init__(self, path: Path, *, check_owner: bool = True) -> None:
        """Open `path` (a directory, not a link to one). With `check_owner` (the signer at
        start) it must belong to this process's user and not be group- or other-writable;
        signerctl reads copies anywhere and skips that check."""
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as err:
            reason = "is a symbolic link" if err.errno == errno.ELOOP else \
                (err.strerror or type(err).__name__)
            raise AuditDirectoryError(f"audit directory {path} cannot be opened: {reason}") \
                from None
        if check_owner:
            try:
                self._check_owner()
            except AuditDirectoryError:
                os.close(self.fd)
                raise

    def _check_owner(self) -> None:
        st = os.fstat(self.fd)
        if st.st_uid != os.geteuid():
            raise AuditDirectoryError(
                f"audit directory {self.path} belongs to uid {st.st_uid}, not to the signer's "
                f"user (uid {os.geteuid()}): chown it to the signer's user, mode 0700")
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise AuditDirectoryError(
                f"audit directory {self.path} is writable by group or others (mode "
                f"{stat.S_IMODE(st.st_mode):04o}): chmod 0700 it")

    def _checked(self, fd: int, name: str) -> int:
        st = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(st.st_mode):
            problem = "is not a regular file"
        elif st.st_nlink != 1:
            problem = f"has {st.st_nlink} hard links"
        if problem is not None:
            os.close(fd)
            raise AuditFileError(f"audit file {name} {problem}: refusing to use it")
        return fd

    def _open(self, name: str, flags: int) -> int:
        try:
            fd = os.open(name, flags, _CREATE_MODE, dir_fd=self.fd)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise AuditFileError(f"audit file {name} is a symbolic link: refusing to "
                                     "follow it") from None
            if err.errno == errno.ENXIO:  # a FIFO without a reader, opened non-blocking
                raise AuditFileError(f"audit file {name} is not a regular file: refusing "
                                     "to use it") from None
            raise
        return self._checked(fd, name)

    def read(self, name: str) -> bytes | None:
        """The whole file, or None when there is none."""
        try:
            fd = self._open(name, _READ)
        except FileNotFoundError:
            return None
        try:
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def open_for_writing(self, name: str, *, append: bool) -> int:
        """A descriptor on `name`, created (0600) when missing: the log (append) or the
        checkpoint (written in place)."""
        # O_NONBLOCK: a planted FIFO must not block the open (it is then refused).
        flags = os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | \
            (os.O_WRONLY | os.O_APPEND if append else os.O_RDWR)
        existed = self._exists(name)
        fd = self._open(name, flags)
        if not existed:
            self.sync()  # the new name itself must survive a crash
        return fd

    def _exists(self, name: str) -> bool:
        try:
            os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def create_new(self, prefix: str, data: bytes) -> str:
        """A new file `prefix` + random suffix holding `data` (fsync'd); its name."""
        name = f"{prefix}-{secrets.token_hex(8)}"
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     _CREATE_MODE, dir_fd=self.fd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        self.sync()
        return name

    def sync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
