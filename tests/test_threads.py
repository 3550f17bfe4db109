"""Threaded kernel calls give the same bits as one thread, and the busy-core harness measures.

The kernel hands its work out in claimed chunks, so which thread computes what changes from call
to call (kernels/xn_team.h); every output element is still computed by one code path, so the
result must not depend on it. The team back-off is switched off here (``fixed_teams``): on a
busy test machine it would otherwise run these calls on one thread, and the threaded paths would
go untested. Each test checks that teams really ran (``team_counts``).
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import signed_floats
from xnornet.benchmark.busy_core import bench_busy_core, busy_core, busy_core_ratios
from xnornet.benchmark.shapes import LayerShape
from xnornet.kernels import (
    BinaryConv2dLayer,
    BinaryConvWeights,
    BinaryLinearLayer,
    PackedColumns,
    im2col_bits,
    pack_bits,
    pack_nhwc,
    xnor_gemm,
)
from xnornet.kernels.ops import affine_sign_pack, bn_sign_pack, pool2d_nhwc
from xnornet.kernels.team import (
    fixed_teams,
    reset_teams,
    team_adaptive,
    team_counts,
    team_judgement,
    team_policy,
)

THREADS = [2, 3, 7]  # more threads than cores too: the teams are then oversubscribed


@pytest.fixture
def teams():
    """Every call runs with the threads it asks for; the counts start at zero."""
    with fixed_teams():
        yield


def same_at_every_thread_count(call, teams_run: bool = True) -> None:
    """``call(threads)`` returns the same arrays at 1 thread and at each of THREADS; unless the
    work is too small for a team (``teams_run=False``), some of its calls ran as teams."""
    one = call(1)
    before = team_counts()["team_calls"]
    for t in THREADS:
        for got, want in zip(call(t), one, strict=True):
            np.testing.assert_array_equal(got, want, err_msg=f"{t} threads")
    if teams_run:
        assert team_counts()["team_calls"] > before, "no call ran as a team: the threaded path went untested"


@pytest.mark.parametrize("m", [1, 7, 61, 300])
def test_gemm_and_pack_are_the_same_bits_at_any_thread_count(isa, teams, m):
    rng = np.random.default_rng(m)
    k = 1153  # 19 words, the last one partial
    a, b = signed_floats(rng, (m, k)), signed_floats(rng, (200, k))

    def call(t):
        a_bits, b_bits = pack_bits(a, threads=t), pack_bits(b, threads=t)
        return a_bits, b_bits, xnor_gemm(a_bits, b_bits, k, threads=t)

    same_at_every_thread_count(call, teams_run=m > 7)  # below: too little work to share


# (B, H, W, C, Cout, k, stride, padding): the implicit and the explicit im2col, word-aligned and
# not, an N that is not a multiple of 64 (the emitted bits are then ORed in atomically)
CONVS = [(4, 14, 14, 32, 24, 3, 1, 1), (2, 12, 12, 20, 50, 5, 1, 0), (3, 9, 9, 64, 128, 3, 2, 1),
         (1, 3, 3, 7300, 3, 3, 1, 1)]  # fmt: skip


@pytest.mark.parametrize("case", CONVS)
def test_conv_layers_are_the_same_bits_at_any_thread_count(isa, teams, case):
    b, h, w, c, cout, k, stride, padding = case
    rng = np.random.default_rng(sum(case))
    x, weight = signed_floats(rng, (b, h, w, c)), signed_floats(rng, (cout, c, k, k))
    weights = BinaryConvWeights.from_float(weight, stride, padding)
    alpha, bias = rng.random(cout, dtype=np.float32), rng.standard_normal(cout).astype(np.float32)
    sign = rng.random(c, dtype=np.float32) + 0.5, rng.standard_normal(c).astype(np.float32)
    emit = rng.random(cout, dtype=np.float32) + 0.5, rng.standard_normal(cout).astype(np.float32)
    packed = pack_nhwc(x)

    def call(t):
        dots = BinaryConv2dLayer(weights, threads=t)(x).copy()
        fused = BinaryConv2dLayer(weights, alpha, bias, relu=True, threads=t, sign=sign)(x).copy()
        emitted = BinaryConv2dLayer(weights, alpha, bias, threads=t, emit_sign=emit)(x)
        return dots, fused, emitted.bits.copy(), pack_nhwc(x, t).bits, im2col_bits(packed, weights, t)

    same_at_every_thread_count(call, teams_run=b * h * w > 9)  # 9 pixels: too little to share


@pytest.mark.parametrize("n", [64, 50])
def test_linear_layers_are_the_same_bits_at_any_thread_count(isa, teams, n):
    rng = np.random.default_rng(n)
    x, w = signed_floats(rng, (256, 800)), signed_floats(rng, (n, 800))
    columns = PackedColumns.from_bits(pack_bits(w), 800)
    alpha, bias = rng.random(n, dtype=np.float32), rng.standard_normal(n).astype(np.float32)
    emit = rng.random(n, dtype=np.float32) + 0.5, rng.standard_normal(n).astype(np.float32)

    def call(t):
        out = BinaryLinearLayer(columns, alpha, bias, relu=True, threads=t)(x).copy()
        emitted = BinaryLinearLayer(columns, alpha, bias, threads=t, emit_sign=emit)(x)
        return out, np.asarray(emitted).copy()

    same_at_every_thread_count(call)


def test_sign_packs_and_pooling_are_the_same_at_any_thread_count(isa, teams):
    rng = np.random.default_rng(5)
    x = signed_floats(rng, (8, 24, 24, 96))
    scale, shift = rng.random(96, dtype=np.float32) + 0.5, rng.standard_normal(96).astype(np.float32)

    def call(t):
        bits, absmean = bn_sign_pack(x, scale, shift, with_absmean=True, threads=t)
        pools = pool2d_nhwc(x, "max", 3, 2, 1, threads=t), pool2d_nhwc(x, "avg", 2, 2, threads=t)
        return bits, absmean, affine_sign_pack(x, scale, shift, threads=t), *pools

    same_at_every_thread_count(call)


MS, US = 1_000_000, 1_000
P = team_policy()


@pytest.mark.parametrize(
    "case,wall,alone,streak,window,want",
    [
        ("a team twice as fast as one thread", 1 * MS, 2 * MS, 0, P["min_ns"], 0),
        ("a small call whose team costs a few us", 60 * US, 100 * US, 0, P["min_ns"], 0),
        # a worker asleep after an idle pause wakes in 10-100 us on a quiet machine: no back-off
        ("a sleeping thread's wake-up, quiet machine", 150 * US, 60 * US, 3, P["min_ns"], 0),
        ("a team no faster than one thread, big call", 10 * MS, 10 * MS, 40, P["min_ns"], P["min_ns"]),
        # a thread sharing its core with another process waits a scheduler slice
        ("preempted after a healthy streak: news", 3 * MS, 200 * US, P["streak"], 64 * MS, P["min_ns"]),
        ("preempted again at the probe: 20× the loss", 3 * MS, 200 * US, 0, P["min_ns"], 56 * MS),
        ("preempted again, long window: doubled", 3 * MS, 200 * US, 1, 400 * MS, 800 * MS),
        ("never longer than the maximum", 3 * MS, 200 * US, 0, P["max_ns"], P["max_ns"]),
    ],
)
def test_the_back_off_decision_as_a_table(case, wall, alone, streak, window, want):
    """The kernel's own judgement of one team call (xn_team_judge), case by case: a quiet
    machine's hiccups never turn the team off; a busy core does, for longer while it stays."""
    assert team_judgement(wall, alone, streak, window) == want, case


def test_fixed_teams_switches_the_back_off_off_and_restores_it():
    assert team_adaptive()
    with fixed_teams():
        assert not team_adaptive()
        assert team_counts() == {"team_calls": 0, "held_up": 0, "ran_alone": 0}
    assert team_adaptive()
    reset_teams()
    assert team_counts() == {"team_calls": 0, "held_up": 0, "ran_alone": 0}


def test_busy_core_process_is_started_and_stopped_by_its_pid():
    with busy_core(settle=0.0) as proc:
        assert proc.poll() is None
    assert proc.poll() is not None


def test_busy_core_ratios_come_from_the_timings_of_both_phases():
    """Structure only: the machine is shared and noisy, so no timing is asserted, but each
    ratio must be the quotient of two real timings of its own phase."""
    calls = {1: 0, 2: 0}

    def layer_at(t):
        def run():
            calls[t] += 1
            return sum(range(2000))

        return run

    r = busy_core_ratios(layer_at, threads=2, rounds=2, settle=0.0)
    assert calls[1] > 4 and calls[2] > 4  # calibrated, then timed in both phases
    assert set(r["quiet_ms"]) == set(r["busy_ms"]) == {"1", "2"}
    assert all(v > 0 for phase in ("quiet_ms", "busy_ms") for v in r[phase].values())
    q, b = r["quiet_ms"], r["busy_ms"]
    assert r["quiet_thread_speedup"] == pytest.approx(q["1"] / q["2"], rel=0.01)
    assert r["busy_core_ratio"] == pytest.approx(b["2"] / b["1"], rel=0.01)
    assert set(r["team_counts"]) == {"quiet", "busy"} and r["team_policy"] == "adaptive"


@pytest.mark.parametrize("fixed", [False, True])
def test_bench_busy_core_times_a_real_layer(fixed):
    shape = LayerShape("tiny", "conv", batch=2, c_in=32, c_out=24, k=3, h=14, w=14, padding=1)
    r = bench_busy_core(shape, threads=2, rounds=1, settle=0.0, fixed=fixed)
    assert r["shape"] == "tiny" and r["threads"] == 2
    assert r["team_policy"] == ("fixed" if fixed else "adaptive")
    assert r["busy_ms"]["1"] > 0 and r["busy_ms"]["2"] > 0
    assert r["busy_core_ratio"] == pytest.approx(r["busy_ms"]["2"] / r["busy_ms"]["1"], rel=0.01)
    assert team_adaptive()  # fixed teams end with the measurement
