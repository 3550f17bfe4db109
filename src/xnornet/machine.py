"""What machine a result was measured on, and how many threads "all" means here.

The fingerprint is what the machine stage writes to metrics/machine.json: every speed result
depends on it, so DVC reruns the speed stages when it changes, and only then.
"""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

CPUINFO_KEYS = {
    "model name": "cpu",
    "cpu family": "cpu_family",
    "model": "cpu_model",
    "stepping": "cpu_stepping",
}


def cpu_fields() -> dict[str, str]:
    """Model name, family, model and stepping of the first processor in /proc/cpuinfo: the name
    alone ("AMD EPYC") does not tell a Zen 2 from a Zen 4."""
    fields = {"cpu": platform.processor() or "unknown"}
    try:
        first = Path("/proc/cpuinfo").read_text().split("\n\n", 1)[0]
    except OSError:
        return fields
    for line in first.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in CPUINFO_KEYS:
            fields[CPUINFO_KEYS[key.strip()]] = value.strip()
    return fields


def usable_cores() -> int:
    """The cores this process may use (its affinity mask), not the machine's total."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, object]:
    """CPU, cores and the versions of the libraries that run the float baseline."""
    cpu = cpu_fields()["cpu"]
    return {"cpu": cpu, "cores": usable_cores(), "torch": package_version("torch"),
            "numpy": package_version("numpy")}  # fmt: skip


def fingerprint() -> dict[str, object]:
    """Everything a speed result depends on; stable across runs on one machine (no time, no load)."""
    from xnornet.kernels import kernel_isa  # builds on the compiled kernel: imported only here

    return {**cpu_fields(), "kernel_isa": kernel_isa(), "cores": usable_cores(),
            "torch": package_version("torch"), "numpy": package_version("numpy"),
            "python": platform.python_version()}  # fmt: skip


def resolve_thread_counts(wanted) -> list[int]:
    cores = usable_cores()
    counts = sorted({int(cores) if t == "all" else int(t) for t in wanted})
    if not counts or counts[0] < 1:
        raise ValueError(f"bench.threads must be positive integers or 'all', got {list(wanted)}")
    return counts
