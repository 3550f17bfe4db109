"""The XNOR-popcount CPU kernel: sign-packing, binary GEMM and binary conv2d.

Conventions (docs/kernel.md): bit 1 ⇔ value < 0 (sign(0) = +1), little-endian bits in uint64 words
along the reduction axis, padding bits 0, so a ±1 dot product is k − 2·popcount(a XOR b).
"""

from xnornet.kernels.conv import (
    BinaryConvWeights,
    PackedActivations,
    binary_conv2d,
    im2col_bits,
    pack_nhwc,
    unpack_signs,
)
from xnornet.kernels.isa import ISAS, available_isas, kernel_isa
from xnornet.kernels.layers import BinaryConv2dLayer, BinaryLinearLayer
from xnornet.kernels.ops import PackedColumns, binary_linear, gemm_packed, pack_bits, xnor_gemm
from xnornet.kernels.peak import popcount_peak

__all__ = [
    "ISAS",
    "BinaryConv2dLayer",
    "BinaryConvWeights",
    "BinaryLinearLayer",
    "PackedActivations",
    "PackedColumns",
    "available_isas",
    "binary_conv2d",
    "binary_linear",
    "gemm_packed",
    "im2col_bits",
    "kernel_isa",
    "pack_bits",
    "pack_nhwc",
    "popcount_peak",
    "unpack_signs",
    "xnor_gemm",
]
