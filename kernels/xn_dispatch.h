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
#define XN_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vpopcntdq,popcnt")))
#endif

#define XN_NR 16

enum { XN_ISA_GENERIC = 0, XN_ISA_SCALAR = 1, XN_ISA_AVX2 = 2, XN_ISA_AVX512 = 3 };

/* The best path this CPU (and OS) can run. */
static int xn_cpu_isa(void) {
#ifdef XN_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vpopcntdq") && __builtin_cpu_supports("popcnt"))
        return XN_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt")) return XN_ISA_AVX2;
    if (__builtin_cpu_supports("popcnt")) return XN_ISA_SCALAR;
#endif
    return XN_ISA_GENERIC;
}

static int xn_micro_rows(int isa) {
    return isa == XN_ISA_AVX512 ? 6 : isa == XN_ISA_AVX2 ? 3 : 1;
}

#endif /* XN_DISPATCH_H */
