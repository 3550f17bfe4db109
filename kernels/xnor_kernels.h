/* XNOR-popcount CPU kernels with runtime ISA dispatch.
 *
 * Bit convention (README.md, "The kernel"): bit 1 <=> value < 0 (sign(0) = +1), bits packed little-endian
 * along the reduction axis into uint64 words, padding bits 0 in every operand, so a ±1 dot
 * product of length k is k - 2*popcount(a XOR b).
 *
 * One header per concept, included here in dependency order; the Cython module includes
 * only this file:
 *   xn_dispatch.h  CPU ISA detection, target attributes, XN_NR, micro-rows
 *   xn_team.h      how many threads a parallel call gets: claimed work, back-off when held up
 *   xn_bitpack.h   sign-packing float rows (xn_pack_rows)
 *   xn_signpack.h  BatchNorm/affine -> sign -> pack (xn_affine_pack_rows, xn_bn_sign_pack)
 *   xn_epilogue.h  the GEMM's fused output transform (portable and AVX-512 row stores)
 *   xn_micro_avx2.h the AVX2 lookup microkernel (vpshufb on whole bytes): streaming GEMMs, the bench
 *   xn_rows.h      the GEMM's A rows: explicit, or a conv's implicit im2col (window table)
 *   xn_avx2_planes.h the AVX2 GEMM on nibble planes (B planes, A staging, microkernel, block)
 *   xn_bgemm.h     microkernels, row blocks, xn_bgemm
 *   xn_im2col.h    bit-level im2col (xn_im2col) and the implicit im2col's window rows
 *   xn_layer.h     pack + im2col + GEMM of one layer in one parallel region (xn_layer_forward)
 *   xn_pool.h      NHWC pooling (xn_pool_nhwc)
 *   xn_peak.h      popcount roofline (xn_popcount_peak)
 */
#ifndef XNOR_KERNELS_H
#define XNOR_KERNELS_H

#include "xn_dispatch.h"
#include "xn_bitpack.h"
#include "xn_signpack.h"
#include "xn_bgemm.h"
#include "xn_im2col.h"
#include "xn_layer.h"
#include "xn_pool.h"
#include "xn_peak.h"

#endif /* XNOR_KERNELS_H */
