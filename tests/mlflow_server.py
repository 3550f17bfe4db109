"""A real `mlflow server` on 127.0.0.1 for the tests of tracking faults, and the cheapest real stage
that opens an MLflow run (fetch from a file:// mirror) as a command to start many of at once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from conftest import make_idx_mirror

MLFLOW = str(Path(sys.executable).parent / "mlflow")
# no background job runner (a third process to start on a busy test machine; no test uses it)
SERVER_ENV = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class MlflowServer:
    """``mlflow server`` with its own sqlite store and artifact folder under ``root``; killed
    outright (SIGKILL to its process group: it forks workers) and restarted on the same port."""

    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        cmd = [MLFLOW, "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{self.root}/server.db",
               "--artifacts-destination", str(self.root / "artifacts")]  # fmt: skip
        with open(self.root / "server.log", "ab") as log:  # the server keeps its own copy of the file
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=SERVER_ENV,
                                         start_new_session=True)  # fmt: skip
        wait_until_answering(self.proc, f"{self.uri}/health", self.root / "server.log", timeout)

    def kill(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        while True:  # its workers die with the group; the port closes once they are gone
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.1)


def wait_until_answering(proc: subprocess.Popen, url: str, log: Path, timeout: float) -> None:
    """Return once ``url`` answers 200; raise with the log's tail if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


def fetch_command(mirror: Path, data_dir: Path, uri: str, artifacts: Path) -> list[str]:
    """`python -m xnornet fetch` from a file:// mirror (written on first use) into ``data_dir``."""
    if not (mirror / "mirror.args").is_file():
        mirror.mkdir(parents=True, exist_ok=True)
        idx = make_idx_mirror(mirror)["idx"]
        args = ["data.source=idx", f"data.idx.base_url={idx['base_url']}"]
        args += [f"data.idx.files.{key}.md5={entry['md5']}" for key, entry in idx["files"].items()]
        (mirror / "mirror.args").write_text("\n".join(args))
    return [sys.executable, "-m", "xnornet", "fetch", *(mirror / "mirror.args").read_text().split("\n"),
            f"paths.data_dir={data_dir}", f"logger.tracking_uri={uri}",
            f"logger.artifact_dir={artifacts}"]  # fmt: skip


def start_together(commands: list[list[str]], cwd: Path) -> list[subprocess.CompletedProcess]:
    """Start every command at once (nothing awaited in between), then wait for them all."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    procs = [subprocess.Popen(c, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in commands]  # fmt: skip
    done = []
    for p, c in zip(procs, commands, strict=True):
        out, err = p.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(c, p.returncode, out, err))
    return done
