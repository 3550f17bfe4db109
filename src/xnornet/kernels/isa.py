"""Which instruction-set path the kernel runs, and how a user forces a lower one.

The extension reports the best path the CPU supports; before first use each SIMD path is
checked against the numpy reference on random data, so a miscompiled or mis-detected path
falls back (with a warning) instead of returning wrong answers.
"""

from __future__ import annotations

import functools
import os
import warnings

import numpy as np

from xnornet.kernels import _xnor
from xnornet.kernels.reference import pack_bits_ref, xnor_gemm_ref

# index = the code the C side uses (kernels/xn_dispatch.h)
ISAS = ("generic", "scalar", "avx2", "avx512-vpopcntdq")
ENV_VAR = "XNORNET_ISA"


def _self_test(code: int) -> bool:
    rng = np.random.default_rng(code)
    x = rng.standard_normal((13, 200), dtype=np.float32)
    words = np.zeros((13, 4), dtype=np.uint64)
    _xnor.pack_rows(code, x, 200, words, 1)
    if not np.array_equal(words, pack_bits_ref(x)):
        return False
    a, b = words[:7], words[7:]
    panels = np.zeros((1, 4, 16), dtype=np.uint64)
    panels[0, :, : len(b)] = b.T
    out = np.empty((7, len(b)), dtype=np.int32)
    _xnor.bgemm_i32(code, a, panels, len(b), 200, None, out, 1)
    return bool(np.array_equal(out, xnor_gemm_ref(a, b, 200)))


@functools.cache
def _verified_best() -> int:
    best = _xnor.cpu_isa()
    for code in range(best, 0, -1):
        if _self_test(code):
            return code
        warnings.warn(f"xnornet kernel: {ISAS[code]} path failed its self-test", stacklevel=2)
    return 0


def available_isas() -> list[str]:
    """Every path this machine can run, best first."""
    return [ISAS[c] for c in range(_verified_best(), -1, -1)]


def isa_code() -> int:
    """The path to run now: the best one, or the lower one ``XNORNET_ISA`` asks for."""
    best = _verified_best()
    wanted = os.environ.get(ENV_VAR, "").strip()
    if not wanted:
        return best
    if wanted not in ISAS:
        raise ValueError(f"{ENV_VAR}={wanted!r} is not one of {', '.join(ISAS)}")
    code = ISAS.index(wanted)
    if code > best:
        raise ValueError(f"{ENV_VAR}={wanted!r}: this CPU supports at most {ISAS[best]!r}")
    return code


def kernel_isa() -> str:
    """Name of the path the kernel runs: avx512-vpopcntdq, avx2, scalar or generic."""
    return ISAS[isa_code()]
