"""DVC stage `export@<variant>`: models/<variant>.packed → models/<variant>.xml + .bin, an OpenVINO IR.

xnornet export model=xnor [format=openvino] [packed=any/file.packed]

The IR sits beside the packed file (same name, .xml and .bin): the binary network as a user of
OpenVINO's CPU runtime would deploy it (xnornet.peers.openvino_export).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from xnornet.errors import XnornetError
from xnornet.packed.file_format import load_packed
from xnornet.peers import require
from xnornet.preflight import check_output_file
from xnornet.stages import stage_main
from xnornet.tracking import stage_run

FORMATS = ("openvino",)


@stage_main("model", "packed", "format", "logger")
def main(cfg: DictConfig) -> None:
    variant = cfg.model.name
    if cfg.format not in FORMATS:
        raise XnornetError(f"format={cfg.format!r}: expected one of {', '.join(FORMATS)}")
    require("xnornet export format=openvino")
    from xnornet.peers.openvino_export import export_openvino  # needs the peers extra

    packed_path = Path(cfg.packed)
    out = check_output_file("packed", str(packed_path.with_suffix(".xml")), ".xml")
    check_output_file("packed", str(packed_path.with_suffix(".bin")), ".bin")
    packed = load_packed(packed_path)
    with stage_run(cfg, f"export-{variant}", f"export@{variant}", variant=variant) as run:
        export_openvino(packed, out)
        ir_bytes = out.stat().st_size + out.with_suffix(".bin").stat().st_size
        metrics = {"ir_bytes": ir_bytes, "packed_bytes": packed_path.stat().st_size}
        run.record(metrics, None, [out, out.with_suffix(".bin")])
    print(f"{out}: OpenVINO IR of {packed_path}, {ir_bytes} bytes (.xml + .bin)")


if __name__ == "__main__":
    main()
