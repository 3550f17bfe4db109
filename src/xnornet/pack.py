"""DVC stage `pack@<variant>`: trained checkpoint → models/<variant>.packed (bits + float32)."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from xnornet.cli import stage_main
from xnornet.errors import XnornetError
from xnornet.packing import load_packed, pack_network, save_packed
from xnornet.tracking import record, run_tags, start_run
from xnornet.training import build_net


def load_trained_net(cfg: DictConfig, ckpt: Path) -> torch.nn.Module:
    """The network of ``cfg`` with the weights of a Lightning checkpoint, in eval mode."""
    if not ckpt.is_file():
        raise XnornetError(f"{ckpt}: checkpoint not found (run `dvc repro train@{cfg.model.name}`)")
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    except Exception as e:  # torch raises many types for a bad file
        raise XnornetError(f"{ckpt}: not a readable checkpoint ({e})") from e
    net = build_net(cfg)
    weights = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    try:
        net.load_state_dict(weights)
    except RuntimeError as e:
        raise XnornetError(f"{ckpt}: does not match the {cfg.net._target_} of this config ({e})") from e
    return net.eval()


def input_shape(cfg: DictConfig) -> tuple[int, int, int]:
    size = {"mnist": 28, "cifar10": 32}.get(cfg.data.name)
    if size is None:
        raise XnornetError(f"no input size known for data.name={cfg.data.name!r}")
    return (cfg.net.in_channels, size, size)


@stage_main
def main(cfg: DictConfig) -> None:
    variant = cfg.model.name
    if not cfg.model.binarization.weights:
        raise XnornetError(f"model={variant} has no binary weights to pack (use bwn or xnor)")
    models = Path(cfg.paths.models_dir)
    net = load_trained_net(cfg, models / f"{variant}.ckpt")
    packed = pack_network(net, input_shape(cfg), variant=variant, network=cfg.net._target_)
    out = Path(cfg.packed)
    save_packed(packed, out)
    load_packed(out)  # verify what was written
    float_bytes = sum(4 * t.numel() for t in net.state_dict().values() if t.is_floating_point())
    metrics = {"packed_bytes": out.stat().st_size, "float_bytes": float_bytes,
               "compression": round(float_bytes / out.stat().st_size, 2)}  # fmt: skip
    client, run_id = start_run(cfg, f"pack-{variant}", run_tags(f"pack@{variant}", variant=variant))
    record(client, run_id, metrics, None, [out])
    client.set_terminated(run_id)
    print(f"{out}: {metrics['packed_bytes']} bytes ({metrics['compression']}× smaller than float32)")


if __name__ == "__main__":
    main()
