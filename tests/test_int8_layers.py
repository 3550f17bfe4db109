"""int8 full-precision layers: the engine's step equals torch's own quantized modules bit for bit,
the packed file keeps the int8 tensors, bad int8 fields are refused, fp32 packing is unchanged."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
import torch.ao.nn.intrinsic.quantized as nniq
import torch.ao.nn.quantized as nnq
from safetensors.numpy import save_file

from conftest import tiny_overrides
from small_nets import SHAPE, calibration, random_lenet
from xnornet import cli
from xnornet.errors import ERROR_LOG_ENV, XnornetError
from xnornet.kernels.ops import pool2d_nhwc
from xnornet.packed.engine import PackedEngine
from xnornet.packed.file_format import FORMAT, VERSION, digest, load_packed, save_packed
from xnornet.packed.inference_form import check_architecture, pack_network
from xnornet.packed.int8_calibration import float_layers, quantize_float_layers
from xnornet.packed.int8_ops import Int8Layer, int8_conv, int8_linear, quantized_engine
from xnornet.packed.memory import memory_table


def layer(rng, shape: tuple[int, ...], bias: bool = True) -> Int8Layer:
    """Random int8 weights on random grids, with zero points away from 0 (both signs exercised)."""
    out = shape[0]
    return Int8Layer(
        rng.integers(-128, 128, shape, dtype=np.int8),
        rng.uniform(1e-3, 2e-2, out).astype(np.float32),
        rng.standard_normal(out).astype(np.float32) if bias else None,
        0.031, 61, 0.047, 70,
    )  # fmt: skip


def torch_module(q: Int8Layer, kind, *args) -> torch.nn.Module:
    """torch's own quantized module (ReLU fused for the intrinsic kinds) with ``q``'s numbers."""
    with quantized_engine():
        m = kind(*args)
        m.set_weight_bias(q.qweight(), q.bias_tensor())
        m.scale, m.zero_point = q.output_scale, q.output_zero_point
    return m


def through_torch(m: torch.nn.Module, q: Int8Layer, x: torch.Tensor) -> torch.Tensor:
    qx = torch.quantize_per_tensor(x, q.input_scale, q.input_zero_point, torch.quint8)
    return m(qx).dequantize()


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize(
    "geometry", [(3, 16, 7, 2, 3, 20), (20, 8, 1, 2, 0, 9), (8, 4, 1, 3, 0, 10), (1, 20, 5, 1, 0, 28)]
)
def test_int8_conv_equals_torch_quantized_conv(relu, geometry):
    """Bit-equal after dequantize, from the engine's NHWC float32 to torch's NCHW module."""
    cin, cout, k, stride, pad, size = geometry
    rng = np.random.default_rng(cin * cout)
    q = layer(rng, (cout, cin, k, k))
    x = (rng.standard_normal((3, size, size, cin)) * 2).astype(np.float32)  # (B, H, W, C)
    kind = nniq.ConvReLU2d if relu else nnq.Conv2d
    m = torch_module(q, kind, cin, cout, k, stride, pad)
    want = through_torch(m, q, torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())
    got = int8_conv(q, stride, pad, relu)(x)
    assert got.dtype == np.float32 and got.shape == want.permute(0, 2, 3, 1).shape
    np.testing.assert_array_equal(got, want.permute(0, 2, 3, 1).numpy())


def test_int8_conv_with_residual_adds_after_the_op():
    """A shortcut conv with the block's add fused: torch's conv, then + residual, then ReLU."""
    rng = np.random.default_rng(3)
    q = layer(rng, (8, 4, 1, 1), bias=False)
    x = rng.standard_normal((2, 6, 6, 4)).astype(np.float32)
    residual = rng.standard_normal((2, 3, 3, 8)).astype(np.float32)
    m = torch_module(q, nnq.Conv2d, 4, 8, 1, 2, 0)
    conv = through_torch(m, q, torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).permute(0, 2, 3, 1)
    want = np.maximum(conv.numpy() + residual, 0)
    np.testing.assert_array_equal(int8_conv(q, 2, 0, relu=True)(x, residual), want)


@pytest.mark.parametrize("channels", [16, 20, 32, 40])  # 32: no zero filters added; the rest padded
@pytest.mark.parametrize("maxpool", [(3, 2, 1), (2, 2, 0)])
def test_max_pool_on_the_int8_output_is_the_same_bits(maxpool, channels):
    """Pooling the quint8 output, then dequantizing, equals the engine's float max pool after."""
    rng = np.random.default_rng(channels)
    q = layer(rng, (channels, 3, 7, 7))
    x = rng.standard_normal((2, 30, 30, 3)).astype(np.float32)
    separate = pool2d_nhwc(int8_conv(q, 2, 3, relu=True)(x), "max", *maxpool, 1)
    fused = int8_conv(q, 2, 3, relu=True, maxpool=maxpool)(x)
    assert fused.shape[-1] == channels and fused.flags.c_contiguous
    np.testing.assert_array_equal(fused, separate)


@pytest.mark.parametrize("relu", [False, True])
def test_int8_linear_equals_torch_quantized_linear(relu):
    rng = np.random.default_rng(7)
    q = layer(rng, (10, 500))
    x = (rng.standard_normal((5, 500)) * 3).astype(np.float32)
    m = torch_module(q, nniq.LinearReLU if relu else nnq.Linear, 500, 10)
    want = through_torch(m, q, torch.from_numpy(x))
    np.testing.assert_array_equal(int8_linear(q, relu)(x), want.numpy())


def test_int8_steps_run_under_deterministic_algorithms_and_leave_the_mode_as_it_was():
    """Lightning's deterministic=True sets torch's deterministic mode for the whole process; the
    engine's int8 steps must still run in it (torch flags the quantized ops' output allocation)."""
    rng = np.random.default_rng(3)
    conv, lin = layer(rng, (6, 4, 3, 3)), layer(rng, (10, 50))
    x = (rng.standard_normal((2, 5, 5, 4)) * 2).astype(np.float32)
    xl = (rng.standard_normal((3, 50)) * 2).astype(np.float32)
    free = int8_conv(conv, 1, 1)(x), int8_linear(lin)(xl)
    torch.use_deterministic_algorithms(True)
    try:
        strict = int8_conv(conv, 1, 1)(x), int8_linear(lin)(xl)
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
    for a, b in zip(free, strict, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(params=["bwn", "xnor"])
def int8_model(request):
    net = random_lenet(request.param)
    fp32 = pack_network(net, SHAPE, variant=request.param)
    return net, fp32, quantize_float_layers(fp32, calibration())


def test_weights_keep_pair_sums_within_int16_and_activations_use_all_256_levels(int8_model):
    """u8·s8 pair sums of at most 255·64·2 never saturate x86's 16-bit pair sums (no VNNI); the
    input grid spans what calibration saw with about 256 levels, not the x86 default's 128."""
    _, fp32, int8 = int8_model
    for i in float_layers(fp32):
        w = int8.tensors[f"{i}.weight_int8"].astype(np.int32)
        assert np.abs(w).max() <= 64 and 255 * 64 * 2 <= np.iinfo(np.int16).max
        assert (np.abs(w).max(axis=tuple(range(1, w.ndim))) >= 63).all()  # each filter uses its range
    x = np.concatenate(calibration())
    scale = float(int8.tensors["0.input_scale"][0])
    span = (x.max() - min(x.min(), 0.0)) / scale  # grid steps across the calibration images' range
    assert 192 < span < 300  # about 256 (the histogram clips a little), far above 7 bits' 128


def test_only_the_full_precision_layers_become_int8(int8_model):
    net, fp32, int8 = int8_model
    firsts = float_layers(fp32)
    assert firsts == [0, len(fp32.architecture) - 1]  # LeNet-5's conv1 and its last fc
    assert [i for i, s in enumerate(int8.architecture) if s.int8] == firsts
    assert all(f"{i}.weight" not in int8.tensors for i in firsts)
    binary = {k: v for k, v in fp32.tensors.items() if int(k.split(".")[0]) not in firsts}
    assert all(np.array_equal(int8.tensors[k], v) for k, v in binary.items())
    check_architecture(net, int8.architecture, SHAPE, "m.packed", "lenet")  # still this config's model
    again = quantize_float_layers(int8, calibration(8, seed=3))
    assert again.architecture == int8.architecture and again.tensors.keys() == int8.tensors.keys()
    names = [s.name for s in PackedEngine(int8).steps]
    assert names[0] == "0:int8_conv+relu+maxpool" and names[-1].startswith(f"{firsts[-1]}:int8_linear")


def test_int8_tensors_round_trip(int8_model, tmp_path):
    _, _, int8 = int8_model
    path = tmp_path / "m.packed"
    save_packed(int8, path)
    back = load_packed(path)
    assert back.architecture == int8.architecture and back.info["float_layers"] == "int8"
    assert set(back.tensors) == set(int8.tensors)
    for name, t in int8.tensors.items():
        assert back.tensors[name].dtype == t.dtype and np.array_equal(back.tensors[name], t), name
    x = calibration(8, seed=1)[0]
    np.testing.assert_array_equal(PackedEngine(back)(x), PackedEngine(int8)(x))


def test_int8_layers_stay_close_to_fp32(int8_model):
    """The quantization error itself, layer by layer: each int8 step against the fp32 steps on
    the same input, within a few steps of its output grid."""
    _, fp32, int8 = int8_model
    x = calibration(16, seed=2)[0]
    values = {-1: np.ascontiguousarray(x.transpose(0, 2, 3, 1))}
    for step in PackedEngine(fp32).steps:
        values[step.output] = step.run(*(values[i] for i in step.inputs))
    checked = 0
    for step in PackedEngine(int8).steps:
        if "int8" in step.name:
            i = int(step.name.split(":")[0])
            grid = float(int8.tensors[f"{i}.output_scale"][0])
            zero = int(int8.tensors[f"{i}.output_zero_point"][0])
            low, top = -zero * grid, (255 - zero) * grid  # the grid's ends
            want, got = values[step.output], step.run(*(values[j] for j in step.inputs))
            inside = (want > low) & (want < top)  # outside, the grid saturates (the histogram clips outliers)
            error = np.abs(got - want)[inside].max()
            assert error < 4 * grid + 0.05 * np.abs(want).max(), step.name
            clipped = np.clip(want[~inside], low, top)
            assert np.abs(got[~inside] - clipped).max(initial=0) <= 4 * grid, step.name
            checked += 1
    assert checked == 2


def resave(path, model, tensors, arch: list[dict] | None = None):
    """The file rewritten with ``tensors`` (and ``arch``, the file's layer objects) and a correct
    digest: only the content checks can refuse it."""
    arch = json.dumps(arch or [s.to_json() for s in model.architecture], sort_keys=True)
    info = json.dumps(model.info, sort_keys=True)
    meta = {"format": FORMAT, "version": str(VERSION), "architecture": arch, "info": info,
            "sha256": digest(arch, info, tensors)}  # fmt: skip
    save_file(tensors, str(path), metadata=meta)


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda t: t.pop("0.weight_scale"), r"tensors \['0.weight_scale'\] do not match"),
        (lambda t: t.update({"0.weight_int8": t["0.weight_int8"][:10]}), "0.weight_int8 is int8"),
        (
            lambda t: t.update({"0.weight_int8": t["0.weight_int8"].astype(np.float32)}),
            "0.weight_int8 is float32",
        ),
        (lambda t: t.update({"0.input_zero_point": np.zeros(1, np.int32)}), "0.input_zero_point is int32"),
        (lambda t: t.update({"0.output_scale": np.zeros(1, np.float32)}), "0.output_scale has 1 values <= 0"),
        (lambda t: t.update({"0.input_scale": np.full(1, np.nan, np.float32)}), "0.input_scale has 1 NaN"),
        (lambda t: t.update({"0.weight_scale": -t["0.weight_scale"]}), "0.weight_scale has 20 values <= 0"),
    ],
)
def test_bad_int8_fields_get_one_clear_error(int8_model, tmp_path, change, match):
    _, _, int8 = int8_model
    path = tmp_path / "m.packed"
    tensors = dict(int8.tensors)
    change(tensors)
    resave(path, int8, tensors)
    with pytest.raises(XnornetError, match=match) as info:
        load_packed(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("flag", ["yes", 1])
def test_int8_flag_must_be_a_boolean_on_a_float_layer(int8_model, tmp_path, flag):
    _, _, int8 = int8_model
    arch = [s.to_json() for s in int8.architecture]
    arch[0]["int8"] = flag
    path = tmp_path / "m.packed"
    resave(path, int8, int8.tensors, arch)
    with pytest.raises(XnornetError, match="int8 must be true or false on a full-precision conv/linear"):
        load_packed(path)


def test_a_truncated_int8_file_is_refused(int8_model, tmp_path):
    _, _, int8 = int8_model
    path = tmp_path / "m.packed"
    save_packed(int8, path)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(XnornetError, match="truncated or corrupt"):
        load_packed(path)


def test_fp32_packing_is_unchanged(int8_model):
    """Without the switch the file has no int8 field at all: old files and new fp32 files alike."""
    _, fp32, _ = int8_model
    assert not any("int8" in s.to_json() for s in fp32.architecture)
    assert not any(k.endswith(("weight_int8", "input_scale")) for k in fp32.tensors)
    assert "float_layers" not in fp32.info


def test_memory_table_counts_int8_weights_as_bytes(int8_model):
    _, fp32, int8 = int8_model
    rows32, rows8 = memory_table(fp32), memory_table(int8)
    assert rows8[0]["op"] == "conv (int8)" and rows32[0]["op"] == "conv"
    w = fp32.tensors["0.weight"].size
    assert rows8[0]["packed_bytes"] == w + 4 * (20 + 20 + 2) + 2  # int8 W, scales, bias, grids
    assert rows32[0]["packed_bytes"] == 4 * (w + 20)


@pytest.mark.parametrize("choice", ["int8", "fp8"])
def test_pack_stage_switch(choice, tmp_path, tiny_data_dir, monkeypatch, capsys):
    """``xnornet pack pack.float_layers=int8`` writes a file with int8 layers calibrated on the
    training images; any other value is one line naming the key, and no file."""
    models, out = tmp_path / "models", tmp_path / "out" / "bwn.packed"
    models.mkdir()
    net = random_lenet("bwn")
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, models / "bwn.ckpt")
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # cli.main rewrites it for Hydra
    monkeypatch.setenv(ERROR_LOG_ENV, str(tmp_path / "error.log"))
    overrides = [*tiny_overrides(tmp_path, "bwn"), f"packed={out}", f"pack.float_layers={choice}",
                 "pack.calibration_images=64"]  # fmt: skip
    if choice != "int8":
        with pytest.raises(SystemExit):
            cli.main(["pack", *overrides])
        assert "pack.float_layers must be one of ('fp32', 'int8'), got 'fp8'" in capsys.readouterr().err
        assert not out.exists()
        return
    cli.main(["pack", *overrides])
    model = load_packed(out)
    assert model.info["float_layers"] == "int8"
    assert [i for i, s in enumerate(model.architecture) if s.int8] == [0, len(model.architecture) - 1]
