"""The GEMM's B operand layout: packed columns in panels of 16, and the form each kernel path
reads them in. Below both the path choice (kernels.isa, whose self-test builds operands) and the
ops that use them (kernels.ops), so neither imports the other."""

from __future__ import annotations

import numpy as np

from xnornet.kernels import _xnor

PANEL = 16  # columns per packed-B panel (XN_NR in kernels/xn_dispatch.h)


def panel_layout(b_bits: np.ndarray) -> np.ndarray:
    """(N, W) packed columns → (ceil(N/16), W, 16) panels; zero columns fill the last panel."""
    n, words = b_bits.shape
    npanels = -(-n // PANEL)
    padded = np.zeros((npanels * PANEL, words), np.uint64)
    padded[:n] = b_bits
    return np.ascontiguousarray(padded.reshape(npanels, PANEL, words).transpose(0, 2, 1))


def gemm_operand(panels: np.ndarray, isa: int) -> np.ndarray:
    """The panels as the GEMM of path ``isa`` reads them: themselves, or for AVX2 their
    (P, W, 32) low/high nibble planes (kernels/xn_avx2_planes.h), a new array."""
    width = _xnor.panel_width(isa)
    if width == PANEL:
        return panels
    planes = np.empty((*panels.shape[:2], width), dtype=np.uint64)
    _xnor.nibble_planes(panels, planes)
    return planes
