"""One writer at a time for each output of a command: a second command writing the same file or folder is refused
at once, before it loads or computes anything, naming the process that holds it.

The lock is an advisory ``flock`` on a hidden file beside the output, ``.NAME.lock``: not on the output itself,
which the commands replace by renaming a finished temporary file over it (a lock held on the old file would not
hold the new one). The kernel drops the lock when its process ends, however it ends (SIGKILL included), so a
killed run never leaves its output locked; the lock file is removed on release. POSIX systems only (``fcntl``).

Standard library only: the command line imports it before torch.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from types import TracebackType


class OutputBusy(ValueError):
    """The output is locked by another process (a ``ValueError``: the command line reports it as one line)."""


class OutputLock:
    """An exclusive lock on ``path`` (a file or a folder, existing or not) for the command ``command``.

    ``flag`` names the argument that gave the path in messages (``--out``, ``--output_path``, ``OUT_DIR``).
    Use as a context manager, or call :meth:`acquire` and :meth:`release`."""

    def __init__(self, path: str | os.PathLike, command: str, flag: str = "--out") -> None:
        self.path = Path(path).expanduser()
        self.command, self.flag = command, flag
        self.lock_path = self.path.parent / f".{self.path.name}.lock"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> OutputLock:
        """Take the lock, or raise :class:`OutputBusy` when another process holds it (ValueError when the lock file
        cannot be made)."""
        if self._fd is not None:
            return self
        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ValueError(
                f"{self.flag} {self.path}: cannot write in {self.lock_path.parent} ({_reason(err)})"
            ) from None
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise ValueError(
                    f"{self.flag} {self.path}: cannot write in {self.lock_path.parent} ({_reason(err)})"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                holder = _read_holder(fd)
                os.close(fd)
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise ValueError(
                        f"{self.flag} {self.path}: cannot lock {self.lock_path} ({_reason(err)})"
                    ) from None
                raise OutputBusy(
                    f"{self.flag} {self.path} is being written by another {holder or 'process'} right now (lock "
                    f"{self.lock_path}); allowed: one writer at a time: wait until it has finished, or give another "
                    f"{self.flag}"
                ) from None
            # A holder removes the file when it releases: a lock taken on a removed file locks nothing.
            try:
                current = os.path.samestat(os.fstat(fd), os.stat(self.lock_path))
            except FileNotFoundError:
                current = False
            if current:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"`{self.command}` (process {os.getpid()})\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock and remove its file (a no-op when not held)."""
        if self._fd is None:
            return
        try:
            self.lock_path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()

    def __del__(self) -> None:
        if self._fd is not None:
            os.close(self._fd)


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 256).decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _reason(err: OSError) -> str:
    return err.strerror or str(err)
