"""One builder per cache entry: an advisory ``fcntl.flock`` on ``<entry>.lock``.

The lock file holds the owner's pid (for messages and for ``probe cache verify``). The
kernel drops a flock when its process dies, so a lock can never stay held by a dead
process; what can stay behind is the file, which :func:`stale_locks` finds and
:func:`break_stale_lock` removes. Removing a lock file is only safe while holding its
lock, and a waiter must check after acquiring that the file it locked is still the one
at the path (else it locked a removed file and tries again).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no locking, as before
    fcntl = None

LOCK_SUFFIX = ".lock"
# Locks this process holds, by path. A builder abandoned by an exception (e.g. Ctrl-C in a
# notebook, whose traceback keeps the builder alive) must not block this process's next
# build of the same entry forever: the new lock takes the held one over.
_HELD: dict[str, "EntryLock"] = {}


def lock_path(entry_path: Path) -> Path:
    entry_path = Path(entry_path)
    return entry_path.with_name(entry_path.name + LOCK_SUFFIX)


def _owner(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class EntryLock:
    """Exclusive lock of one entry. ``acquire`` waits (printing once who holds it)."""

    def __init__(self, entry_path: Path):
        self.path = lock_path(entry_path)
        self._fd: int | None = None

    def acquire(self, *, wait: bool = True) -> bool:
        if fcntl is None:
            return True
        previous = _HELD.get(str(self.path))
        if previous is not None and previous._fd is not None:
            self._fd, previous._fd = previous._fd, None
            _HELD[str(self.path)] = self
            return True
        told = False
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    if not wait:
                        os.close(fd)
                        return False
                    if not told:
                        who = _owner(self.path)
                        print(f"probe: waiting for {'process ' + str(who) if who else 'another process'} "
                              f"building {self.path.with_suffix('').name} (this run reads its result)",
                              file=sys.stderr)
                        told = True
                    fcntl.flock(fd, fcntl.LOCK_EX)
                # The file may have been removed (a released lock) while we waited for it.
                try:
                    same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
                except FileNotFoundError:
                    same = False
                if not same:
                    os.close(fd)
                    time.sleep(0.01)
                    continue
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
                _HELD[str(self.path)] = self
                return True
            except BaseException:
                if self._fd != fd:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
                raise

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if _HELD.get(str(self.path)) is self:
            del _HELD[str(self.path)]
        try:
            os.unlink(self.path)  # while still holding it: see the module docstring
        except OSError:
            pass
        os.close(fd)  # drops the flock

    @property
    def held(self) -> bool:
        return self._fd is not None


def stale_locks(folder: Path) -> list[Path]:
    """Lock files in ``folder`` that no live process holds (left by a killed process)."""
    out = []
    if fcntl is None:
        return out
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return out
    for name in names:
        if not name.endswith(LOCK_SUFFIX):
            continue
        path = Path(folder) / name
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # held: a build is running
        finally:
            os.close(fd)
        out.append(path)
    return out


def break_stale_lock(path: Path) -> bool:
    """Remove a lock file nobody holds; False if a process holds it (or it is gone)."""
    lock = EntryLock(Path(path).with_suffix(""))
    lock.path = Path(path)
    if not Path(path).exists() or not lock.acquire(wait=False):
        return False
    lock.release()
    return True
