"""DVC stage `peers_lenet`: LeNet-5's accuracy–speed–size table against the x86 peers.

xnornet peers_lenet [peers_lenet.threads=[1]] [peers_lenet.batch_size=16]

Reads the trained float network (models/fp.ckpt), the packed BWN and XNOR files and the MNIST
test set; writes metrics/peers_lenet.json and plots/peers_lenet.csv (xnornet.peers.lenet_table).
"""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from xnornet.builders import build_datamodule
from xnornet.errors import XnornetError
from xnornet.files import write_csv
from xnornet.machine import machine_info, package_version, resolve_thread_counts
from xnornet.nn.binarization import Binarization
from xnornet.packed.file_format import load_packed
from xnornet.peers.lenet_table import PEER_PACKAGES, lenet_table, markdown, summary_metrics
from xnornet.preflight import check_finite_state
from xnornet.stages import stage_main
from xnornet.tracking import stage_run

PROTOCOL = ("each runtime in its own process while the others are idle; OpenVINO with the LATENCY "
            "hint, f32 precision and the same thread count; torch in its faster layout")  # fmt: skip


def load_fp_net(net_cfg: DictConfig, ckpt: Path) -> torch.nn.Module:
    """The trained full-precision network (the same architecture with nothing binarized)."""
    if not ckpt.is_file():
        raise XnornetError(f"{ckpt}: checkpoint not found (run `dvc repro train@fp`)")
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
        net = instantiate(net_cfg, _partial_=True)(binarization=Binarization())
        net.load_state_dict({k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})
    except Exception as e:  # torch and Hydra raise many types for a bad file or config
        raise XnornetError(f"{ckpt}: not a checkpoint of the full-precision {net_cfg._target_} ({e})") from e
    check_finite_state(net.state_dict(), ckpt)
    return net.eval()


@stage_main("net", "datamodule", "paths.models_dir", "paths.metrics_dir", "paths.plots_dir", "logger",
            "peers_lenet", writes=("paths.metrics_dir", "paths.plots_dir"))  # fmt: skip
def main(cfg: DictConfig) -> None:
    p = cfg.peers_lenet
    try:
        thread_counts = resolve_thread_counts(p.threads)
        if min(p.batch_size, p.repeats, p.calibration_images) < 1 or p.warmup < 0:
            raise ValueError("batch_size, repeats and calibration_images must be positive, warmup >= 0")
    except (TypeError, ValueError) as e:
        raise XnornetError(f"peers_lenet config: {e}") from e
    models = Path(cfg.paths.models_dir)
    packed = {v: models / f"{v}.packed" for v in ("bwn", "xnor")}
    for path in packed.values():
        load_packed(path)  # a missing or corrupt file is one line now, not in a worker
    fp_net = load_fp_net(cfg.net, models / "fp.ckpt")
    dm = build_datamodule(cfg)
    dm.setup()
    test = (dm.test_set.x.numpy(), dm.test_set.y.numpy())
    calibration = dm.train_set.x[: p.calibration_images].numpy()
    rows, skipped = lenet_table(fp_net, packed, test, calibration, thread_counts, p.batch_size, p.warmup,
                                p.repeats)  # fmt: skip
    for runtime, reason in skipped.items():
        print(f"peers_lenet: {runtime} row skipped: {reason}")
    machine = {**machine_info(), **{name: package_version(name) for name in PEER_PACKAGES}}
    summary = {"batch_size": p.batch_size, "threads": thread_counts, "test_images": len(test[1]),
               "protocol": PROTOCOL, "machine": machine, "skipped": skipped, "rows": rows,
               **summary_metrics(rows)}  # fmt: skip
    metrics_path = Path(cfg.paths.metrics_dir) / "peers_lenet.json"
    csv_path = Path(cfg.paths.plots_dir) / "peers_lenet.csv"
    with stage_run(cfg, "peers_lenet", "peers_lenet") as run:
        write_csv(rows, csv_path)
        run.record(summary, metrics_path, [csv_path])
    print(markdown(rows))


if __name__ == "__main__":
    main()
