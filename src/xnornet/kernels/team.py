"""How the kernel's thread teams react to a busy machine (kernels/xn_team.h).

A parallel kernel call is only as fast as its slowest thread: with another process on one of
the cores, a thread sharing that core waits for the scheduler's next slice and the call waits at
the join. The kernel therefore hands out its work in claimed chunks and judges each team call
after it: one that was not clearly faster than one thread would have been makes the calls after
it run on one thread for a while, a while that grows while the machine stays busy. This module
is the switch and the counters, for tests and benchmarks; users need neither.

Examples:
    >>> with fixed_teams():
    ...     team_adaptive()
    False
    >>> team_adaptive()
    True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from xnornet.kernels import _xnor

__all__ = ["fixed_teams", "reset_teams", "team_adaptive", "team_counts", "team_judgement", "team_policy"]


def team_adaptive() -> bool:
    """Whether held-up team calls make the next ones run on one thread (the default)."""
    return _xnor.team_adaptive()


def team_counts() -> dict[str, int]:
    """Since the last reset: team calls, how many were held up, and calls run on one thread
    because an earlier one was (``team_calls``, ``held_up``, ``ran_alone``)."""
    return {k: int(v) for k, v in _xnor.team_counts().items()}


def team_judgement(wall_ns: int, alone_ns: float, streak: int, window_ns: int) -> int:
    """The back-off in ns that one team call calls for (0: it was not held up), from its wall
    time, one unhindered thread's estimated time, the healthy team calls since the last held-up
    one and the last back-off: the kernel's own decision, exposed so that it is tested as a table."""
    return int(_xnor.team_judgement(wall_ns, alone_ns, streak, window_ns))


def team_policy() -> dict[str, int]:
    """The policy's constants: min_ns, max_ns (back-off bounds), slack_ns (what a call may lose
    before it counts as held up), streak (healthy calls after which a held-up one is news), cost."""
    return {k: int(v) for k, v in _xnor.team_policy().items()}


def reset_teams() -> None:
    """Forget the learned back-off (the next call gets every thread asked for) and the counts."""
    _xnor.team_reset()


@contextmanager
def fixed_teams() -> Iterator[None]:
    """Every call inside runs with the threads it asks for, held up or not: what a test of the
    threaded paths needs, and the behaviour before the back-off, for comparisons."""
    before = _xnor.team_adaptive()
    _xnor.team_adaptive(False)
    _xnor.team_reset()
    try:
        yield
    finally:
        _xnor.team_adaptive(before)
        _xnor.team_reset()
