"""File helpers every stage shares: checksums, downloads, writes that leave no partial output."""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from xnornet.errors import XnornetError


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def content_digest(path: Path | str) -> str:
    """SHA-256 of a file's bytes, or of a folder's relative file names and sizes (a dataset of
    many files, such as an ImageNet tree, is not read whole)."""
    path = Path(path)
    if path.is_file():
        return file_digest(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path)}|{f.stat().st_size}\n".encode())
    return h.hexdigest()


def verify_digest(path: Path, expected: str, algorithm: str = "sha256") -> None:
    """Raise naming the file and both digests when the content is not the pinned one."""
    actual = file_digest(path, algorithm)
    if actual != expected.lower():
        raise XnornetError(
            f"{path.name}: {algorithm} mismatch (expected {expected}, got {actual}); "
            "the download is corrupt, truncated or not the pinned release"
        )


def download(url: str, dest: Path, timeout: float = 60.0) -> Path:
    """Fetch a URL (http(s) or file://) to ``dest``; a network failure names the URL."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(dest, "wb") as f:
            shutil.copyfileobj(r, f)
    except (urllib.error.URLError, OSError, ValueError) as e:
        dest.unlink(missing_ok=True)
        raise XnornetError(f"could not download {url}: {e}") from e
    return dest


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; it replaces ``path`` only if the block succeeds.

    Works for files and directories alike, so a failed stage leaves the old output (or none). What
    is there already is replaced only when it is the same kind of output (``refuse_foreign``): a
    stage never deletes what it did not write. The temporary folder's name holds the writer's
    process id: a process killed outright (SIGKILL, power loss) cannot clean up, so the next write
    of the same path removes what dead writers left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_writers_litter(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", dir=path.parent)) / path.name
    try:
        yield tmp
        if not tmp.exists():
            raise XnornetError(f"internal error: nothing was written for {path}")
        refuse_foreign(path, tmp)
        if path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def refuse_foreign(path: Path, new: Path) -> None:
    """Raise unless ``path`` may be replaced by ``new``: it is absent, or a file replaced by a file,
    or a folder replaced by a folder that rewrites every entry it holds (the stage's own earlier
    output). A packed file's path that names a folder of checkpoints must never delete them."""
    if not os.path.lexists(path):
        return
    if path.is_symlink() and not path.exists():
        problem = "is a symbolic link that does not resolve (a loop or a dangling link)"
    elif new.is_dir():
        if path.is_symlink() or not path.is_dir():
            problem = "is a symbolic link" if path.is_symlink() else "is a file"
        else:
            foreign = sorted(set(os.listdir(path)) - set(os.listdir(new)))
            if not foreign:
                return
            shown = ", ".join(foreign[:3]) + (", …" if len(foreign) > 3 else "")
            problem = f"is a folder holding files this stage does not write ({shown})"
    elif path.is_file():
        return
    else:
        problem = "is a directory" if path.is_dir() else "is not a regular file"
    kind = "folder" if new.is_dir() else "file"
    raise XnornetError(
        f"{path}: {problem}; expected a {kind} this stage writes (nothing was replaced: "
        "move it away or choose another path)"
    )


def remove_dead_writers_litter(path: Path) -> list[Path]:
    """Remove the temporary folders of ``atomic_path(path)`` whose writer process is gone (on this
    host; a live writer's folder is left alone), and return them."""
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*"):
        pid = tmp.name[len(path.name) + 2 :].partition(".")[0]
        if tmp.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def write_csv(rows: list[dict], path: Path) -> None:
    """Rows of equal keys as a CSV with a header, written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_metrics(path: Path, metrics: dict) -> None:
    """The DVC metrics JSON, written atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
