"""A layer to benchmark, described by the sizes a network gives it (conf/bench shapes)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LayerShape:
    name: str
    kind: str  # conv | linear
    batch: int
    c_in: int
    c_out: int
    k: int = 1
    h: int = 1
    w: int = 1
    stride: int = 1
    padding: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("conv", "linear"):
            raise ValueError(f"bench shape {self.name}: kind must be conv or linear, not {self.kind!r}")
        if min(self.batch, self.c_in, self.c_out, self.k, self.h, self.w, self.stride) < 1:
            raise ValueError(f"bench shape {self.name}: sizes must be positive")

    @property
    def out_hw(self) -> tuple[int, int]:
        if self.kind == "linear":
            return 1, 1
        ho = (self.h + 2 * self.padding - self.k) // self.stride + 1
        wo = (self.w + 2 * self.padding - self.k) // self.stride + 1
        return ho, wo

    @property
    def gemm(self) -> tuple[int, int, int]:
        """(M, N, K) of the equivalent GEMM."""
        ho, wo = self.out_hw
        return self.batch * ho * wo, self.c_out, self.c_in * self.k * self.k

    @property
    def ops(self) -> int:
        m, n, k = self.gemm
        return 2 * m * n * k
