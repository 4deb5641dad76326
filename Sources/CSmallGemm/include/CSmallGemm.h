// Row-major fp32 products through libxsmm 1.17's JIT kernels, with cblas_sgemm's semantics: what `gemm`
// runs attention's per-head products on (`SmallGemm` in Sources/TandemKernels/Gemm.swift; measured in
// docs/performance.md, "libxsmm and oneDNN against OpenBLAS and our bf16 GEMM").
#ifndef TANDEM_CSMALLGEMM_H
#define TANDEM_CSMALLGEMM_H

#ifdef __cplusplus
extern "C" {
#endif

/// Initialises libxsmm (once, thread-safe); 1 when its JIT generates code for this CPU (an x86 target of
/// AVX2 or later), else 0.
int tandem_xsmm_init(void);
/// The target libxsmm's CPUID check chose ("cpx" on a CPU with AVX512_BF16), and libxsmm's version.
const char *tandem_xsmm_arch(void);
const char *tandem_xsmm_version(void);
/// Why this thread's last tandem_xsmm_sgemm returned 0 (a static string).
const char *tandem_xsmm_last_error(void);

/// C = alpha op(A) op(B) + beta C, row-major: op(A) (m, k), op(B) (k, n), C (m, n); A is stored (m, k)
/// when transA is 0 and (k, m) when it is 1, likewise B (k, n) or (n, k); leading dimensions are row
/// strides in elements; beta = 0 ignores C's old values. One JIT kernel per shape (libxsmm_smmdispatch:
/// generated on first use, then found in libxsmm's registry). libxsmm is column-major, so the product is
/// passed as C^T = op(B)^T op(A)^T: op(A) transposed maps to libxsmm's TRANS_B flag. libxsmm 1.17 has no
/// TRANS_A and takes alpha = 1 and beta 0 or 1 only, so transB = 1 first transposes B into per-thread
/// scratch (libxsmm_otrans), and alpha != 1 runs the kernel into scratch and adds alpha times it to C.
/// Returns 1 when it computed the product, 0 (C untouched) for beta other than 0 or 1 or a CPU without
/// the JIT. Thread-safe.
int tandem_xsmm_sgemm(int transA, int transB, long m, long n, long k, float alpha,
                      const float *a, long lda, const float *b, long ldb,
                      float beta, float *c, long ldc);

#ifdef __cplusplus
}
#endif
#endif
