"""DVC stage `pack@<variant>`: trained checkpoint → models/<variant>.packed (bits + float32)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from xnornet.builders import build_datamodule, input_shape, load_trained_net
from xnornet.errors import XnornetError
from xnornet.model_registry import log_packed_model
from xnornet.packed.file_format import load_packed, save_packed
from xnornet.packed.inference_form import pack_network
from xnornet.packed.int8_calibration import FLOAT_LAYERS, quantize_float_layers, training_batches
from xnornet.packed.memory import float_state_bytes
from xnornet.preflight import check_finite_state, check_output_file
from xnornet.stages import stage_main
from xnornet.tracking import stage_run


@stage_main("model", "net", "data.image_size", "paths.models_dir", "logger", "packed", "pack", "datamodule")
def main(cfg: DictConfig) -> None:
    variant = cfg.model.name
    if cfg.pack.float_layers not in FLOAT_LAYERS:
        raise XnornetError(f"pack.float_layers must be one of {FLOAT_LAYERS}, got {cfg.pack.float_layers!r}")
    if not cfg.model.binarization.weights:
        raise XnornetError(f"model={variant} has no binary weights to pack (use bwn or xnor)")
    out = check_output_file("packed", cfg.packed, ".packed")
    ckpt = Path(cfg.paths.models_dir) / f"{variant}.ckpt"
    net = load_trained_net(cfg, ckpt)
    check_finite_state(net.state_dict(), ckpt)
    shape = input_shape(cfg)
    with stage_run(cfg, f"pack-{variant}", f"pack@{variant}", variant=variant) as run:  # before the output
        packed = pack_network(net, shape, variant=variant, network=cfg.net._target_)
        if cfg.pack.float_layers == "int8":  # calibrated on training images (int8_calibration)
            images = training_batches(build_datamodule(cfg), cfg.pack.calibration_images)
            packed = quantize_float_layers(packed, images)
        save_packed(packed, out)
        try:
            load_packed(out)  # verify what was written
        except XnornetError:
            out.unlink(missing_ok=True)  # a file that does not read back is no output
            raise
        float_bytes = float_state_bytes(net)
        metrics = {"packed_bytes": out.stat().st_size, "float_bytes": float_bytes,
                   "compression": round(float_bytes / out.stat().st_size, 2)}  # fmt: skip
        run.record(metrics, None, [out])
        log_packed_model(run, cfg, out)  # models:/xnornet-<net>-<variant>@pipeline
    print(f"{out}: {metrics['packed_bytes']} bytes ({metrics['compression']}× smaller than float32)")


if __name__ == "__main__":
    main()
