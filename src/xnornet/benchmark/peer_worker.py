"""``python -m xnornet.benchmark.peer_worker JOB.json RESULT.json``: one peer library timed alone.

OpenVINO's thread pool (TBB) and the OpenMP pools of torch and of the kernel starve each other in
one process at more than one thread (timing OpenVINO beside them made torch ~4× and the kernel up
to 48× slower), so every peer runs here, in a process of its own, while the stage's process waits
idle. The job (JSON) says what to build — layer shapes from a seed, or networks from files the
stage saved — and the worker builds, checks each model against its reference, times it and writes
``{"results": [...]}``, ``{"skipped": reason}`` (OpenVINO not installed) or ``{"error": line}``
(a failed check: no time is reported for a wrong answer).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

from xnornet.errors import XnornetError

# the packages each library's jobs need: without them the worker reports "skipped", not a crash
PACKAGES = {"torch": (), "openvino": ("openvino",), "openvino+nncf": ("openvino", "nncf")}


def run_job(job: dict) -> dict:
    packages = PACKAGES[job["library"]]
    if packages:
        from xnornet.peers import unavailable_reason

        reason = unavailable_reason(packages)
        if reason is not None:
            return {"skipped": reason}
    if job["task"] == "layer":
        from xnornet.benchmark.peer_layers import layer_job

        return {"results": layer_job(job)}
    from xnornet.benchmark.peer_networks import network_job

    rows, skipped = network_job(job)
    return {"results": rows, "skipped_runtimes": skipped}


def main(argv: list[str] | None = None) -> int:
    job_path, result_path = (argv if argv is not None else sys.argv[1:])[:2]
    warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*are deprecated")
    try:
        result = run_job(json.loads(Path(job_path).read_text()))
    except (XnornetError, ValueError, KeyError, RuntimeError) as e:
        result = {"error": f"{type(e).__name__}: {e}" if not isinstance(e, XnornetError) else str(e)}
    Path(result_path).write_text(json.dumps(result))
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
