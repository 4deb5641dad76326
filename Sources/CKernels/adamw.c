// See CKernels.h. Built with -O3 -fno-math-errno -ffp-contract=off (Package.swift): without
// -fno-math-errno a sqrtf call may set errno and is not vectorised; without -ffp-contract=off clang
// would fuse v * beta2 + ... into an FMA and change the bits.
#include "CKernels.h"

#pragma STDC FP_CONTRACT OFF

// One loop, compiled for AVX-512, AVX2 and the baseline ISA; the loader picks the best the CPU has.
#if defined(__x86_64__) && defined(__clang__)
#define TANDEM_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TANDEM_CLONES
#endif

TANDEM_CLONES
void tandem_adamw(float *restrict weight, float *restrict grad, float *restrict m, float *restrict v, long n,
                  float stepSize, float bc2Sqrt, float decay, float oneMinusBeta1, float beta2,
                  float oneMinusBeta2, float eps, float clip, int zeroing) {
    // `zeroing` is loop-invariant: the compiler unswitches it into two vector loops.
    for (long i = 0; i < n; i++) {
        float g = grad[i] * clip;
        if (zeroing) grad[i] = 0;
        float mi = m[i] + (g - m[i]) * oneMinusBeta1;
        float vi = v[i] * beta2 + (oneMinusBeta2 * g) * g;
        float w = weight[i] * decay;
        m[i] = mi;
        v[i] = vi;
        weight[i] = w - (stepSize * mi) / (__builtin_sqrtf(vi) / bc2Sqrt + eps);
    }
}
