"""Packed file and engine: same predictions as PyTorch, exact sizes, and a loader that refuses
every truncated, corrupted or foreign file with one clear error."""

from __future__ import annotations

import copy
import json
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from conftest import compose_config, quiet_trainer, tiny_overrides
from xnornet.benchmark.network import random_nin
from xnornet.builders import build_datamodule, build_module, build_net
from xnornet.errors import XnornetError
from xnornet.packed.agreement import agreement
from xnornet.packed.engine import PackedEngine, load_engine
from xnornet.packed.file_format import FORMAT, VERSION, digest, load_packed, save_packed
from xnornet.packed.inference_form import check_architecture, pack_network
from xnornet.packed.memory import memory_table

VARIANTS = {
    "bwn": ["model=bwn"],
    "xnor": ["model=xnor"],
    "xnor_scaled": ["model=xnor", "model.binarization.scale_activations=true"],
    "xnor_paper_grad": ["model=xnor", "model.binarization.weight_grad=paper"],
    "xnor_first_last": ["model=xnor", "model.binarization.first_last_binary=true"],
    "xnor_centred": ["model=xnor", "model.binarization.center_weights=true"],  # folded before packing
    "bwn_centred": ["model=bwn", "model.binarization.center_weights=true"],
    "xnor_shift_bn": ["model=xnor", "model.bn=shift"],  # folds into the same threshold form
    "bwn_shift_bn": ["model=bwn", "model.bn=shift"],
    "xnor_shift_all": [
        "model=xnor",
        "model.bn=shift",
        "train/optimizer=shift_adamax",
        "model.binarization.binary_gradients=true",
    ],
}


def trained_net(tmp_path, overrides: list[str]) -> torch.nn.Module:
    """A LeNet-5 trained for a few real steps, so BN statistics and weights are not trivial."""
    cfg = compose_config([*tiny_overrides(tmp_path, "xnor"), *overrides])
    torch.manual_seed(0)
    net = build_net(cfg)
    trainer = quiet_trainer(max_steps=6, limit_val_batches=0)
    trainer.fit(build_module(cfg, net), datamodule=build_datamodule(cfg))
    return net.eval()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_engine_matches_pytorch(variant, tmp_path, tiny_data_dir):
    """Against the torch model evaluated in float64: torch's own float32 sums round, and at a
    threshold that can flip a sign the engine's exact integer dots do not."""
    net = trained_net(tmp_path, VARIANTS[variant])
    path = tmp_path / f"{variant}.packed"
    save_packed(pack_network(net, (1, 28, 28), variant=variant), path)
    engine = load_engine(path, threads=2)
    x = np.random.default_rng(0).standard_normal((300, 1, 28, 28), dtype=np.float32)
    with torch.no_grad():
        reference = copy.deepcopy(net).double()(torch.from_numpy(x).double()).numpy()
    ours = engine(x)
    labels = reference.argmax(1)
    stats = agreement(ours, reference, labels, tol=1e-5)
    assert stats["disagreements"] == stats["tie_disagreements"]
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4)


def test_nin_engine_matches_pytorch():
    net = random_nin()
    engine = PackedEngine(pack_network(net, (3, 32, 32)), threads=2)
    x = np.random.default_rng(1).standard_normal((4, 3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        reference = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(engine(x), reference, rtol=1e-4, atol=1e-4)


@pytest.fixture
def packed_file(tmp_path):
    torch.manual_seed(0)
    net = build_net(compose_config(["model=xnor"])).eval()
    path = tmp_path / "m.packed"
    save_packed(pack_network(net, (1, 28, 28), variant="xnor"), path)
    return path, net


def test_binary_layers_are_32x_smaller_and_the_file_20x(packed_file):
    path, net = packed_file
    model = load_packed(path)
    for row in memory_table(model)[:-1]:
        if row["params_1bit"]:
            bits = row["packed_bytes"] - 4 * row["params_32bit"]
            assert 31.9 < 4 * row["params_1bit"] / bits <= 32.0
    float_bytes = sum(4 * t.numel() for t in net.state_dict().values() if t.is_floating_point())
    assert float_bytes / path.stat().st_size >= 20.0


def test_wrong_architecture_is_named(packed_file, tmp_path):
    path, _ = packed_file
    other = build_net(compose_config(["model=bwn"])).eval()
    with pytest.raises(XnornetError, match="architecture is not the bwn model"):
        check_architecture(other, load_packed(path).architecture, (1, 28, 28), path, "bwn")


def rewrite(path, *, metadata_update=None, tensors_update=None):
    model = load_packed(path)
    header_len = struct.unpack("<Q", path.read_bytes()[:8])[0]
    meta = json.loads(path.read_bytes()[8 : 8 + header_len])["__metadata__"]
    tensors = {**model.tensors, **(tensors_update or {})}
    meta.update(metadata_update or {})
    save_file(tensors, str(path), metadata=meta)


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "truncated or corrupt"),
        (lambda p: p.write_bytes(p.read_bytes()[:5]), "truncated or corrupt"),
        (lambda p: p.write_bytes(b""), "truncated or corrupt"),
        (lambda p: p.write_bytes(p.read_bytes()[:-1] + bytes([p.read_bytes()[-1] ^ 1])), "SHA-256 mismatch"),
        (lambda p: rewrite(p, metadata_update={"version": "99"}), "format version '99'"),
        (lambda p: rewrite(p, metadata_update={"info": '{"variant": "bwn"}'}), "SHA-256 mismatch"),
        (lambda p: rewrite(p, metadata_update={"format": "other"}), "not an xnornet-packed file"),
        (lambda p: rewrite(p, tensors_update={"9.alpha": np.ones(3, np.float32)}), "SHA-256 mismatch"),
        (lambda p: p.unlink(), "not found"),
    ],
)
def test_bad_files_get_one_clear_error(packed_file, mutate, match):
    path, _ = packed_file
    mutate(path)
    with pytest.raises(XnornetError, match=match) as info:
        load_packed(path)
    assert str(path) in str(info.value)


def test_consistent_but_wrong_shapes_are_refused(packed_file):
    """A file whose digest is right but whose tensors do not fit its architecture."""
    path, _ = packed_file
    model = load_packed(path)
    tensors = {**model.tensors, "4.alpha": np.ones(3, np.float32)}
    arch = json.dumps([s.to_json() for s in model.architecture], sort_keys=True)
    info = json.dumps(model.info)
    meta = {"format": FORMAT, "version": str(VERSION), "architecture": arch, "info": info,
            "sha256": digest(arch, info, tensors)}  # fmt: skip
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(XnornetError, match="4.alpha is float32"):
        load_packed(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_files_are_refused_or_unchanged(packed_file, data, tmp_path_factory):
    """Every mutation is refused with the one clear error, or it touched nothing the digest
    covers: what loads is then the original model exactly."""
    path, _ = packed_file
    original = load_packed(path)
    blob = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "truncate", "insert"]))
        pos = data.draw(st.integers(0, max(len(blob) - 1, 0)))
        if kind == "flip" and blob:
            blob[pos] ^= data.draw(st.integers(1, 255))
        elif kind == "truncate":
            del blob[pos:]
        else:
            blob[pos:pos] = data.draw(st.binary(min_size=1, max_size=16))
    target = tmp_path_factory.mktemp("fuzz") / "m.packed"
    target.write_bytes(bytes(blob))
    try:
        loaded = load_packed(target)
    except XnornetError:
        return
    assert loaded.architecture == original.architecture and loaded.info == original.info
    assert loaded.tensors.keys() == original.tensors.keys()
    for name, tensor in original.tensors.items():
        assert loaded.tensors[name].dtype == tensor.dtype
        np.testing.assert_array_equal(loaded.tensors[name], tensor)


def test_engine_rejects_bad_input(packed_file):
    path, _ = packed_file
    engine = load_engine(path)
    with pytest.raises(TypeError, match="float32"):
        engine(np.zeros((2, 1, 28, 28)))
    with pytest.raises(ValueError, match=r"shape \(B, 1, 28, 28\)"):
        engine(np.zeros((2, 1, 32, 32), np.float32))
