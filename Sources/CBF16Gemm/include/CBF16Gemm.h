// A row-major single-precision GEMM whose products run in bf16 on AVX512_BF16 (vdpbf16ps): the fp32
// inputs are rounded to bf16 (to nearest, ties to even) while they are packed, the products are
// accumulated in fp32, and C is fp32. Same semantics as cblas_sgemm with CblasRowMajor. Tandem's
// `gemm` calls it when its `precision` argument (the tape's `precision`) is bf16; see docs/performance.md, "bf16".
#ifndef TANDEM_CBF16GEMM_H
#define TANDEM_CBF16GEMM_H

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when this CPU (and the operating system's saved register state) supports AVX-512 F, BW, VL and
/// BF16, which tandem_bf16_sgemm needs; 0 otherwise. Compiled for the baseline ISA, so it is safe to
/// call anywhere.
int tandem_bf16_supported(void);

/// C = alpha op(A) op(B) + beta C, row-major: op(A) (m, k), op(B) (k, n), C (m, n); A is stored (m, k)
/// when transA is 0 and (k, m) when it is 1, likewise B (k, n) or (n, k); leading dimensions are row
/// strides in elements. op(A) and op(B) are rounded to bf16 (round to nearest even; denormals become
/// zero, as the instruction does), products are summed in fp32. beta = 0 ignores C's old values (they
/// may be NaN). Single-threaded; callers split N or M across threads. Aborts with a message on a CPU
/// where tandem_bf16_supported() is 0.
void tandem_bf16_sgemm(int transA, int transB, long m, long n, long k, float alpha,
                       const float *a, long lda, const float *b, long ldb,
                       float beta, float *c, long ldc);

#ifdef __cplusplus
}
#endif
#endif
