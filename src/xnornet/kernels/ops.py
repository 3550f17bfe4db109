"""The public kernel API: validate, allocate, then call the typed Cython kernel.

Bad input (wrong dtype, non-contiguous, mismatched or impossible sizes, garbage in padding
bits) raises TypeError/ValueError naming the argument; nothing reaches C unchecked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from xnornet.kernels import _xnor
from xnornet.kernels.isa import gemm_path, isa_code
from xnornet.kernels.panels import PANEL, gemm_operand, panel_layout

SERIAL_WORK = 1 << 15  # below this many word-ops one thread is faster than waking a team


def _check(arr, name: str, dtype, ndim: int | None = None, min_ndim: int = 0) -> np.ndarray:
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(arr).__name__}")
    if arr.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype).name}, got {arr.dtype}")
    if (ndim is not None and arr.ndim != ndim) or arr.ndim < min_ndim:
        want = ndim if ndim is not None else f">= {min_ndim}"
        raise ValueError(f"{name} must have {want} dimensions, got shape {arr.shape}")
    if not arr.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use np.ascontiguousarray)")
    return arr


def resolve_threads(threads: int | None, work: int = SERIAL_WORK) -> int:
    """Explicit OpenMP thread count: None means every core this process may use."""
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    return 1 if work < SERIAL_WORK else int(threads)


def n_words(k: int) -> int:
    return -(-k // 64)


def pack_bits(x: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Sign-pack float32 ``(..., K)`` into uint64 ``(..., ceil(K/64))``: bit 1 ⇔ x < 0.

    Examples:
        >>> pack_bits(np.array([[-1.0, 0.0, -2.0]], dtype=np.float32)).tolist()
        [[5]]
    """
    _check(x, "x", np.float32, min_ndim=1)
    k = x.shape[-1]
    if k < 1:
        raise ValueError(f"x must have a non-empty last axis, got shape {x.shape}")
    rows = x.reshape(-1, k)
    out = np.empty((rows.shape[0], n_words(k)), dtype=np.uint64)
    _xnor.pack_rows(isa_code(), rows, k, out, resolve_threads(threads, rows.size // 8))
    return out.reshape(*x.shape[:-1], n_words(k))


def _check_padding_bits(bits: np.ndarray, k: int, name: str) -> None:
    """Padding bits must be 0 (the bit convention), or the dot product k − 2·popcount would be wrong."""
    full, rem = divmod(k, 64)
    tail = bits[:, full + (rem > 0) :]
    bad = tail.any() if tail.size else False
    if rem and not bad:
        bad = bool((bits[:, full] >> np.uint64(rem)).any())
    if bad:
        raise ValueError(f"{name} has nonzero padding bits beyond k={k}")


@dataclass(frozen=True)
class PackedColumns:
    """The B operand of xnor_gemm in the kernel's panel layout, prepared once and reused.

    The AVX2 GEMM reads the panels split into nibble planes (``operand``), made on first use and
    kept with them; so ``panels`` must not change after that.
    """

    panels: np.ndarray  # (ceil(N/16), W, 16) uint64
    n: int
    k: int
    _operands: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_bits(cls, b_bits: np.ndarray, k: int) -> PackedColumns:
        return cls(panel_layout(b_bits), b_bits.shape[0], k)

    @property
    def words(self) -> int:
        return self.panels.shape[1]

    def path(self, isa: int, m: int) -> tuple[int, np.ndarray]:
        """The GEMM path (kernels.isa.gemm_path) and its B operand for ``m`` rows."""
        code = gemm_path(isa, m, self.panels.nbytes)
        return code, self.operand(code)

    def operand(self, isa: int) -> np.ndarray:
        """The panels as the GEMM of path ``isa`` reads them: themselves, or for AVX2 their
        (P, W, 32) low/high nibble planes (kernels/xn_avx2_planes.h), converted once and kept,
        so a layer or a caller that reuses these columns converts them once."""
        width = _xnor.panel_width(isa)
        if width == PANEL:
            return self.panels
        if width not in self._operands:
            self._operands[width] = gemm_operand(self.panels, isa)
        return self._operands[width]


def _check_k(k, words: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise TypeError(f"k must be an integer, got {type(k).__name__}")
    if not 1 <= k <= 64 * words:
        raise ValueError(f"k={k} must be between 1 and 64·words = {64 * words}")
    if n_words(k) != words and words:
        raise ValueError(f"k={k} needs {n_words(k)} words per row, operands have {words}")
    return int(k)


def _check_columns(columns) -> None:
    """A PackedColumns built by hand must still have the layout the kernel reads, or it would read
    past the panels."""
    if not isinstance(columns, PackedColumns):
        raise TypeError(
            f"columns must be PackedColumns (see PackedColumns.from_bits), got {type(columns).__name__}"
        )
    _check(columns.panels, "columns.panels", np.uint64, ndim=3)
    p, words, width = columns.panels.shape
    if isinstance(columns.n, bool) or not isinstance(columns.n, int | np.integer) or columns.n < 1:
        raise ValueError(f"columns.n must be a positive integer, got {columns.n!r}")
    if width != PANEL or p != -(-columns.n // PANEL):
        raise ValueError(f"columns.panels must have shape ({-(-columns.n // PANEL)}, W, {PANEL}), "
                         f"got {columns.panels.shape}")  # fmt: skip
    k = columns.k  # a conv's rows are padded per kernel row, so k may need fewer words than W
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= 64 * words:
        raise ValueError(f"columns.k={k!r} must be an integer between 1 and 64·words = {64 * words}")


def _optional_f32(arr, name: str, size: int) -> np.ndarray | None:
    if arr is None:
        return None
    _check(arr, name, np.float32)
    if arr.size != size:
        raise ValueError(f"{name} must have {size} values, got shape {arr.shape}")
    return arr.reshape(-1)


def gemm_packed(
    a_bits: np.ndarray,
    columns: PackedColumns,
    *,
    corr: np.ndarray | None = None,
    alpha: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    row_scale: np.ndarray | None = None,
    relu: bool = False,
    threads: int | None = None,
    residual: np.ndarray | None = None,
) -> np.ndarray:
    """A (M×W words) against prepared columns: int32 dots, or with ``alpha`` the fused float32
    ``alpha[n]·(dot − corr[m mod P, n])·row_scale[m] + bias[n] + residual[m, n]`` (then max(·, 0)
    with ``relu``): a following BatchNorm's scale, a ResNet shortcut and its ReLU in the same pass."""
    _check(a_bits, "a_bits", np.uint64, ndim=2)
    _check_columns(columns)
    if a_bits.shape[1] != columns.words:
        raise ValueError(f"a_bits has {a_bits.shape[1]} words per row, columns have {columns.words}")
    if a_bits.shape[0] < 1:  # as pack_bits and the layers refuse empty input: no silent empty result
        raise ValueError(f"a_bits must have at least one row, got shape {a_bits.shape}")
    m, n = a_bits.shape[0], columns.n
    if corr is not None:
        _check(corr, "corr", np.int32, ndim=2)
        if corr.shape[1] != n or corr.shape[0] < 1:
            raise ValueError(f"corr must have shape (P, {n}), got {corr.shape}")
    t = resolve_threads(threads, m * n * columns.words)
    isa, b = columns.path(isa_code(), m)
    if alpha is None:
        out = np.empty((m, n), dtype=np.int32)
        _xnor.bgemm_i32(isa, a_bits, b, n, columns.k, corr, out, t)
        return out
    alpha = _optional_f32(alpha, "alpha", n)
    bias, row_scale = _optional_f32(bias, "bias", n), _optional_f32(row_scale, "row_scale", m)
    if residual is not None:
        _check(residual, "residual", np.float32)
        if residual.size != m * n:
            raise ValueError(f"residual must have {m}×{n} values, got shape {residual.shape}")
        residual = residual.reshape(m, n)
    out = np.empty((m, n), dtype=np.float32)
    _xnor.bgemm_f32(isa, a_bits, b, n, columns.k, alpha, bias, row_scale, corr, out, t, relu,
                    residual)  # fmt: skip
    return out


def xnor_gemm(a_bits: np.ndarray, b_bits: np.ndarray, k: int, threads: int | None = None) -> np.ndarray:
    """±1 dot products of every row of ``a`` (M×W words) with every row of ``b`` (N×W words).

    Returns int32 (M, N) = k − 2·popcount(a XOR b), which equals sign(A) @ sign(B).T exactly.
    """
    _check(a_bits, "a_bits", np.uint64, ndim=2)
    _check(b_bits, "b_bits", np.uint64, ndim=2)
    if a_bits.shape[1] != b_bits.shape[1]:
        raise ValueError(f"a_bits has {a_bits.shape[1]} words per row but b_bits has {b_bits.shape[1]}")
    k = _check_k(k, a_bits.shape[1])
    _check_padding_bits(a_bits, k, "a_bits")
    _check_padding_bits(b_bits, k, "b_bits")
    return gemm_packed(a_bits, PackedColumns.from_bits(b_bits, k), threads=threads)


def binary_linear(
    x_bits: np.ndarray,
    columns: PackedColumns,
    alpha: np.ndarray,
    bias: np.ndarray | None = None,
    row_scale: np.ndarray | None = None,
    threads: int | None = None,
    relu: bool = False,
) -> np.ndarray:
    """XNOR linear layer on packed inputs: float32 (M, N) = alpha·dot·row_scale + bias."""
    _check(x_bits, "x_bits", np.uint64, ndim=2)
    _check_padding_bits(x_bits, columns.k, "x_bits")
    return gemm_packed(x_bits, columns, alpha=alpha, bias=bias, row_scale=row_scale, relu=relu,
                       threads=threads)  # fmt: skip


def _channel_rows(x: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, int]:
    """Validate channels-last x (R, ..., C) and its per-channel scale/shift; x as (R, rest·C)."""
    _check(x, "x", np.float32, min_ndim=2)
    if min(x.shape) < 1:
        raise ValueError(f"x must have non-empty dimensions, got shape {x.shape}")
    c = x.shape[-1]
    for arr, name in ((scale, "scale"), (shift, "shift")):
        _check(arr, name, np.float32, ndim=1)
        if arr.shape[0] != c:
            raise ValueError(f"{name} must have {c} values (x channels), got {arr.shape[0]}")
    return x.reshape(x.shape[0], -1), c


def bn_sign_pack(
    x: np.ndarray,
    scale: np.ndarray,
    shift: np.ndarray,
    with_absmean: bool = False,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """sign(x·scale + shift) packed, per channel (last axis), in one pass over channels-last x.

    x (B, ..., C) float32 → bits (B, ceil(P·C/64)) with P the pixels per sample, and, if asked,
    mean_c |x·scale + shift| per pixel (B, P): the A of XNOR-Net's K = A ⊛ box.
    """
    rows, c = _channel_rows(x, scale, shift)
    pixels = rows.shape[1] // c
    out = np.empty((rows.shape[0], n_words(rows.shape[1])), dtype=np.uint64)
    absmean = np.empty((rows.shape[0], pixels), dtype=np.float32) if with_absmean else None
    _xnor.bn_sign_pack(rows, c, scale, shift, out, absmean, resolve_threads(threads, rows.size // 8))
    return out, absmean


def affine_sign_pack(
    x: np.ndarray, scale: np.ndarray, shift: np.ndarray, threads: int | None = None
) -> np.ndarray:
    """sign(x·scale + shift) packed per row, channels last: the fused BatchNorm/threshold → sign.

    x (R, ..., C) float32; scale/shift (C,) per channel → bits (R, ceil(rest·C/64)). Computed as
    a multiply then an add (no FMA), so a threshold (scale 1, shift −t) is the exact test x < t.
    """
    rows, c = _channel_rows(x, scale, shift)
    reps = rows.shape[1] // c
    out = np.empty((rows.shape[0], n_words(rows.shape[1])), dtype=np.uint64)
    _xnor.affine_pack_rows(isa_code(), rows, np.tile(scale, reps), np.tile(shift, reps), out,
                           resolve_threads(threads, rows.size // 8))  # fmt: skip
    return out


def pool2d_nhwc(
    x: np.ndarray, kind: str, kernel: int, stride: int, padding: int = 0, threads: int | None = None
) -> np.ndarray:
    """Max or average pooling of a float32 (B, H, W, C) batch.

    Matches torch's MaxPool2d / AvgPool2d(count_include_pad=True) with square kernel, stride, padding.
    """
    _check(x, "x", np.float32, ndim=4)
    if kind not in ("max", "avg"):
        raise ValueError(f"kind must be 'max' or 'avg', got {kind!r}")
    if kernel < 1 or stride < 1 or not 0 <= padding <= kernel // 2:
        raise ValueError(f"bad pooling geometry: kernel={kernel}, stride={stride}, padding={padding}")
    b, h, w, c = x.shape
    ho, wo = (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"input {h}×{w} is smaller than the pooling window {kernel}")
    out = np.empty((b, ho, wo, c), dtype=np.float32)
    _xnor.pool_nhwc(x, kernel, stride, padding, kind == "max", out,
                    resolve_threads(threads, out.size * kernel))  # fmt: skip
    return out
