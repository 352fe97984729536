"""Inter-process locks on cache folders, so two jobs never build one sample store together.

A folder's lock is an operating-system file lock (``filelock``: ``flock`` on Unix) on a file
outside the folder, ``<cache>/locks/<name>.lock``: deleting or rebuilding the folder never
deletes its lock, the folder of stores holds nothing but stores, and the kernel releases the
lock when its holder exits, even when the holder is killed. A lock is reentrant within a thread
(one ``FileLock`` object per lock file and process), so a function that holds it can call
another that takes it again. Code that tidies a folder asks :func:`holds_lock` first.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from qpebench.errors import StoreError
from qpebench.names import confined

#: The lock of every folder this process has locked, by resolved folder path.
_LOCKS: dict[Path, FileLock] = {}


def cache_lock_file(cache_dir: str | os.PathLike[str], name: str) -> Path:
    """The lock file of cache entry ``name`` (a store folder's name): ``<cache>/locks/<name>.lock``.

    Raises:
        ConfigError: ``name`` would put the lock file outside ``cache_dir``.
    """
    return confined(cache_dir, "locks", f"{name}.lock")


@contextmanager
def folder_lock(
    folder: str | os.PathLike[str],
    lock_file: str | os.PathLike[str],
    *,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold ``lock_file`` for the block, as the lock of ``folder``; wait while another holds it.

    Args:
        folder: The folder the lock guards (it need not exist); :func:`holds_lock` reports it
            and everything inside it as locked while the block runs.
        lock_file: The lock file, outside ``folder``; created with its parent folders.
        on_wait: Called once with a line saying what is waited for, if another process (or
            thread) holds the lock.

    Raises:
        StoreError: The lock file cannot be created or opened (it is named, with the reason).
    """
    lock_file = Path(lock_file)
    try:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(lock_file, is_singleton=True)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if on_wait is not None:
                on_wait(f"{folder}: another job holds {lock_file}; waiting for it to finish")
            lock.acquire()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise StoreError(f"{lock_file}: cannot take the lock ({reason})") from None
    _LOCKS[Path(folder).resolve()] = lock
    try:
        yield
    finally:
        lock.release()


def holds_lock(path: str | os.PathLike[str]) -> bool:
    """Whether this thread holds the lock of ``path`` or of a folder above it."""
    path = Path(path).resolve()
    return any(lock.is_locked for folder in (path, *path.parents) if (lock := _LOCKS.get(folder)))
