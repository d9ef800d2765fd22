"""One fit's hold on a file or a folder: lock files that name their holder."""

from __future__ import annotations

import errno
import hashlib
import os
import socket
from types import ModuleType
from typing import Self

from ._files import mlp_io

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows: exclusive creation instead
    fcntl = None


class FileLock:
    """One fit's hold on something (a backup folder, a log): the lock file ``path``,
    locked (``flock``, which the system releases when the holder dies, so a killed run's
    lock is taken over at once), naming the holder (``pid host``, then the holder's
    ``record``). Where ``flock`` is missing, the file is created exclusively (``O_EXCL``)
    and a lock of a process of this machine that no longer runs is taken over."""

    RELEASED = "released"  # the first line of a lock file kept for its record

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None
        self.mark = ""

    def acquire(self, record: str = "") -> Self:
        for _ in range(20):  # another run may remove the file between open and lock
            fd = self._try_flock() if fcntl is not None else self._try_exclusive()
            if fd is not None:
                os.write(fd, f"{os.getpid()} {socket.gethostname()}\n{record}\n".encode())
                self.fd, self.mark = fd, record
                return self
        raise self._in_use()

    def _try_flock(self) -> int | None:
        if fcntl is None:
            return self._try_exclusive()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise self._in_use() from None
            raise
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            same = False
        if not same:  # the holder removed the file as we opened it: try again
            os.close(fd)
            return None
        os.ftruncate(fd, 0)
        return fd

    def _try_exclusive(self) -> int | None:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            lines, (pid, host) = self._lines(), self._holder()
            if lines[:1] != [self.RELEASED] and (host != socket.gethostname() or pid is None
                                                 or mlp_io().process_alive(pid)):
                raise self._in_use() from None
        try:  # the lock of a process that died, or let go: take it over
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        return None

    def _lines(self) -> list[str]:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as fh:
                return fh.read(400).splitlines()
        except OSError:
            return []

    def _holder(self) -> tuple[int | None, str]:
        lines = self._lines()
        pid, _, host = (lines[0] if lines else "").strip().partition(" ")
        try:
            return int(pid), host
        except ValueError:
            return None, ""

    def record(self) -> str:
        """What the last holder recorded (read before `acquire`, which replaces it)."""
        lines = self._lines()
        return lines[1].strip() if len(lines) > 1 else ""

    def _who(self) -> str:
        pid, host = self._holder()
        return f"process {pid} on {host or 'an unknown machine'}" if pid else "another process"

    def _in_use(self) -> RuntimeError:
        return RuntimeError(f"{self.path!r} is locked by {self._who()}")

    def release(self, keep: bool = False) -> None:
        """Let go; remove the lock file first (no one locks a removed file), unless
        ``keep``: its record stays for the holder's next run to read."""
        if self.fd is None:
            return
        if keep:  # free to take (also where the file itself is the lock), with its record
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{self.RELEASED}\n{self.mark}\n".encode(), 0)
        else:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        os.close(self.fd)
        self.fd = None


class FolderLock(FileLock):
    """A fit's hold on a backup folder: the file `NAME` in it."""

    NAME = ".mlp-backup.lock"

    def __init__(self, folder: str) -> None:
        super().__init__(os.path.join(folder, self.NAME))
        self.folder = folder

    def _in_use(self) -> RuntimeError:
        return RuntimeError(f"BackupAndRestore: the folder {self.folder!r} is in use by another "
                            f"fit ({self._who()}; lock file {self.path!r}): two runs cannot "
                            f"share a backup folder. Give each run its own directory, or wait "
                            f"for the other run to end")


class LogLock(FileLock):
    """A fit's hold on a log file (whatever links lead to it): ``.NAME.lock`` beside it."""

    def __init__(self, shown: str, target: str) -> None:
        folder, name = os.path.split(target)
        lock = f".{name}.lock"
        if len(os.fsencode(lock)) > 200:  # the log's name is near the file system's limit
            lock = f".mlp-log-{hashlib.blake2b(os.fsencode(name), digest_size=8).hexdigest()}.lock"
        super().__init__(os.path.join(folder, lock))
        self.shown = shown

    def _in_use(self) -> RuntimeError:
        return RuntimeError(f"CSVLogger: the log {self.shown!r} is in use by another fit "
                            f"({self._who()}; lock file {self.path!r}): two fits, or two "
                            f"loggers of one fit, cannot write one log. Give each its own "
                            f"path, or wait for the other fit to end")
