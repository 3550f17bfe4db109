"""The report's sweep tables, from summary files written by the real summary code."""

from __future__ import annotations

import json
import statistics

import pytest
from mlflow.entities import Metric, Run, RunData, RunInfo, RunTag

from xnornet.errors import XnornetError
from xnornet.reporting.tables import (
    BEFORE_SMOOTHING,
    PAPER_SEEDS,
    ablation_table,
    lever_table,
    paper_table,
    seed_table,
)
from xnornet.sweep_summary import summarize, write_summary


def run(values: dict[str, str], acc: float, status: str = "FINISHED") -> Run:
    info = RunInfo("r", "0", "u", status, 0, 0, "active")
    tags = [RunTag("sweep_values", json.dumps(values))]
    return Run(
        info,
        RunData(metrics=[Metric("test_acc", acc, 0, 0), Metric("val_acc", acc - 0.001, 0, 0)], tags=tags),
    )


ACCS = {"fp": [0.9931, 0.9940, 0.9936], "bwn": [0.9958, 0.9955, 0.9957], "xnor": [0.9910, 0.9921, 0.9917]}


def seeds_summary(tmp_path):
    runs = [run({"model": v, "seed": str(s)}, acc) for v, accs in ACCS.items() for s, acc in enumerate(accs)]
    runs.append(run({"model": "xnor", "seed": "3"}, 0.5, status="FAILED"))  # a failed job is left out
    write_summary(tmp_path / "sweeps" / "seeds.json", {"parent_run_id": "p"}, summarize(runs))


def test_seed_table_gives_mean_and_sample_std_per_variant(tmp_path):
    seeds_summary(tmp_path)
    lines = seed_table(tmp_path)
    for v, accs in ACCS.items():
        (row,) = [line for line in lines if line.startswith(f"| {v} |")]
        mean, std = 100 * statistics.fmean(accs), 100 * statistics.stdev(accs)
        assert f"| 3 (0, 1, 2) | {mean:.2f} ± {std:.2f} |" in row
        assert ", ".join(f"{100 * a:.2f}" for a in accs) in row
    # the goals are judged on the mean: fp 99.36 < 99.55, bwn 99.57 ≥ 99.55, xnor 99.16 < 99.45
    table = "\n".join(lines)
    assert "| ≥ 99.55 missed |" in table and "| ≥ 99.55 met |" in table and "| ≥ 99.45 missed |" in table
    (xnor,) = [line for line in lines if line.startswith("| xnor |")]
    assert xnor.endswith("| 99.23 | 99.37 | 99.45 |")  # every public row beside ours


def test_ablation_rows_are_compared_with_the_seed_sweeps_xnor(tmp_path):
    seeds_summary(tmp_path)
    shift = [0.9900, 0.9905, 0.9895]
    runs = [run({"ablation": "shift_bn", "seed": str(s)}, a) for s, a in enumerate(shift)]
    write_summary(tmp_path / "sweeps" / "ablation.json", {"parent_run_id": "q"}, summarize(runs))
    lines = ablation_table(tmp_path)
    assert any(line.startswith("| baseline") for line in lines)
    (row,) = [line for line in lines if line.startswith("| shift-based BatchNorm |")]
    delta = 100 * (statistics.fmean(shift) - statistics.fmean(ACCS["xnor"]))
    assert f"| {delta:+.2f} |" in row
    assert "| K/β activation scaling on | 0 | not run yet |" in "\n".join(lines)  # a switch not swept is said
    one = [run({"ablation": "scaling", "seed": "0"}, 0.9929)]
    write_summary(tmp_path / "sweeps" / "ablation.json", {"parent_run_id": "r"}, summarize(one))
    (row,) = [line for line in ablation_table(tmp_path) if line.startswith("| K/β activation scaling on |")]
    assert "| 1 | 99.29 (one run) |" in row  # no "± 0.00" for a single run


def test_tables_say_how_to_run_a_missing_sweep(tmp_path):
    assert "xnornet train -m +experiment=seeds" in seed_table(tmp_path)[0]
    assert "xnornet train -m +experiment=ablation" in ablation_table(tmp_path)[0]


def test_paper_table_reads_each_variants_run_and_says_which_are_missing(tmp_path):
    (tmp_path / "paper").mkdir()
    m = {"test_acc": 0.9951, "epochs": 60, "seconds_per_epoch": 17.2}
    (tmp_path / "paper" / "train_xnor.json").write_text(json.dumps(m))
    lines = paper_table(tmp_path)
    (xnor,) = [line for line in lines if line.startswith("| xnor |")]
    assert (
        xnor == "| xnor | 1 (0) | 99.51 (one run) | 99.51 | ≥ 99.50 met (one seed) | 99.23 | 99.37 | 99.45 |"
    )
    (fp,) = [line for line in lines if line.startswith("| fp |")]
    assert "not run yet" in fp


def test_paper_table_pools_the_stages_seed_with_the_sweeps_seeds(tmp_path):
    (tmp_path / "paper").mkdir()
    (tmp_path / "paper" / "train_bwn.json").write_text(json.dumps({"test_acc": 0.9947}))
    runs = [run({"model": "bwn", "seed": str(s)}, a) for s, a in [(2, 0.9961), (1, 0.9952)]]
    write_summary(tmp_path / "sweeps" / PAPER_SEEDS, {"parent_run_id": "p"}, summarize(runs))
    (bwn,) = [line for line in paper_table(tmp_path) if line.startswith("| bwn |")]
    accs = [0.9947, 0.9952, 0.9961]
    mean, std = 100 * statistics.fmean(accs), 100 * statistics.stdev(accs)
    assert bwn.startswith(
        f"| bwn | 3 (0, 1, 2) | {mean:.2f} ± {std:.2f} | 99.47, 99.52, 99.61 | ≥ 99.63 missed |"
    )
    # a sweep that reruns the stage's seed would weigh seed 0 twice: an error that names it
    runs.append(run({"model": "bwn", "seed": "0"}, 0.9950))
    write_summary(tmp_path / "sweeps" / PAPER_SEEDS, {"parent_run_id": "p"}, summarize(runs))
    with pytest.raises(XnornetError, match="seed 0 of bwn"):
        paper_table(tmp_path)


def test_the_lever_table_sets_each_variant_before_and_after_label_smoothing(tmp_path):
    assert "Not run yet" in lever_table(tmp_path)[0]
    seeds_summary(tmp_path)  # "after"
    before = {"fp": [0.9930, 0.9931, 0.9932], "bwn": [0.9940, 0.9941, 0.9942],
              "xnor": [0.9900, 0.9910, 0.9920]}  # fmt: skip
    runs = [run({"model": v, "seed": str(s)}, a) for v, accs in before.items() for s, a in enumerate(accs)]
    write_summary(tmp_path / "sweeps" / BEFORE_SMOOTHING, {"parent_run_id": "b"}, summarize(runs))
    lines = lever_table(tmp_path)
    for v, accs in ACCS.items():
        (row,) = [line for line in lines if line.startswith(f"| {v} |")]
        delta = 100 * (statistics.fmean(accs) - statistics.fmean(before[v]))
        assert row.endswith(f"| {delta:+.2f} |") and f"{100 * statistics.fmean(before[v]):.2f} ± " in row
    # the ablations ran on the recipe before label smoothing: their baseline is that sweep's xnor
    shift = [run({"ablation": "shift_bn", "seed": "0"}, 0.9900)]
    write_summary(tmp_path / "sweeps" / "ablation.json", {"parent_run_id": "q"}, summarize(shift))
    lines = ablation_table(tmp_path)
    (base,) = [line for line in lines if line.startswith("| baseline")]
    assert base.startswith("| baseline | 3 | 99.10 ± 0.10 |") and "(without label smoothing)" in lines[0]
