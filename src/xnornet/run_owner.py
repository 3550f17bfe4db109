"""Which process owns an MLflow run, so that a run whose process was killed does not stay RUNNING.

A stage killed outright (SIGKILL, the OOM killer, a closed laptop) cannot end its run, and MLflow
would show it RUNNING forever. Every run is tagged with its owner's process id and host name when
it opens; when the next run opens in the same experiment, each RUNNING run owned by a process on
this host that no longer exists is ended as KILLED. A run owned on another host is left alone:
its process cannot be seen from here.
"""

from __future__ import annotations

import os
import socket

from mlflow.tracking import MlflowClient

OWNER_PID = "xnornet.owner_pid"
OWNER_HOST = "xnornet.owner_host"


def owner_tags() -> dict[str, str]:
    return {OWNER_PID: str(os.getpid()), OWNER_HOST: socket.gethostname()}


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process on this host (another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def end_orphaned_runs(client: MlflowClient, experiment_id: str, keep: str | None = None) -> list[str]:
    """End as KILLED every RUNNING run of the experiment whose owner on this host is gone, except
    ``keep`` (a run about to be resumed); the ids ended."""
    host = socket.gethostname().replace("'", "")
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"attributes.status = 'RUNNING' and tags.`{OWNER_HOST}` = '{host}'",
        max_results=1000,
    )
    ended = []
    for run in runs:
        pid = run.data.tags.get(OWNER_PID, "")
        if run.info.run_id == keep or not pid.isdigit() or process_alive(int(pid)):
            continue
        client.set_tag(run.info.run_id, "xnornet.ended_by", f"the next run: owner process {pid} was gone")
        client.set_terminated(run.info.run_id, "KILLED")
        ended.append(run.info.run_id)
    return ended
