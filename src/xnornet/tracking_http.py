"""How long a stage waits for an MLflow tracking server, and the one line it prints when none answers.

MLflow's own defaults (a 120 s timeout, 7 retries with a backoff doubling from 2 s) turn a stopped
server into four silent minutes of urllib3 retry lines per request. A stage sets tighter defaults
before its first request, through the variables MLflow reads on every request, so a user's own
values still win and the stage's subprocesses (DDP ranks, sweep workers) inherit them:

- ``MLFLOW_HTTP_REQUEST_TIMEOUT=10``: seconds to connect, and between bytes of an answer;
- ``MLFLOW_HTTP_REQUEST_MAX_RETRIES=2``: a blip (a restart, a dropped connection) is retried;
- ``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR=1``: the waits between tries are 0 s and 2 s (+ jitter).

One request thus gives up after at most 3 × 10 s + 3 s ≈ 33 s (a host that drops packets), and
after about 3 s when the port is closed (refused at once). docs/reliability.md says what a stage
does then.
"""

from __future__ import annotations

import os
import re

from xnornet.errors import XnornetError

BOUNDS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "1.0",
}


def bound_requests() -> None:
    """Set the bounds above wherever the user has not set the variable (idempotent)."""
    for name, value in BOUNDS.items():
        os.environ.setdefault(name, value)


def give_up_seconds() -> float:
    """The longest one request to the server can take under the bounds now in force."""

    def value(name: str) -> float:
        return float(os.environ.get(name, BOUNDS[name]))

    timeout, retries = value("MLFLOW_HTTP_REQUEST_TIMEOUT"), int(value("MLFLOW_HTTP_REQUEST_MAX_RETRIES"))
    factor, jitter = value("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"), value("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER")
    waits = sum(min(120.0, factor * 2 ** (n - 1) + jitter) for n in range(2, retries + 1))
    return (retries + 1) * timeout + waits


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


_REASONS = [  # (pattern in the error chain, what to say)
    (r"Connection refused|Errno 111", "connection refused"),
    (r"timed out|Timeout", "no answer before the timeout"),
    (r"not known|nodename nor servname|name resolution|Failed to resolve", "host name not found"),
    (r"Connection reset|Connection aborted|RemoteDisconnected", "connection dropped"),
    (r"CERTIFICATE_VERIFY_FAILED|SSLError", "TLS certificate not accepted"),
    (r"\b(401|403)\b|Unauthorized|Forbidden|PERMISSION_DENIED", "access refused (credentials?)"),
]


def reason(e: BaseException) -> str:
    """A few words for why a request failed, from the whole chain of ``e`` (MLflow wraps the
    requests error, which wraps urllib3's, in its own message)."""
    text, seen = "", e
    while seen is not None:
        text += f" {seen}"
        seen = seen.__cause__ or seen.__context__
    for pattern, words in _REASONS:
        if re.search(pattern, text):
            return words
    message = " ".join(str(getattr(e, "message", e)).split())
    return message[:160]


def unreachable(uri: str, e: BaseException, key: str = "logger.tracking_uri") -> XnornetError:
    """The one line for a tracking store that did not answer: the key, the URI and why."""
    if is_server(uri):
        return XnornetError(
            f"{key}={uri}: the MLflow tracking server did not answer ({reason(e)}; gave up after at "
            f"most {give_up_seconds():.0f} s); expected a running `mlflow server` at that address, or "
            "unset MLFLOW_TRACKING_URI to use the local sqlite store"
        )
    return XnornetError(f"{key}={uri}: the MLflow store could not be opened ({reason(e)})")


def probe(uri: str, key: str = "logger.tracking_uri") -> None:
    """One real request to a tracking server, so that a stage whose server is down, misnamed or
    refusing this user fails before it writes anything, in at most ``give_up_seconds()``."""
    if not is_server(uri):
        return
    bound_requests()
    from mlflow.tracking import MlflowClient

    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except Exception as e:  # requests, urllib3 and MLflow each raise their own types
        raise unreachable(uri, e, key) from e
