"""``python -m xnornet <stage> [overrides]``: the console script without the script."""

from xnornet.cli import main

main()
