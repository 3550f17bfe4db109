"""One creator for a fresh local MLflow store: a lock file beside the sqlite database.

Several runs started at once on a clone with no ``mlflow.db`` yet (two terminals, ``dvc exp run``
queue workers, a sweep) would each run MLflow's table creation and migrations on the same new
file, and all but one fail with ``table … already exists`` or an alembic error. Whoever takes the
lock first creates the store and the experiment; the others wait, then find them there.

The lock is ``fcntl.lockf`` (POSIX record locks), which NFS and other shared file systems honour
across hosts, unlike ``flock`` on some of them; the kernel drops it when its holder dies, so a
killed run never leaves the store locked. A tracking server needs no lock: it creates its own
store at start, and the race to create the experiment there is settled by the server
(xnornet.tracking.ensure_experiment).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from xnornet.errors import XnornetError

WAIT_SECONDS = 300.0  # creating a store takes seconds; minutes only when many runs queue at once


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI; None for any other store."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None


def lock_file(db: Path) -> Path:
    return db.with_name(db.name + ".lock")


@contextlib.contextmanager
def store_lock(uri: str, wait: float = WAIT_SECONDS) -> Iterator[None]:
    """Hold the store's lock for the block (no lock for a store that is not a sqlite file)."""
    db = sqlite_file(uri)
    if db is None:
        yield
        return
    path = lock_file(db)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:  # EAGAIN/EACCES: another run holds it
                if time.monotonic() > deadline:
                    raise XnornetError(
                        f"{path}: another process held this MLflow store's lock for over {wait:.0f} s; "
                        "expected it to be released (a hung run on this store? stop it, then rerun)"
                    ) from e
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
