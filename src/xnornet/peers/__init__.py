"""The x86 peers (OpenVINO fp32, int8 through NNCF, and binary), behind the optional ``peers`` extra.

Nothing here imports OpenVINO or NNCF at module import: a checkout installed without the extra
still runs every other stage, and code that wants a peer asks ``unavailable_reason()`` first,
then prints its one line (``skip_line``) and leaves the peer rows out, or raises it
(``require``) where the peer is the whole point of the command.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from xnornet.errors import XnornetError

INSTALL_HINT = "pip install 'xnornet[peers]'"


def unavailable_reason(packages: tuple[str, ...] = ("openvino",)) -> str | None:
    """Why the peers cannot run here (a package missing or broken), or None when they can."""
    for name in packages:
        try:
            importlib.import_module(name)
        except ImportError as e:  # a missing wheel, or one whose native library does not load
            return f"{name} is not importable ({e}); install the peers extra: {INSTALL_HINT}"
    return None


def openvino_or_none() -> ModuleType | None:
    """The openvino module, or None without the peers extra."""
    return None if unavailable_reason() else importlib.import_module("openvino")


def skip_line(what: str, packages: tuple[str, ...] = ("openvino",)) -> str | None:
    """The one line a stage prints when it leaves ``what`` out, or None when nothing is skipped."""
    reason = unavailable_reason(packages)
    return None if reason is None else f"{what} skipped: {reason}"


def require(what: str, packages: tuple[str, ...] = ("openvino",)) -> None:
    """Raise one line naming ``what`` and the missing package when a command cannot do without it."""
    reason = unavailable_reason(packages)
    if reason is not None:
        raise XnornetError(f"{what} needs the OpenVINO peers: {reason}")
