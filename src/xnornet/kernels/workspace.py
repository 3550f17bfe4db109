"""Buffers a layer object keeps from one call to the next.

A binary layer needs a packed input, an im2col matrix and an output per call. Fresh numpy
arrays for them cost a first touch of every page (the kernel zeroes each 4 KiB page on its
first write: ~0.75 ms for the 3 MB output of a batch-16 ResNet layer, as long as the GEMM
itself) whenever malloc has handed the memory back to the system, which depends on what ran
before: exactly the cold call a served request sees. A workspace allocates once, grows when a
larger batch arrives and keeps its pages, so every later call writes to memory already mapped
and, often, still in cache.

Examples:
    >>> ws = Workspace()
    >>> a = ws.get("cols", (4, 3), np.uint64)
    >>> b = ws.get("cols", (2, 3), np.uint64)  # a smaller shape reuses the same memory
    >>> np.shares_memory(a, b)
    True
"""

from __future__ import annotations

import math

import numpy as np

ALIGN = 64  # bytes: one cache line, and one AVX-512 register


class Workspace:
    """Named, reused scratch arrays; ``get`` returns a view valid until the next ``get`` of the
    same name with a larger size. Not for two threads at once: a layer owns one."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}
        self.generation = 0  # counts buffer replacements: views taken before one may be stale

    def get(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        buf = self._buffers.get(name)
        if buf is None or buf.nbytes < nbytes:
            raw = np.empty(nbytes + ALIGN, np.uint8)
            skip = -raw.ctypes.data % ALIGN
            buf = raw[skip : skip + nbytes]
            buf.fill(0)  # touch every page now, not in the first timed call
            self._buffers[name] = buf
            self.generation += 1
        return buf[:nbytes].view(dtype).reshape(shape)

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self._buffers.values())
