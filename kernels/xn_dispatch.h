/* Which instruction-set path runs: CPU detection, the per-function target attributes and the
 * panel/block geometry every other header is written against.
 *
 * Every ISA variant is compiled with a per-function target attribute and chosen at run time:
 * the library itself is built for the baseline x86-64, so it loads on any CPU. This header is
 * the one place that knows which ISAs exist; the others only pick a variant by XN_ISA_* code.
 */
#ifndef XN_DISPATCH_H
#define XN_DISPATCH_H

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define XN_X86 1
#include <immintrin.h>
#define XN_TARGET_POPCNT __attribute__((target("popcnt")))
#define XN_TARGET_AVX2 __attribute__((target("avx2,popcnt")))
#define XN_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vpopcntdq,popcnt")))
#endif

#define XN_NR 16

enum { XN_ISA_GENERIC = 0, XN_ISA_SCALAR = 1, XN_ISA_AVX2 = 2, XN_ISA_AVX512 = 3 };

/* Not a CPU path of its own but the AVX2 GEMM on whole bytes (vpshufb lookup, xn_micro_avx2.h)
 * that the nibble planes (xn_avx2_planes.h) replaced for most shapes. It still runs by default
 * where the planes lose: few rows and weights past the caches, where the planes' doubled bytes
 * are streamed from memory (a batch-1 fully connected layer; chosen by PackedColumns.path in
 * kernels/ops.py), and the bench times it beside the planes. Everything but the GEMM runs as for
 * AVX2. xn_cpu_isa never returns it. */
enum { XN_ISA_AVX2_LOOKUP = 4 };

/* The AVX2 family: the same packing and sign kernels for both GEMMs. */
static inline int xn_is_avx2(int isa) { return isa == XN_ISA_AVX2 || isa == XN_ISA_AVX2_LOOKUP; }

/* Rows of one AVX2 row block: 8 microkernel calls of 3 rows against each panel (xn_avx2_planes.h). */
#define XN_MR_AVX2_PLANES 24

/* The best path this CPU (and OS) can run. */
static int xn_cpu_isa(void) {
#ifdef XN_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vpopcntdq") && __builtin_cpu_supports("popcnt"))
        return XN_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt")) return XN_ISA_AVX2;
    if (__builtin_cpu_supports("popcnt")) return XN_ISA_SCALAR;
#endif
    return XN_ISA_GENERIC;
}

static int xn_micro_rows(int isa) {
    return isa == XN_ISA_AVX512 ? 6 : isa == XN_ISA_AVX2 ? XN_MR_AVX2_PLANES
                                    : isa == XN_ISA_AVX2_LOOKUP ? 3 : 1;
}

/* uint64 per word of a B panel as the GEMM of `isa` reads it: the XN_NR columns themselves, or
 * for AVX2 their low- and high-nibble planes side by side (xn_nibble_planes). */
static int xn_panel_width(int isa) { return isa == XN_ISA_AVX2 ? 2 * XN_NR : XN_NR; }

#endif /* XN_DISPATCH_H */
