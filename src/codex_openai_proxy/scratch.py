"""Scratch folders: each run's empty working directory, inside a folder of the proxy's own.

A proxy keeps its runs' folders in one folder of its own in the temporary directory,
`codex-openai-proxy-<pid>-<random>`, holding a lock on the `.lock` file in it for as long as
it lives. The kernel drops that lock when the process ends, however it ends, so a folder whose
lock can be taken belongs to a proxy that is gone: `sweep_stale` removes those at start-up.
(A proxy killed outright has its folder removed by its sentinel at once; the sweep is for when
the sentinel went too, such as a reboot or the whole service killed.)

Folders without a `.lock` are never touched: an older version's run folders, which may belong
to a proxy still running.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile

log = logging.getLogger(__name__)

PREFIX = "codex-openai-proxy-"
LOCK_NAME = ".lock"
#: A folder being set up, before its lock is held; never a sweep's business.
STAGING_PREFIX = "." + PREFIX + "new-"


class ScratchRoot:
    """This proxy's folder for its runs' folders, locked while the proxy lives."""

    def __init__(self, path: str, lock_fd: int) -> None:
        self.path = path
        self._lock_fd: int | None = lock_fd

    @classmethod
    def create(cls, parent: str | None = None) -> ScratchRoot:
        parent = parent or tempfile.gettempdir()
        # Set up under a name the sweep ignores, and renamed once locked: no other proxy's
        # sweep can see it unlocked.
        staging = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=parent)
        lock_fd = os.open(os.path.join(staging, LOCK_NAME),
                          os.O_CREAT | os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path = os.path.join(parent, f"{PREFIX}{os.getpid()}-"
                                    f"{os.path.basename(staging)[len(STAGING_PREFIX):]}")
        os.rename(staging, path)
        return cls(path, lock_fd)

    def new_run_folder(self) -> str:
        """An empty folder for one run; the caller removes it with `shutil.rmtree`."""
        return tempfile.mkdtemp(prefix="run-", dir=self.path)

    def remove(self) -> None:
        _remove(self.path)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _remove(path: str) -> None:
    # The lock file goes last, so that a removal cut short still leaves a folder the next
    # sweep recognises.
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(path):
            if entry.name != LOCK_NAME:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
    shutil.rmtree(path, ignore_errors=True)


def sweep_stale(parent: str | None = None) -> list[str]:
    """Remove the scratch folders of proxies that are no longer running; their paths."""
    parent = parent or tempfile.gettempdir()
    removed = []
    with os.scandir(parent) as entries:
        candidates = [entry for entry in entries if entry.name.startswith(PREFIX)
                      and entry.is_dir(follow_symlinks=False)
                      and entry.stat(follow_symlinks=False).st_uid == os.getuid()]
    for entry in candidates:
        try:
            lock_fd = os.open(os.path.join(entry.path, LOCK_NAME),
                              os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue  # no lock: not a folder of this version's, or being removed already
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # its proxy is alive
        else:
            _remove(entry.path)
            removed.append(entry.path)
        finally:
            os.close(lock_fd)
    if removed:
        log.info("removed %d scratch folder(s) left by proxies that are gone", len(removed))
    return removed
