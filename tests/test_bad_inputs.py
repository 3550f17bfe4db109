"""The bad-input matrix: every stage and public API, fed inputs it must refuse.

Stage cases run the `xnornet <stage> ...` command's own code path (``xnornet.cli.main`` with the
arguments, Hydra parsing them) in this process; a representative few also run as a real
subprocess. Each must exit 1 with one line ``error: <stage>: ...`` that names the input, print
no traceback (the error log has it), and leave no output behind. API cases (kernels, engine,
file format) must raise a named TypeError/ValueError/XnornetError.
"""

from __future__ import annotations

import copy
import errno
import functools
import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

import xnornet.kernels as K
from conftest import CONF, compose_config, make_idx_mirror, synthetic_digits
from xnornet import cli
from xnornet.builders import build_net, input_shape
from xnornet.config_rules import RULES
from xnornet.data.npz import write_splits
from xnornet.errors import ERROR_LOG_ENV, XnornetError
from xnornet.files import write_metrics
from xnornet.kernels.ops import bn_sign_pack
from xnornet.packed import file_format
from xnornet.packed.engine import PackedEngine
from xnornet.packed.file_format import digest, load_packed, save_packed
from xnornet.packed.inference_form import pack_network

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- a workspace with real inputs


def save_ckpt(net: torch.nn.Module, path: Path) -> None:
    """A checkpoint as the train stage writes it: the LightningModule's state, the net under net."""
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, path)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """data/mnist (tiny), models/{xnor,bwn}.ckpt (random weights), models/xnor.packed, and a few
    broken variants of each."""
    root = tmp_path_factory.mktemp("ws")
    data = root / "data" / "mnist"
    data.mkdir(parents=True)
    for split, n, seed in (("train", 200, 0), ("test", 50, 1)):
        images, labels = synthetic_digits(n, seed)
        np.savez(data / f"{split}.npz", images=images, labels=labels)
    models = root / "models"
    models.mkdir()
    torch.manual_seed(0)
    for variant in ("xnor", "bwn"):
        cfg = compose_config([f"model={variant}"])
        net = build_net(cfg).eval()
        save_ckpt(net, models / f"{variant}.ckpt")
        if variant == "xnor":
            packed = pack_network(net, input_shape(cfg), variant=variant, network=cfg.net._target_)
            save_packed(packed, models / "xnor.packed")
            nan_net = build_net(cfg).eval()
            with torch.no_grad():
                next(nan_net.parameters())[0].fill_(float("nan"))
            save_ckpt(nan_net, models / "nan.ckpt")
    (root / "afile").write_text("a regular file where a directory is expected\n")
    return root


def bad_copy(ws: Path, name: str, mutate) -> Path:
    """A copy of models/xnor.packed with ``mutate(bytes) -> bytes`` applied."""
    path = ws / "bad" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(mutate((ws / "models" / "xnor.packed").read_bytes()))
    return path


def resealed(ws: Path, name: str, edit) -> Path:
    """A packed file whose metadata or tensors ``edit(meta, tensors)`` changed, its digest
    recomputed: it passes the checksum, so the check behind it is what refuses it."""
    model = load_packed(ws / "models" / "xnor.packed")
    meta = {"format": file_format.FORMAT, "version": str(file_format.VERSION)}
    tensors = dict(model.tensors)
    arch = [spec.to_json() for spec in model.architecture]  # the file's objects, to edit
    edit(meta, tensors, arch)
    import json

    arch_json, info = json.dumps(arch, sort_keys=True), json.dumps(model.info, sort_keys=True)
    meta.update(architecture=arch_json, info=info, sha256=digest(arch_json, info, tensors))
    from safetensors.numpy import save_file

    path = ws / "bad" / name
    path.parent.mkdir(exist_ok=True)
    save_file(tensors, str(path), metadata=meta)
    return path


def flip_bit(data: bytes) -> bytes:
    b = bytearray(data)
    b[len(b) - 40] ^= 0x10  # a bit inside the last tensor's bytes
    return bytes(b)


def write_npz(ws: Path, name: str, **arrays) -> Path:
    d = ws / "baddata" / name
    d.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        np.savez(d / f"{split}.npz", **arrays)
    return d


# ---------------------------------------------------------------- running a stage's command


def common(ws: Path, out: Path, variant: str = "xnor") -> list[str]:
    """Overrides that keep every output of a case under ``out`` (which must stay absent)."""
    return [
        f"model={variant}",
        f"paths.data_dir={ws}/data/mnist",
        f"paths.models_dir={ws}/models",
        f"paths.metrics_dir={out}/metrics",
        f"paths.plots_dir={out}/plots",
        f"packed={out}/out.packed",
        f"logger.tracking_uri=sqlite:///{out}/mlflow.db",
        f"logger.artifact_dir={out}/mlartifacts",
        "data.val_size=50",
        "train.max_epochs=1",
        "train.batch_size=50",
        "train.progress_bar=false",
        "train.threads=1",
    ]


def check_one_line(code, err: str, stage: str, match: str, log: Path) -> str:
    """Exit status 1, exactly one line ``error: <stage>: …`` (the last), naming ``match``, no
    traceback; the log has the traceback."""
    assert code == 1, err
    assert "Traceback" not in err and 'File "' not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    line = errors[0]
    assert line.startswith(f"error: {stage}: "), line
    assert match in line, line
    assert f"(traceback: {log})" in line, line
    assert "Traceback (most recent call last)" in log.read_text()
    return line


@functools.cache
def composed_base(group_choices: tuple[str, ...]) -> DictConfig:
    """The composed config of these group choices, once per test process."""
    return compose_config(list(group_choices))


def composed(overrides: list[str]) -> DictConfig:
    """What Hydra hands a stage for this command line: the group choices composed (cached), the
    values set on a copy as Hydra's override parser reads them."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    groups = [o for o in parsed if (CONF / o.key_or_group).is_dir()]
    cfg = copy.deepcopy(composed_base(tuple(o.input_line for o in groups)))
    for override in parsed:
        if override not in groups:
            OmegaConf.update(cfg, override.key_or_group, override.value(), force_add=False)
    return cfg


@pytest.fixture
def run_stage(tmp_path, monkeypatch, capsys, ws):
    """``run_stage(stage, *overrides, match=..., variant=..., command_line=False)``: the stage's
    app on the config Hydra composes for these overrides, or with ``command_line`` the command
    itself, in process. The command line costs three compositions (0.25–0.5 s each here), so
    only the cases about what it parses take it."""
    log = tmp_path / "log" / "error.log"
    monkeypatch.setenv(ERROR_LOG_ENV, str(log))
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # cli.main rewrites it for Hydra
    monkeypatch.chdir(tmp_path)  # evaluate writes reports/ in the working directory
    out = tmp_path / "out"

    def run(
        stage: str, *overrides: str, match: str, variant: str = "xnor", command_line: bool = False
    ) -> str:
        capsys.readouterr()
        args = [*common(ws, out, variant), *overrides]
        with pytest.raises(SystemExit) as exit_info:
            if command_line:
                cli.main([stage, *args])
            else:
                importlib.import_module(f"xnornet.stages.{stage}").main(composed(args))
        line = check_one_line(exit_info.value.code, capsys.readouterr().err, stage, match, log)
        # no partial output (atomic_path may leave an empty parent folder it made); the tracking
        # store is no output: a stage that fails after opening its run records it there as FAILED
        store = {out / "mlflow.db", out / "mlflow.db.lock"}
        written = [p for p in out.rglob("*") if not p.is_dir() and p not in store]
        assert not written, sorted(out.rglob("*"))
        assert not (tmp_path / "reports").exists()
        return line

    return run


def idx_args(mirror: dict) -> list[str]:
    args = ["data.source=idx", f"data.idx.base_url={mirror['idx']['base_url']}"]
    for key, entry in mirror["idx"]["files"].items():
        args += [f"data.idx.files.{key}.name={entry['name']}", f"data.idx.files.{key}.md5={entry['md5']}"]
    return args


# ---------------------------------------------------------------- config values and keys

# what the command line parses: a value of the wrong type, a key or group option that does not
# exist, the override grammar (stage, override, what the line must name)
COMMAND_LINE_CASES = [
    ("train", "train.lr=abc", "train.lr=abc: expected a number"),
    ("train", "train.batch_size=foo", "train.batch_size=foo: expected an integer"),
    ("train", "train.max_epochs=1.5", "train.max_epochs=1.5: expected an integer"),
    ("train", "train.lr=nan", "train.lr=nan: expected a finite number"),
    ("train", "train.lr=inf", "train.lr=inf: expected a finite number"),
    ("train", "train.clip_latent_weights=maybe", "train.clip_latent_weights=maybe: expected a boolean"),
    ("train", "data.mean=0.5", "data.mean=0.5: expected a list"),
    ("train", "trainn.lr=1", "trainn.lr is not a config key; did you mean train.lr?"),  # Hydra's error
    ("evaluate", "evaluate.thraeds=1", "did you mean evaluate.threads?"),  # a misspelt nested key
    ("train", "model=foo", "Could not find 'model/foo'"),  # an unknown group option
    ("train", "train.lr=[", "'['"),  # override syntax
    ("machine", "paths.metrics_dir={ws}/métriques", "quote it, e.g. paths.metrics_dir='"),  # non-ASCII
    ("bench", "bench.shapes=3", "bench.shapes=3: expected a list"),
]

# what a stage checks in the values it is given, however they came
VALUE_CASES = [
    ("train", "train.max_epochs=0", "train.max_epochs=0: expected an integer ≥ 1"),
    ("train", "data.val_size=100000", "data.val_size=100000"),
    ("train", "train.optimizer._target_=torch.optim.Nope", "train config invalid"),
    ("fetch", "data.name=foo", "data.name must be one of"),
    ("fetch", "data.source=foo", "data.source must be one of"),
    ("bench", "bench.shapes=[]", "bench.shapes=[]: expected a non-empty list"),
    ("bench", "bench.threads=[0]", "bench.threads=[0]: expected a non-empty list of integers ≥ 1"),
    ("bench_network", "bench_network.batches=[0]", "expected a non-empty list of integers ≥ 1"),
    ("evaluate", "evaluate.threads=0", "evaluate.threads=0: expected an integer ≥ 1 or 'all'"),
    ("evaluate", "evaluate.batch_size=-1", "evaluate.batch_size=-1: expected an integer ≥ 1"),
]


# ---------------------------------------------------------------- output locations and MLflow

LOCATION_CASES = [
    (
        "train",
        "paths.metrics_dir=/proc/xnornet/metrics",
        "paths.metrics_dir=/proc/xnornet/metrics: cannot write",
    ),
    ("train", "paths.models_dir={ws}/afile/models", "is a file; expected a directory"),
    ("machine", "paths.metrics_dir=/proc/xnornet", "paths.metrics_dir=/proc/xnornet: cannot write"),
    ("bench", "paths.plots_dir={ws}/afile", "paths.plots_dir={ws}/afile: is a file"),
    ("pack", "packed=/proc/xnornet/x.packed", "packed=/proc/xnornet/x.packed: cannot write"),
    ("train", "logger.tracking_uri=sqlite:////proc/xnornet/mlflow.db", "logger.tracking_uri=sqlite:////proc"),
    ("pack", "logger.tracking_uri=nosuchscheme://host/db", "MLflow cannot open this URI"),
    ("fetch", "logger.tracking_uri=sqlite:///{ws}", "is a directory; expected a sqlite database file"),
]


@pytest.mark.parametrize("stage,override,match", COMMAND_LINE_CASES)
def test_bad_command_line_is_one_line(run_stage, ws, stage, override, match):
    run_stage(stage, override.format(ws=ws), match=match.format(ws=ws), command_line=True)


@pytest.mark.parametrize("stage,override,match", VALUE_CASES + LOCATION_CASES)
def test_bad_config_value_or_location_is_one_line(run_stage, ws, stage, override, match):
    run_stage(stage, override.format(ws=ws), match=match.format(ws=ws))


# ---------------------------------------------------------------- every numeric key out of range

STAGE_OF = {"train": "train", "data": "train", "seed": "train", "bench": "bench",
            "bench_network": "bench_network", "evaluate": "evaluate"}  # fmt: skip


def numeric_cases() -> list[tuple[str, str, str]]:
    """Each numeric key at zero (where zero is out of range), negative, NaN and a wrong type."""
    cases = []
    for key, rule in RULES.items():
        name, each = key.removesuffix("[]"), key.endswith("[]")
        stage = STAGE_OF[name.split(".")[0]]
        values = ["-1", "nan", "abc"] + ([] if rule.accepts(0) else ["0"])
        for value in values:
            shown = f"[{value}]" if each and value != "abc" else value
            cases.append((stage, f"{name}={shown}", f"{name}={shown if value != 'nan' else ''}"))
    return cases


def out_of_range(case: tuple[str, str, str]) -> bool:
    return not case[1].endswith(("=abc", "=[abc]"))


@pytest.mark.parametrize("stage,override,match", [c for c in numeric_cases() if out_of_range(c)])
def test_numeric_key_out_of_range_is_one_line(run_stage, stage, override, match):
    """The range of every numeric key, on the composed config (the check reads the value, however
    it came)."""
    line = run_stage(stage, override, match=match)
    assert "expected" in line and "Error:" not in line, line  # names the range, not an exception


@pytest.mark.slow
@pytest.mark.parametrize("stage,override,match", [c for c in numeric_cases() if not out_of_range(c)])
def test_numeric_key_of_the_wrong_type_is_one_line(run_stage, stage, override, match):
    """A word for a number, typed on the command line: caught against the default's type."""
    line = run_stage(stage, override, match=match, command_line=True)
    assert "expected" in line and "Error:" not in line, line


# ---------------------------------------------------------------- output paths: refuse, never replace


def tree_state(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` with its kind, and a file's size and modification time: equal
    before and after a refused run means nothing was written, replaced or deleted (a folder's own
    time changes when the writability probe makes and removes its scratch folder there)."""
    state = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        is_file = p.is_file() and not p.is_symlink()
        state[str(p.relative_to(root))] = (
            p.is_dir(),
            p.is_symlink(),
            is_file and (st.st_size, st.st_mtime_ns),
        )
    return state


@pytest.fixture(scope="module")
def traps(ws: Path) -> Path:
    """Paths that no output may take: a link loop, and a folder where a metrics file would go."""
    loop = ws / "traps"
    loop.mkdir(exist_ok=True)
    for name in ("loop", "loop.packed"):
        if not (loop / name).is_symlink():
            (loop / name).symlink_to(loop / name)
    return loop


# (stage, override, what the line must name); {ws} is the workspace, {t} the traps folder
OUTPUT_CASES = [
    # pack's one file output: the data-loss case first (a folder of checkpoints)
    ("pack", "packed={ws}/models", "packed={ws}/models: expected a path ending in .packed"),
    ("pack", "packed={ws}/data.packed", "is a directory; expected a .packed file"),
    ("pack", "packed={ws}/models/bwn.ckpt", "expected a path ending in .packed"),
    ("pack", "packed={ws}/afile", "expected a path ending in .packed"),
    ("pack", "packed=''", "packed='': expected a path to a .packed file"),
    ("pack", "packed={t}/loop.packed", "does not resolve (a loop or a dangling link)"),
    ("pack", "packed={t}/loop/x.packed", "does not resolve (a loop or a dangling link)"),
]
for stage, keys in {
    "train": ("paths.models_dir", "paths.metrics_dir", "paths.plots_dir"),
    "pack": ("paths.models_dir",),
    "evaluate": ("paths.metrics_dir", "paths.models_dir"),
    "bench": ("paths.metrics_dir", "paths.plots_dir"),
    "bench_network": ("paths.metrics_dir", "paths.plots_dir"),
    "report": ("paths.metrics_dir", "paths.plots_dir"),
    "machine": ("paths.metrics_dir",),
    "fetch": ("paths.data_dir",),
}.items():
    for key in keys:
        OUTPUT_CASES += [
            (stage, f"{key}=''", f"{key}='': expected a directory path"),
            (stage, f"{key}={{t}}/loop", "does not resolve (a loop or a dangling link)"),
            (stage, f"{key}={{ws}}/models/xnor.packed", "is a file; expected a directory"),
            (stage, f"{key}=/proc/xnornet/{key}", "cannot write"),
        ]


# one of each kind of refused path, through the command line as a user types it
OUTPUT_CASES_ON_THE_COMMAND_LINE = [
    OUTPUT_CASES[0],  # pack, packed=<a folder of checkpoints>
    ("train", "paths.plots_dir=''", "paths.plots_dir='': expected a directory path"),
    ("evaluate", "paths.metrics_dir={t}/loop", "does not resolve (a loop or a dangling link)"),
    ("bench", "paths.plots_dir={ws}/models/xnor.packed", "is a file; expected a directory"),
    ("fetch", "paths.data_dir=/proc/xnornet/paths.data_dir", "cannot write"),
]


@pytest.mark.parametrize(
    "stage,override,match,command_line",
    [(*case, False) for case in OUTPUT_CASES] + [(*case, True) for case in OUTPUT_CASES_ON_THE_COMMAND_LINE],
)
def test_output_path_is_refused_and_nothing_changes(
    run_stage, ws, traps, stage, override, match, command_line
):
    """Every stage and path it writes, with every kind of path no output may take, on the composed
    config (what the stage does with the value); one of each kind also typed on the command line."""
    (ws / "data.packed").mkdir(exist_ok=True)  # a folder named like a packed file
    before = tree_state(ws)
    run_stage(
        stage, override.format(ws=ws, t=traps), match=match.format(ws=ws, t=traps), command_line=command_line
    )
    assert tree_state(ws) == before


def test_a_file_never_replaces_a_folder(tmp_path):
    """The last line of defence, for any output whatever its stage checked first."""
    (tmp_path / "m.json").mkdir()
    (tmp_path / "m.json" / "keep.ckpt").write_text("checkpoint")
    with pytest.raises(XnornetError, match=r"m.json: is a directory; expected a file this stage writes"):
        write_metrics(tmp_path / "m.json", {"a": 1})
    assert (tmp_path / "m.json" / "keep.ckpt").read_text() == "checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]  # no temporary folder left


def test_a_folder_replaces_only_its_own_earlier_output(tmp_path):
    images, labels = synthetic_digits(10)
    splits = {"train": (images, labels), "test": (images, labels)}
    write_splits(splits, tmp_path / "d")
    write_splits(splits, tmp_path / "d")  # its own output: replaced
    (tmp_path / "d" / "notes.txt").write_text("mine")
    with pytest.raises(XnornetError, match=r"holding files this stage does not write \(notes.txt\)"):
        write_splits(splits, tmp_path / "d")
    assert (tmp_path / "d" / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------- data files


def test_missing_data_file(run_stage, ws, tmp_path):
    (tmp_path / "empty").mkdir()
    run_stage("train", f"paths.data_dir={tmp_path}/empty", match="train.npz: not found")


@pytest.mark.parametrize(
    "name,make,match",
    [
        ("truncated", lambda p: p.write_bytes(p.read_bytes()[:300]), "not a valid dataset file"),
        ("garbage", lambda p: p.write_bytes(os.urandom(2000)), "not a valid dataset file"),
        ("float_images", None, "expected uint8 images"),
        ("no_labels", None, "not a valid dataset file"),
    ],
)
def test_corrupt_data_file(run_stage, ws, name, make, match):
    images, labels = synthetic_digits(60)
    if name == "float_images":
        d = write_npz(ws, name, images=images.astype(np.float32), labels=labels)
    elif name == "no_labels":
        d = write_npz(ws, name, images=images)
    else:
        d = write_npz(ws, name, images=images, labels=labels)
        for split in ("train", "test"):
            make(d / f"{split}.npz")
    run_stage("train", f"paths.data_dir={d}", match=match)


@pytest.mark.parametrize("fault", ["checksum", "truncated_gzip", "missing_file"])
def test_bad_download_is_one_line(run_stage, tmp_path, fault):
    mirror_dir = tmp_path / "mirror"
    mirror_dir.mkdir()
    mirror = make_idx_mirror(mirror_dir)
    entry = mirror["idx"]["files"]["train_images"]
    if fault == "checksum":
        entry["md5"] = "0" * 32
        match = "md5 mismatch"
    elif fault == "truncated_gzip":
        f = mirror_dir / entry["name"]
        f.write_bytes(f.read_bytes()[:-30])
        import hashlib

        entry["md5"] = hashlib.md5(f.read_bytes()).hexdigest()  # a truncated copy someone re-checksummed
        match = "not a valid gzip file"
    else:
        (mirror_dir / entry["name"]).unlink()
        match = "could not download"
    run_stage("fetch", *idx_args(mirror), f"paths.data_dir={tmp_path}/out/data", match=match)


def test_full_disk_while_fetching_leaves_nothing(run_stage, tmp_path, monkeypatch):
    """ENOSPC from the write of the second split: the data folder is written whole or not at all."""
    mirror_dir = tmp_path / "mirror"
    mirror_dir.mkdir()
    mirror = make_idx_mirror(mirror_dir)
    real_savez, calls = np.savez, []

    def savez_out_of_space(path, **arrays):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_savez(path, **arrays)

    monkeypatch.setattr(np, "savez", savez_out_of_space)
    run_stage("fetch", *idx_args(mirror), f"paths.data_dir={tmp_path}/out/data", match="no space left")


# ---------------------------------------------------------------- checkpoints for pack


def test_missing_checkpoint(run_stage, tmp_path):
    (tmp_path / "nomodels").mkdir()
    run_stage("pack", f"paths.models_dir={tmp_path}/nomodels", match="checkpoint not found")


def test_foreign_checkpoint(run_stage, ws, tmp_path):
    d = tmp_path / "foreign"
    d.mkdir()
    torch.save({"state_dict": {"net.something.else": torch.zeros(3)}}, d / "xnor.ckpt")
    run_stage("pack", f"paths.models_dir={d}", match="does not match")


def test_checkpoint_of_another_network(run_stage, ws, tmp_path):
    d = tmp_path / "other"
    d.mkdir()
    (d / "xnor.ckpt").write_bytes((ws / "models" / "xnor.ckpt").read_bytes())
    run_stage("pack", f"paths.models_dir={d}", "net=nin", match="does not match")


def test_corrupt_checkpoint(run_stage, tmp_path):
    d = tmp_path / "corrupt"
    d.mkdir()
    (d / "xnor.ckpt").write_bytes(os.urandom(5000))
    run_stage("pack", f"paths.models_dir={d}", match="not a readable checkpoint")


def test_pickle_checkpoint_is_refused(run_stage, tmp_path):
    """weights_only loading: a checkpoint that would run code on load is refused, not run."""
    d = tmp_path / "evil"
    d.mkdir()
    torch.save({"state_dict": {}, "x": _Evil()}, d / "xnor.ckpt")
    run_stage("pack", f"paths.models_dir={d}", match="not a readable checkpoint")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_nan_weights_in_checkpoint(run_stage, ws, tmp_path):
    d = tmp_path / "nan"
    d.mkdir()
    (d / "xnor.ckpt").write_bytes((ws / "models" / "nan.ckpt").read_bytes())
    run_stage("pack", f"paths.models_dir={d}", match="NaN or infinite values")


def test_pack_of_a_model_without_binary_weights(run_stage):
    run_stage("pack", match="has no binary weights to pack", variant="fp")


def test_full_disk_while_packing_leaves_nothing(run_stage, monkeypatch):
    def save_file_out_of_space(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)

    monkeypatch.setattr(file_format, "save_file", save_file_out_of_space)
    run_stage("pack", match="no space left on the device")


# ---------------------------------------------------------------- packed files for evaluate

PACKED_CASES = {  # name → (make(ws) → path, what the line must say)
    "missing": (lambda ws: ws / "bad" / "nope.packed", "packed model not found"),
    "empty": (lambda ws: bad_copy(ws, "empty.packed", lambda b: b""), "truncated or corrupt"),
    "truncated": (
        lambda ws: bad_copy(ws, "trunc.packed", lambda b: b[: len(b) // 2]),
        "truncated or corrupt",
    ),
    "bit_flipped": (lambda ws: bad_copy(ws, "flip.packed", flip_bit), "SHA-256 mismatch"),
    "header_garbage": (
        lambda ws: bad_copy(ws, "hdr.packed", lambda b: b[:8] + b"\xff" * 16 + b[24:]),
        "truncated or corrupt",
    ),
    "wrong_version": (
        lambda ws: resealed(ws, "v1.packed", lambda m, t, a: m.update(version="1")),
        "format version '1'",
    ),
    "foreign_format": (
        lambda ws: resealed(ws, "fmt.packed", lambda m, t, a: m.update(format="onnx")),
        "not an xnornet-packed file",
    ),
    "missing_tensor": (
        lambda ws: resealed(ws, "lost.packed", lambda m, t, a: t.pop(sorted(t)[0])),
        "do not match the architecture",
    ),
    "unknown_op": (
        lambda ws: resealed(ws, "op.packed", lambda m, t, a: a[0].update(op="lstm")),
        "invalid architecture metadata",
    ),
    "nan_alpha": (
        lambda ws: resealed(
            ws,
            "nan.packed",
            lambda m, t, a: t.update({k: np.full_like(t[k], np.nan) for k in t if k.endswith("alpha")}),
        ),
        "NaN or infinite values",
    ),
}


@pytest.mark.parametrize("name", sorted(PACKED_CASES))
def test_bad_packed_file_is_one_line(run_stage, ws, name):
    make, match = PACKED_CASES[name]
    run_stage("evaluate", f"packed={make(ws)}", match=match)


def test_packed_file_of_another_architecture(run_stage, ws, tmp_path):
    """An xnor file evaluated as the bwn model: a valid file, but not this config's network."""
    run_stage("evaluate", f"packed={ws}/models/xnor.packed", match="architecture is not the bwn model",
              variant="bwn")  # fmt: skip


# ---------------------------------------------------------------- the real command, as a user runs it

SUBPROCESS_CASES = [  # a config value of the wrong type, and a corrupt file: the two error paths
    ("train", ["train.lr=abc"], "train.lr=abc"),
    ("evaluate", ["packed={ws}/bad/flip.packed"], "SHA-256 mismatch"),
]


@pytest.mark.slow
def test_real_cli_prints_one_line_and_no_traceback(ws, tmp_path):
    bad_copy(ws, "flip.packed", flip_bit)
    env = {**os.environ, ERROR_LOG_ENV: str(tmp_path / "error.log")}
    env.pop("HYDRA_FULL_ERROR", None)
    for stage, args, match in SUBPROCESS_CASES:
        args = [a.format(ws=ws) for a in args]
        out = tmp_path / "out"
        proc = subprocess.run([sys.executable, "-m", "xnornet", stage, *common(ws, out), *args],
                              capture_output=True, text=True, cwd=tmp_path, env=env)  # fmt: skip
        check_one_line(proc.returncode, proc.stderr, stage, match, tmp_path / "error.log")
        assert not out.exists() and not (tmp_path / "reports").exists()


@pytest.mark.parametrize("override", ["train.lr=abc", "trainn.lr=1"])
def test_full_error_raises_the_exception(ws, tmp_path, monkeypatch, override):
    """HYDRA_FULL_ERROR=1, Hydra's own switch, lets the exception (and its traceback) through,
    for the stage's errors and for Hydra's compose errors alike."""
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    with pytest.raises(Exception, match=override.split("=")[0]):
        cli.main(["train", *common(ws, tmp_path / "out"), override])
    assert os.environ["HYDRA_FULL_ERROR"] == "1"


def test_keyboard_interrupt_passes_through(ws, tmp_path, monkeypatch):
    import xnornet.stages as stages

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(stages, "check_tracking_uri", interrupted)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    with pytest.raises(KeyboardInterrupt):
        cli.main(["pack", *common(ws, tmp_path / "out")])
    assert "HYDRA_FULL_ERROR" not in os.environ


# ---------------------------------------------------------------- public APIs: kernels and engine


def f32(*shape) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def bits(*shape) -> np.ndarray:
    return np.zeros(shape, np.uint64)


W = K.BinaryConvWeights.from_float(f32(4, 3, 3, 3))
X = K.pack_nhwc(f32(1, 6, 6, 3))
COLS = K.PackedColumns.from_bits(bits(5, 2), 100)

KERNEL_CASES = {  # entry point · fault → (call, error, match)
    "pack_bits·dtype": (lambda: K.pack_bits(f32(2, 8).astype(np.float64)), TypeError, "dtype float32"),
    "pack_bits·list": (lambda: K.pack_bits([[1.0, -1.0]]), TypeError, "numpy array"),
    "pack_bits·strided": (lambda: K.pack_bits(f32(4, 8)[:, ::2]), ValueError, "C-contiguous"),
    "pack_bits·scalar": (lambda: K.pack_bits(np.ones((), np.float32)), ValueError, "dimensions"),
    "pack_bits·empty": (lambda: K.pack_bits(f32(2, 0)), ValueError, "non-empty"),
    "pack_nhwc·dtype": (lambda: K.pack_nhwc(f32(1, 4, 4, 2).astype(np.float16)), TypeError, "dtype float32"),
    "pack_nhwc·3d": (lambda: K.pack_nhwc(f32(4, 4, 2)), ValueError, "4 dimensions"),
    "pack_nhwc·strided": (lambda: K.pack_nhwc(f32(1, 4, 8, 2)[:, :, ::2]), ValueError, "C-contiguous"),
    "pack_nhwc·nchw_view": (
        lambda: K.pack_nhwc(f32(1, 2, 4, 4).transpose(0, 2, 3, 1)),
        ValueError,
        "C-contiguous",
    ),
    "pack_nhwc·empty": (lambda: K.pack_nhwc(f32(0, 4, 4, 2)), ValueError, "non-empty"),
    "xnor_gemm·dtype": (
        lambda: K.xnor_gemm(bits(2, 2).astype(np.int64), bits(3, 2), 100),
        TypeError,
        "a_bits",
    ),
    "xnor_gemm·words": (lambda: K.xnor_gemm(bits(2, 2), bits(3, 1), 64), ValueError, "words per row"),
    "xnor_gemm·k_float": (
        lambda: K.xnor_gemm(bits(2, 2), bits(3, 2), 100.0),
        TypeError,
        "k must be an integer",
    ),
    "xnor_gemm·strided": (
        lambda: K.xnor_gemm(bits(2, 4)[:, ::2], bits(3, 2), 100),
        ValueError,
        "C-contiguous",
    ),
    "gemm_packed·columns": (lambda: K.gemm_packed(bits(2, 2), bits(5, 2)), TypeError, "PackedColumns"),
    "gemm_packed·forged_panels": (
        lambda: K.gemm_packed(bits(2, 2), K.PackedColumns(bits(1, 2, 16), 40, 100)),
        ValueError,
        "columns.panels must have shape",
    ),
    "gemm_packed·forged_k": (
        lambda: K.gemm_packed(bits(2, 2), K.PackedColumns(bits(1, 2, 16), 5, 1000)),
        ValueError,
        "columns.k=1000",
    ),
    "gemm_packed·alpha_size": (
        lambda: K.gemm_packed(bits(2, 2), COLS, alpha=np.ones(4, np.float32)),
        ValueError,
        "alpha must have 5",
    ),
    "gemm_packed·residual": (
        lambda: K.gemm_packed(bits(2, 2), COLS, alpha=np.ones(5, np.float32), residual=f32(3, 5)),
        ValueError,
        "residual",
    ),
    "binary_linear·padding": (
        lambda: K.binary_linear(bits(2, 2) + np.uint64(1 << 63), COLS, np.ones(5, np.float32)),
        ValueError,
        "padding bits",
    ),
    "from_float·5d": (lambda: K.BinaryConvWeights.from_float(f32(1, 4, 3, 3, 3)), ValueError, "4 dimensions"),
    "from_float·nan": (
        lambda: K.BinaryConvWeights.from_float(np.full((2, 3, 3, 3), np.nan, np.float32)),
        ValueError,
        "NaN",
    ),
    "from_bits·layout": (
        lambda: K.BinaryConvWeights.from_bits(bits(4, 5), 3, (3, 3), 1, 0),
        ValueError,
        "words",
    ),
    "from_bits·geometry": (
        lambda: K.BinaryConvWeights.from_bits(bits(4, 3), 3, (3, 3), 0, 0),
        ValueError,
        "geometry",
    ),
    "binary_conv2d·array": (lambda: K.binary_conv2d(f32(1, 6, 6, 3), W), TypeError, "PackedActivations"),
    "binary_conv2d·weights": (lambda: K.binary_conv2d(X, f32(4, 3, 3, 3)), TypeError, "BinaryConvWeights"),
    "binary_conv2d·channels": (
        lambda: K.binary_conv2d(K.pack_nhwc(f32(1, 6, 6, 5)), W),
        ValueError,
        "channels",
    ),
    "binary_conv2d·too_small": (
        lambda: K.binary_conv2d(K.pack_nhwc(f32(1, 2, 2, 3)), W),
        ValueError,
        "smaller",
    ),
    "binary_conv2d·forged_x": (
        lambda: K.binary_conv2d(K.PackedActivations(bits(2, 1), 1, 60, 60, 3), W),
        ValueError,
        "x.bits has shape",
    ),
    "binary_conv2d·row_scale": (
        lambda: K.binary_conv2d(X, W, np.ones(4, np.float32), None, np.ones(3, np.float32)),
        ValueError,
        "row_scale",
    ),
    "im2col_bits·negative": (
        lambda: K.im2col_bits(K.PackedActivations(bits(6, 1), 1, 6, -6, 3), W),
        ValueError,
        "positive integers",
    ),
    "bn_sign_pack·scale": (
        lambda: bn_sign_pack(f32(2, 4, 3), f32(4), f32(3)),
        ValueError,
        "scale must have 3",
    ),
    "bn_sign_pack·empty_channels": (lambda: bn_sign_pack(f32(2, 0), f32(0), f32(0)), ValueError, "non-empty"),
}


@pytest.mark.parametrize("case", sorted(KERNEL_CASES))
def test_kernel_entry_point_refuses_bad_argument(case):
    call, error, match = KERNEL_CASES[case]
    with pytest.raises(error, match=match):
        call()


@pytest.fixture(scope="module")
def engine(ws) -> PackedEngine:
    return PackedEngine(load_packed(ws / "models" / "xnor.packed"), threads=1)


@pytest.mark.parametrize(
    "make,error,match",
    [
        (lambda: f32(2, 1, 32, 32), ValueError, r"shape \(B, 1, 28, 28\)"),
        (lambda: f32(2, 28, 28), ValueError, "shape"),
        (lambda: f32(2, 1, 28, 28).astype(np.float64), TypeError, "float32"),
        (lambda: f32(2, 1, 28, 28).tolist(), TypeError, "float32"),
        (
            lambda: np.where(np.eye(28, dtype=bool), np.nan, f32(2, 1, 28, 28)).astype(np.float32),
            ValueError,
            "NaN",
        ),
        (lambda: np.full((1, 1, 28, 28), np.inf, np.float32), ValueError, "infinite"),
    ],
    ids=["wrong_size", "3d", "float64", "list", "nan", "inf"],
)
def test_engine_refuses_bad_input(engine, make, error, match):
    with pytest.raises(error, match=match):
        engine(make())


def test_save_packed_refuses_nan_weights_and_writes_nothing(ws, tmp_path):
    model = load_packed(ws / "models" / "xnor.packed")
    name = next(k for k in model.tensors if model.tensors[k].dtype == np.float32)
    model.tensors[name] = np.full_like(model.tensors[name], np.inf)
    with pytest.raises(XnornetError, match=f"{name} has .* NaN or infinite"):
        save_packed(model, tmp_path / "x.packed")
    assert list(tmp_path.iterdir()) == []
