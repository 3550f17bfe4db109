"""``python -m xnornet.benchmark [--config FILE] [--out DIR]``: the layer bench on a bare host.

For machines with torch, numpy and the compiled kernel (``python setup.py build_ext --inplace``,
``PYTHONPATH=src``) but not Hydra, MLflow or DVC: it reads conf/bench/default.yaml as plain YAML
and writes bench.json and bench.csv where ``--out`` says, the same files the bench stage writes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from xnornet.benchmark.suite import print_table, run_bench
from xnornet.errors import XnornetError
from xnornet.files import write_csv, write_metrics

CONFIG = Path(__file__).resolve().parents[3] / "conf" / "bench" / "default.yaml"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m xnornet.benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=CONFIG, help="a conf/bench YAML file")
    parser.add_argument(
        "--out", type=Path, default=Path("bench-out"), help="folder for bench.json, bench.csv"
    )
    parser.add_argument("--threads", help="override threads, e.g. 1,2,4,8,16,all")
    args = parser.parse_args(argv)
    try:
        config = yaml.safe_load(args.config.read_text())
        if args.threads:
            config["threads"] = [t if t == "all" else int(t) for t in args.threads.split(",")]
        rows, summary = run_bench(config)
    except (OSError, yaml.YAMLError, XnornetError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    write_metrics(args.out / "bench.json", summary)
    write_csv(rows, args.out / "bench.csv")
    print_table(rows, summary["popcount_limit_gops_per_core"])


if __name__ == "__main__":
    main()
