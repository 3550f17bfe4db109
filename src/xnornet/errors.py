"""One exception type for bad input, and how any failure reaches a user: one line on stderr, the
traceback in a log file.

A stage that fails prints ``error: <stage>: <what> (traceback: <log>)`` and exits 1. The line
names the input and what was expected; the log (``.xnornet/error.log`` in the directory the
command ran in, or ``$XNORNET_ERROR_LOG``) keeps the full traceback, so a real bug stays findable
without a screen of frames in front of every user. ``HYDRA_FULL_ERROR=1`` shows it directly.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import os
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn


class XnornetError(Exception):
    """Bad input or a failed check: the message names the file or parameter and what was wrong."""


ERROR_LOG_ENV = "XNORNET_ERROR_LOG"
DEFAULT_ERROR_LOG = Path(".xnornet") / "error.log"
MAX_LOG_BYTES = 1 << 20  # the log is rotated to error.log.1 beyond this, so it never grows unbounded
MAX_LINE = 600  # characters of the one line; the log has the rest

# errno → what the user should have given instead
_OS_EXPECTED = {
    errno.ENOSPC: "no space left on the device; free some space",
    errno.EDQUOT: "disk quota exceeded; free some space",
    errno.EROFS: "expected a writable location, it is on a read-only file system",
    errno.EACCES: "permission denied; expected a location this user can write",
    errno.EPERM: "operation not permitted; expected a location this user can write",
    errno.ENOTDIR: "a path component is a file; expected a directory",
    errno.EISDIR: "is a directory; expected a file",
    errno.ENOENT: "no such file or directory",
}


def full_errors() -> bool:
    """The user asked for full tracebacks (Hydra's own switch)."""
    return os.environ.get("HYDRA_FULL_ERROR", "") in ("1", "true", "True")


def one_line(text: str) -> str:
    """``text`` with its line breaks and runs of spaces collapsed, cut to MAX_LINE characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= MAX_LINE else flat[: MAX_LINE - 1] + "…"


def _os_error(e: OSError) -> str:
    where = " → ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
    what = _OS_EXPECTED.get(e.errno or -1, e.strerror or str(e))
    return f"{where}: {what}" if where else f"{what} ({e})"


def _config_error(e: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line messages (and the OmegaConf error behind a Hydra one) as
    one: without the config search path and ``object_type=``, keeping ``full_key`` (the key)."""
    parts: list[str] = []
    while e is not None and type(e).__module__.split(".")[0] in ("hydra", "omegaconf"):
        text = str(e).split("Config search path")[0]
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "object_type=" not in ln]
        line = " ".join(lines).rstrip(".")
        if line and not any(line in p for p in parts):
            parts.append(line)
        e = e.__cause__
    return "; ".join(parts) or "invalid configuration"


def describe(e: BaseException) -> str:
    """One line saying what was wrong: the message of the error classes bad input raises (ours,
    the OS's, Hydra's and OmegaConf's config errors, MLflow's), else the type and message."""
    module = type(e).__module__.split(".")[0]
    if isinstance(e, XnornetError):
        text = str(e)
    elif module in ("hydra", "omegaconf"):  # before OSError: Hydra's MissingConfigException is one
        text = _config_error(e)
    elif isinstance(e, OSError):
        text = _os_error(e)
    elif module == "mlflow":
        text = f"MLflow: {getattr(e, 'message', e)} (check logger.tracking_uri)"
    elif isinstance(e, ValueError | TypeError | KeyError):
        text = f"{type(e).__name__}: {e}"
    else:
        text = f"internal error {type(e).__name__}: {e}"
    return one_line(text)


def error_log_path() -> Path:
    return Path(os.environ.get(ERROR_LOG_ENV) or DEFAULT_ERROR_LOG)


def log_traceback(stage: str, e: BaseException) -> Path | None:
    """Append the full traceback to the error log (the system temp dir if that cannot be written);
    the path written, or None if nowhere could be."""
    entry = (
        f"=== {datetime.datetime.now().isoformat(timespec='seconds')} xnornet {stage} "
        f"(pid {os.getpid()}): {' '.join(sys.argv[1:])}\n" + "".join(traceback.format_exception(e))
    )
    for path in (error_log_path(), Path(tempfile.gettempdir()) / "xnornet-error.log"):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_file() and path.stat().st_size > MAX_LOG_BYTES:
                os.replace(path, path.with_name(path.name + ".1"))
            with open(
                path, "a", encoding="utf-8"
            ) as f:  # one write: parallel sweep jobs interleave whole entries
                f.write(entry)
            return path
        except OSError:
            continue
    return None


def report_failure(stage: str, e: BaseException) -> NoReturn:
    """Print the one line for ``e`` (the traceback to the log) and exit with status 1."""
    if isinstance(e, BrokenPipeError):  # `xnornet train --help | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        sys.exit(141)  # 128 + SIGPIPE, as a shell reports a command killed by a closed pipe
    log = log_traceback(stage, e)
    where = f" (traceback: {log})" if log is not None else ""
    # "\r": the line starts at column 0 even after a progress bar that left the cursor mid-line
    clear = "\r\033[K" if sys.stderr.isatty() else "\r"
    print(f"{clear}error: {stage}: {describe(e)}{where}", file=sys.stderr, flush=True)
    sys.exit(1)


@contextlib.contextmanager
def error_boundary(stage: str, tracebacks: bool, explain=lambda e: e) -> Iterator[None]:
    """Where a stage's failures become one line and exit 1 (``report_failure``): any Exception
    raised inside, given a clearer form by ``explain`` first; with ``tracebacks`` (the user's
    HYDRA_FULL_ERROR) it propagates as it is. KeyboardInterrupt and SystemExit pass through."""
    try:
        yield
    except Exception as e:
        if tracebacks:
            raise
        report_failure(stage, explain(e))
