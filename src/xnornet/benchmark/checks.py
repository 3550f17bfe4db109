"""The correctness check every peer passes before it is timed: a fast wrong answer is no result.

Binary peers compute integer ±1 dot products, so they must match the numpy reference exactly (a
wrong bit order of packed weights still runs, and only an exact check catches it). Float and int8
peers round, so they are held to a stated relative error of the whole output against the float
reference: ``‖y − y_ref‖₂ / ‖y_ref‖₂``, one number that a flipped weight sign or a wrong scale moves
by far more than rounding or 8-bit quantization does.
"""

from __future__ import annotations

import numpy as np

from xnornet.errors import XnornetError

FP32_REL_TOL = 1e-3  # float32 in another library's kernels (blocked sums, Winograd): ~1e-6 measured
INT8_REL_TOL = 0.05  # 8-bit activations and per-channel 8-bit weights: ~0.01 measured per layer and network


class PeerCheckError(XnornetError):
    """A peer's output disagrees with the reference beyond its tolerance: it is not timed."""


def check_exact(what: str, got: np.ndarray, want: np.ndarray) -> dict:
    """Every value equal (integer dots held as floats compare exactly)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise PeerCheckError(f"{what}: output shape {got.shape}, the reference's is {want.shape}")
    wrong = int(np.count_nonzero(got != want))
    if wrong:
        worst = float(np.abs(got - want).max())
        raise PeerCheckError(f"{what}: {wrong} of {got.size} outputs differ from the exact reference "
                             f"(max |diff| {worst:g}); expected all equal")  # fmt: skip
    return {"check": "exact", "max_abs_error": 0.0}


def check_close(what: str, got: np.ndarray, want: np.ndarray, rel_tol: float) -> dict:
    """Relative L2 error of the whole output within ``rel_tol``."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise PeerCheckError(f"{what}: output shape {got.shape}, the reference's is {want.shape}")
    rel = float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))
    if not rel <= rel_tol:  # also rejects NaN
        raise PeerCheckError(f"{what}: relative L2 error {rel:.3g} against the float reference; "
                             f"expected at most {rel_tol:g}")  # fmt: skip
    return {"check": f"rel_l2 <= {rel_tol:g}", "rel_l2_error": round(rel, 7)}
