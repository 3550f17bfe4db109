"""The measured per-core limit of the binary MAC step, to express kernel speed as a fraction."""

from __future__ import annotations

from xnornet.kernels import _xnor
from xnornet.kernels.isa import isa_code


def popcount_peak(iters: int = 20_000_000, repeats: int = 3) -> float:
    """Binary ops/s (2 per bit) of a register-only ``acc += popcount(a XOR b)`` loop, one core.

    Same instruction mix as the GEMM microkernel of the current ISA path, no memory traffic;
    best of ``repeats`` so a busy neighbour lowers it less.
    """
    if iters < 1 or repeats < 1:
        raise ValueError(f"iters and repeats must be >= 1, got {iters}, {repeats}")
    code = isa_code()
    return max(_xnor.popcount_peak(code, iters) for _ in range(repeats))
