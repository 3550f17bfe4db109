"""Which instruction-set path the kernel runs, and how a user forces a lower one.

The extension reports the best path the CPU supports; before first use each SIMD path is
checked against the numpy reference on random data, so a miscompiled or mis-detected path
falls back (with a warning) instead of returning wrong answers. A path forced with
``XNORNET_ISA`` is checked the same way before it runs.
"""

from __future__ import annotations

import functools
import os
import warnings

import numpy as np

from xnornet.kernels import _xnor
from xnornet.kernels.panels import gemm_operand, panel_layout
from xnornet.kernels.reference import pack_bits_ref, xnor_gemm_ref

# index = the code the C side uses (kernels/xn_dispatch.h)
ISAS = ("generic", "scalar", "avx2", "avx512-vpopcntdq")
# Not a CPU path: the AVX2 GEMM on whole bytes that the nibble planes replaced for most shapes
# (XN_ISA_AVX2_LOOKUP). It runs wherever avx2 does: by default for streaming GEMMs, few rows
# against weights past the caches (PackedColumns.path), and beside the planes in the bench.
COMPARISON_ISAS = {"avx2-lookup": (4, "avx2")}
ENV_VAR = "XNORNET_ISA"


@functools.cache
def _self_test(code: int) -> bool:
    """Pack, then GEMM with the B operand the path reads (panels.gemm_operand), over two short
    row blocks, both 8-column halves of a short panel and, at the second K, several K chunks of
    the AVX2 kernel."""
    rng = np.random.default_rng(code)
    for k in (200, 2 * 64 * _xnor.PLANES_CHUNK_WORDS + 65):
        x = rng.standard_normal((20, k), dtype=np.float32)
        words = np.zeros((20, -(-k // 64)), dtype=np.uint64)
        _xnor.pack_rows(code, x, k, words, 1)
        if not np.array_equal(words, pack_bits_ref(x)):
            return False
        a, b = words[:7], words[7:]
        out = np.empty((7, len(b)), dtype=np.int32)
        _xnor.bgemm_i32(code, a, gemm_operand(panel_layout(b), code), len(b), k, None, out, 1)
        if not np.array_equal(out, xnor_gemm_ref(a, b, k)):
            return False
    return True


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


def comparison_isas() -> list[str]:
    """The former kernels this machine can still run for a side-by-side timing."""
    best = _verified_best()
    return [name for name, (_, base) in COMPARISON_ISAS.items() if ISAS.index(base) <= best]


def _code(name: str) -> int:
    return COMPARISON_ISAS[name][0] if name in COMPARISON_ISAS else ISAS.index(name)


def isa_code() -> int:
    """The path to run now: the best one, or the lower one ``XNORNET_ISA`` asks for."""
    return _code_for(os.environ.get(ENV_VAR, "").strip())


@functools.cache
def _code_for(wanted: str) -> int:
    """isa_code for one value of XNORNET_ISA, checked once (every layer call asks)."""
    best = _verified_best()
    if not wanted:
        return best
    if wanted not in ISAS and wanted not in COMPARISON_ISAS:
        raise ValueError(f"{ENV_VAR}={wanted!r} is not one of {', '.join([*ISAS, *COMPARISON_ISAS])}")
    base = COMPARISON_ISAS[wanted][1] if wanted in COMPARISON_ISAS else wanted
    if ISAS.index(base) > best:
        raise ValueError(f"{ENV_VAR}={wanted!r}: this CPU supports at most {ISAS[best]!r}")
    code = _code(wanted)
    if code not in (best, 0) and not _self_test(code):
        raise ValueError(f"{ENV_VAR}={wanted!r}: that path failed its self-test on this CPU")
    return code


AVX2_CODE, AVX2_LOOKUP_CODE = ISAS.index("avx2"), COMPARISON_ISAS["avx2-lookup"][0]
# Below this many rows and above this many bytes of nibble planes, the AVX2 GEMM is bound by
# streaming its weights (gemm_path): measured on a Zen 4, 1 thread, N = 4096: planes faster at
# M = 1 with 4 MB of planes (1.11×) and at M = 16 with 9.4 MB (1.02×), slower at M = 1 with
# 9.4 MB (0.96×) and 25.7 MB (0.44×).
STREAMING_ROWS, STREAMING_BYTES = 16, 8 << 20


def gemm_path(isa: int, m: int, panel_bytes: int) -> int:
    """The GEMM path for ``m`` rows against ``panel_bytes`` of packed weights on path ``isa``:
    the one place beside the ISA choice that picks a kernel (kernels/xn_dispatch.h only maps the
    code to its functions). The AVX2 nibble planes read twice the bytes of the panels; with few
    rows to share each weight (a batch-1 fully connected layer) and weights past the caches, the
    GEMM streams them from memory, and the lookup kernel on the plain panels is faster (VGG fc6
    at batch 1 on a Zen 4: planes 0.44×, 1.76 ms against 0.77 ms)."""
    if isa == AVX2_CODE and m < STREAMING_ROWS and 2 * panel_bytes > STREAMING_BYTES:
        return AVX2_LOOKUP_CODE
    return isa


def kernel_isa() -> str:
    """Name of the path the kernel runs: avx512-vpopcntdq, avx2, scalar or generic."""
    code = isa_code()
    return next((n for n, (c, _) in COMPARISON_ISAS.items() if c == code), None) or ISAS[code]
