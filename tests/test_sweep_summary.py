"""A sweep finished in parts: the child runs of several parent runs pooled into one summary,
read from a real sqlite MLflow store, and a seed given twice refused by name."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from xnornet.sweep_summary import main, summarize_sweep


def sweep(client: MlflowClient, exp: str, finished: dict[tuple[str, int], float]) -> str:
    """A parent run and one finished child per (switch, seed), as `xnornet.sweep` tags them."""
    parent = client.create_run(exp, tags={"sweep_overrides": f"seeds {sorted({s for _, s in finished})}"})
    for (switch, seed), acc in finished.items():
        values = json.dumps({"+ablation": switch, "seed": str(seed)})
        child = client.create_run(exp, tags={"sweep_id": parent.info.run_id, "sweep_values": values})
        client.log_metric(child.info.run_id, "test_acc", acc)
        client.set_terminated(child.info.run_id)
    failed = client.create_run(exp, tags={"sweep_id": parent.info.run_id, "sweep_values": values})
    client.set_terminated(failed.info.run_id, status="FAILED")  # a killed job is left out
    client.set_terminated(parent.info.run_id)
    return parent.info.run_id


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    return uri, client, client.create_experiment("xnornet")


def test_two_parents_pool_their_seeds_into_one_row_per_switch(store, tmp_path):
    uri, client, exp = store
    first = sweep(client, exp, {("scaling", 0): 0.9929, ("shift_bn", 0): 0.9905})
    second = sweep(client, exp, {("scaling", 1): 0.9931, ("scaling", 2): 0.9921, ("shift_bn", 1): 0.9911})
    out = tmp_path / "ablation.json"
    rows = {r["group"]: r for r in summarize_sweep(uri, [first, second], out)}
    assert rows["+ablation=scaling"]["seeds"] == [0, 1, 2]
    assert rows["+ablation=scaling"]["test_acc_values"] == [0.9929, 0.9931, 0.9921]
    assert rows["+ablation=scaling"]["test_acc_mean"] == pytest.approx(0.9927, abs=1e-6)
    assert rows["+ablation=shift_bn"]["n"] == 2
    written = json.loads(out.read_text())
    assert written["parent_run_ids"] == [first, second] and len(written["overrides"]) == 2
    assert [r["group"] for r in written["rows"]] == sorted(rows)
    # one parent alone still gives its own rows, in the one-parent form
    alone = summarize_sweep(uri, first, tmp_path / "first.json")
    assert [r["n"] for r in alone] == [1, 1]
    assert json.loads((tmp_path / "first.json").read_text())["parent_run_id"] == first


def test_a_seed_finished_in_two_parents_is_refused_with_both_runs_named(store, tmp_path, capsys):
    uri, client, exp = store
    first = sweep(client, exp, {("scaling", 0): 0.9929})
    second = sweep(client, exp, {("scaling", 0): 0.9931})
    out = tmp_path / "ablation.json"
    with pytest.raises(SystemExit) as stop:
        main([first, second, "--out", str(out), "--tracking-uri", uri])
    assert stop.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "error: sweep_summary:" in err
    assert "+ablation=scaling" in err and "seed 0" in err and "Traceback" not in err
    assert not out.exists()
