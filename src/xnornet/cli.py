"""``xnornet <stage> [Hydra overrides]``: one command for every pipeline stage, like dvc or mlflow.

``xnornet train -m model=fp,xnor seed=0,1`` is the train stage's Hydra app with its usual
arguments; ``python -m xnornet <stage>`` is the same command without the console script.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys

import xnornet.stages

# every module of xnornet/stages is a stage: adding one needs no registry here
STAGES = sorted(m.name for m in pkgutil.iter_modules(xnornet.stages.__path__))
USAGE = f"usage: xnornet {{{','.join(STAGES)}}} [hydra overrides, -m for a sweep, --help]"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        sys.exit(0 if argv else 2)
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        print(f"error: unknown stage {stage!r}\n{USAGE}", file=sys.stderr)
        sys.exit(2)
    sys.argv = [f"xnornet {stage}", *rest]  # Hydra parses sys.argv
    # Lightning's DDP launcher starts each further rank as `python -m <__main__.__spec__.name>
    # <sys.argv[1:]>`: naming the stage module there makes that `python -m xnornet.stages.<stage>`.
    sys.modules["__main__"].__spec__ = importlib.util.find_spec(f"xnornet.stages.{stage}")
    importlib.import_module(f"xnornet.stages.{stage}").main()
