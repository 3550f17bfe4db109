"""The OpenVINO export of packed networks predicts what the engine predicts.

LeNet-5 (BWN, XNOR, XNOR with K/β) trained briefly on the MNIST-like fixture digits, and the
paper's ResNet-18 / AlexNet with random weights and calibrated BatchNorm: on ≥ 99.9% of the
images the IR, compiled on OpenVINO's CPU plugin, picks the engine's class.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import few_adam_steps, synthetic_digits
from xnornet import cli
from xnornet.benchmark.network import calibrate_batchnorm
from xnornet.errors import ERROR_LOG_ENV, XnornetError
from xnornet.nn.binarization import Binarization
from xnornet.nn.imagenet_models import AlexNet, ResNet18
from xnornet.nn.models import LeNet5
from xnornet.packed.engine import PackedEngine
from xnornet.packed.file_format import PackedModel, save_packed
from xnornet.packed.inference_form import pack_network
from xnornet.packed.int8_calibration import quantize_float_layers

ov_export = pytest.importorskip("xnornet.peers.openvino_export", reason="the peers extra is not installed")

VARIANTS = {
    "bwn": Binarization(weights=True),
    "xnor": Binarization(weights=True, inputs=True),
    "xnor_scaled": Binarization(weights=True, inputs=True, scale_activations=True),
}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """torch's OpenMP pool and OpenVINO's TBB pool in one process starve each other above one thread."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = synthetic_digits(n, seed)
    x = ((images.astype(np.float32) / 255.0 - 0.1307) / 0.3081)[:, None]  # (N, 1, 28, 28), as MNIST
    return np.ascontiguousarray(x), labels


def trained_lenet(binarization: Binarization, steps: int = 40) -> torch.nn.Module:
    """LeNet-5 after a few Adam steps on the fixture digits: trained BN statistics and weights."""
    torch.manual_seed(0)
    net = LeNet5(binarization)
    x, y = digits(512, 0)
    return few_adam_steps(net, torch.from_numpy(x), torch.from_numpy(y), steps, batch=64)


def predictions_agree(model: PackedModel, x: np.ndarray, tmp_path: Path, batch: int = 64) -> float:
    """The share of ``x`` on which the exported IR and the engine predict the same class."""
    path = ov_export.export_openvino(model, tmp_path / "net.xml")
    compiled = ov_export.load_openvino(path, threads=1, batch=batch)
    engine = PackedEngine(model, threads=1)
    ours, theirs = [], []
    for i in range(0, len(x), batch):
        chunk = x[i : i + batch]
        ours.append(engine(chunk))
        padded = np.concatenate([chunk, np.zeros((batch - len(chunk), *x.shape[1:]), np.float32)])
        theirs.append(compiled(padded)[0][: len(chunk)])
    ours, theirs = np.concatenate(ours), np.concatenate(theirs)
    assert theirs.shape == ours.shape
    # the same logits, but where a BN output within an ulp of 0 rounds to the other sign (the IR's
    # float32 Multiply/Add vs the engine's sign pack): that image moves by 2α·|w| of one bit
    close = np.abs(theirs - ours).max(axis=1) <= 1e-3 * max(1.0, float(np.abs(ours).max()))
    assert close.mean() >= 0.999
    return float(np.mean(ours.argmax(1) == theirs.argmax(1)))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_lenet_export_predicts_what_the_engine_predicts(variant, tmp_path):
    net = trained_lenet(VARIANTS[variant])
    model = pack_network(net, (1, 28, 28), variant=variant)
    x, labels = digits(2000, 1)
    assert predictions_agree(model, x, tmp_path) >= 0.999
    assert (PackedEngine(model, 1)(x).argmax(1) == labels).mean() > 0.5  # it learned something


@pytest.mark.parametrize("variant", ["bwn", "xnor"])
def test_int8_layers_export_predicts_what_the_engine_predicts(variant, tmp_path):
    """Full-precision layers packed in int8: dequantized int8 weights between FakeQuantize nodes at
    the stored grids. OpenVINO may round a value on a grid step's midpoint the other way, one step
    of the output grid; the classes agree."""
    net = trained_lenet(VARIANTS[variant])
    x, _ = digits(2000, 1)
    model = quantize_float_layers(pack_network(net, (1, 28, 28), variant=variant), [x[:512]])
    last = len(model.architecture) - 1
    assert model.architecture[0].int8 and model.architecture[last].int8
    compiled = ov_export.load_openvino(
        ov_export.export_openvino(model, tmp_path / "n.xml"), threads=1, batch=500
    )
    ours = PackedEngine(model, threads=1)(x)
    theirs = np.concatenate([compiled(x[i : i + 500])[0] for i in range(0, len(x), 500)])
    step = float(model.tensors[f"{last}.output_scale"][0])
    assert np.mean(np.abs(theirs - ours).max(axis=1) <= 1.01 * step) >= 0.99
    assert np.mean(ours.argmax(1) == theirs.argmax(1)) >= 0.995


@pytest.mark.parametrize(
    ("name", "size"), [("resnet18", 64), pytest.param("alexnet", 224, marks=pytest.mark.slow)]
)
def test_imagenet_networks_export_predicts_what_the_engine_predicts(name, size, tmp_path):
    torch.manual_seed(0)
    shape = (3, size, size)
    net = {"resnet18": ResNet18, "alexnet": AlexNet}[name](VARIANTS["xnor"])
    model = pack_network(calibrate_batchnorm(net, shape, 2, 8, 0), shape, variant="xnor")
    x = np.random.default_rng(0).standard_normal((32, *shape), dtype=np.float32)
    assert predictions_agree(model, x, tmp_path, batch=16) >= 0.999


def test_the_ir_stores_binary_weights_as_bits(tmp_path):
    """The IR's size is the packed file's, not float32's: 1-bit constants for BWN and XNOR alike."""
    for variant in ("bwn", "xnor"):
        model = pack_network(LeNet5(VARIANTS[variant]).eval(), (1, 28, 28))
        path = ov_export.export_openvino(model, tmp_path / f"{variant}.xml")
        bits = sum(v.nbytes for k, v in model.tensors.items() if k.endswith("weight_bits"))
        floats = sum(v.nbytes for k, v in model.tensors.items() if not k.endswith("weight_bits"))
        assert path.with_suffix(".bin").stat().st_size < 1.2 * (bits + floats)


def test_a_graph_that_does_not_fit_is_one_line_and_writes_nothing(tmp_path):
    model = pack_network(LeNet5(VARIANTS["xnor"]).eval(), (1, 28, 28))
    arch = list(model.architecture)
    i = next(k for k, s in enumerate(arch) if s.op == "threshold")
    arch[i + 1] = {"op": "relu", "inputs": [i]}  # a threshold that binarizes nothing
    broken = PackedModel(arch, {k: v for k, v in model.tensors.items() if not k.startswith(f"{i + 1}.")},
                         model.info)  # fmt: skip
    with pytest.raises(XnornetError, match="must feed a binary-input layer"):
        ov_export.export_openvino(broken, tmp_path / "net.xml")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(XnornetError, match=r"must end in \.xml"):
        ov_export.export_openvino(model, tmp_path / "net.onnx")


def test_load_of_a_missing_or_corrupt_ir_is_one_line(tmp_path):
    with pytest.raises(XnornetError, match="OpenVINO IR not found"):
        ov_export.load_openvino(tmp_path / "none.xml", 1, 1)
    (tmp_path / "bad.xml").write_text("<net")
    (tmp_path / "bad.bin").write_bytes(b"")
    with pytest.raises(XnornetError, match="not a readable OpenVINO IR"):
        ov_export.load_openvino(tmp_path / "bad.xml", 1, 1)


@pytest.fixture
def run_export(tmp_path, monkeypatch, capsys):
    """``run_export(*overrides)`` → (exit code, stderr): ``xnornet export`` in this process."""
    monkeypatch.setenv(ERROR_LOG_ENV, str(tmp_path / "log" / "error.log"))
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # cli.main rewrites it for Hydra
    monkeypatch.chdir(tmp_path)

    def run(*overrides: str) -> tuple[int, str]:
        capsys.readouterr()
        args = ["export", "model=xnor", f"logger.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
                f"logger.artifact_dir={tmp_path}/mlartifacts", *overrides]  # fmt: skip
        try:
            cli.main(args)
            code = 0
        except SystemExit as e:
            code = e.code
        return code, capsys.readouterr().err

    return run


def test_export_stage_writes_the_ir_beside_the_packed_file(run_export, tmp_path):
    model = pack_network(trained_lenet(VARIANTS["xnor"], steps=10), (1, 28, 28), variant="xnor")
    save_packed(model, tmp_path / "models" / "xnor.packed")
    code, err = run_export(f"packed={tmp_path}/models/xnor.packed", "format=openvino")
    assert code == 0, err
    xml = tmp_path / "models" / "xnor.xml"
    assert xml.is_file() and xml.with_suffix(".bin").is_file()
    x, _ = digits(256, 2)
    want = PackedEngine(model, 1)(x).argmax(1)
    assert (ov_export.load_openvino(xml, 1, 256)(x)[0].argmax(1) == want).mean() >= 0.999


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: export: "), err
    return lines[0]


@pytest.mark.parametrize(
    ("make", "override", "match"),
    [
        (None, "", "packed model not found"),
        ("truncated", "", "truncated or corrupt"),
        ("good", "format=onnx", "format='onnx': expected one of openvino"),
    ],
)
def test_export_stage_bad_input_is_one_line_and_writes_nothing(run_export, tmp_path, make, override, match):
    packed = tmp_path / "models" / "xnor.packed"
    if make is not None:
        save_packed(pack_network(LeNet5(VARIANTS["xnor"]).eval(), (1, 28, 28)), packed)
        if make == "truncated":
            packed.write_bytes(packed.read_bytes()[:-100])
    code, err = run_export(f"packed={packed}", *[o for o in (override,) if o])
    assert code == 1
    assert match in one_error_line(err)
    assert not list(tmp_path.glob("models/*.xml")) and not list(tmp_path.glob("models/*.bin"))
