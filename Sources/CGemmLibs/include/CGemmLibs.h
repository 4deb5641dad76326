// Row-major matrix products through libxsmm 1.17 and oneDNN 2.6, with cblas_sgemm's (and
// tandem_bf16_sgemm's) semantics, so that `tandem bench kernels` can measure them against OpenBLAS and
// Tandem's own bf16 GEMM at training shapes (docs/performance.md, "libxsmm and oneDNN against OpenBLAS
// and our bf16 GEMM").
//
// Every function computes C = alpha op(A) op(B) + beta C, row-major: op(A) (m, k), op(B) (k, n), C (m, n);
// A is stored (m, k) when transA is 0 and (k, m) when it is 1, likewise B (k, n) or (n, k); leading
// dimensions are row strides in elements. beta = 0 ignores C's old values. Each returns 1 when it
// computed the product and 0 when the library cannot (the reason is in tandem_*_last_error), leaving C
// untouched. None is thread-safe: one caller at a time (the benchmark and the tests are single-threaded).
#ifndef TANDEM_CGEMMLIBS_H
#define TANDEM_CGEMMLIBS_H

#ifdef __cplusplus
extern "C" {
#endif

// MARK: - libxsmm

/// Initialises libxsmm; 1 when its JIT generates code for this CPU (an x86 target of AVX2 or later).
int tandem_xsmm_init(void);
/// The target libxsmm's CPUID check chose ("cpx" on a CPU with AVX512_BF16), and libxsmm's version.
const char *tandem_xsmm_arch(void);
const char *tandem_xsmm_version(void);
/// Why the last call returned 0 (a static string).
const char *tandem_xsmm_last_error(void);

/// fp32 product through one JIT kernel for its shape (libxsmm_smmdispatch: generated on first use, then
/// found in libxsmm's registry). libxsmm is column-major, so the row-major product is passed as
/// C^T = op(B)^T op(A)^T: op(A) transposed maps to libxsmm's TRANS_B flag. libxsmm 1.17 has no
/// TRANS_A and only alpha = 1, beta = 0 or 1, so transB = 1 first transposes B into a scratch buffer
/// (libxsmm_otrans) and alpha != 1 runs the kernel into scratch and adds alpha times it to C (beta = 0
/// or 1; any other beta returns 0).
int tandem_xsmm_sgemm(int transA, int transB, long m, long n, long k, float alpha,
                      const float *a, long lda, const float *b, long ldb,
                      float beta, float *c, long ldc);

/// `count` products of one shape, product i on a + i strideA, b + i strideB, c + i strideC (attention's
/// heads): the kernel is dispatched once for all of them, otherwise as tandem_xsmm_sgemm.
int tandem_xsmm_sgemm_batch(int transA, int transB, long m, long n, long k, float alpha,
                            const float *a, long lda, long strideA, const float *b, long ldb, long strideB,
                            float beta, float *c, long ldc, long strideC, long count);

/// bf16 inputs, fp32 accumulation and C (libxsmm_bsmmdispatch, vdpbf16ps on "cpx"): op(A) and op(B) are
/// rounded to bf16 (to nearest even, vcvtne2ps2bf16) into scratch, op(B) in the k-pair interleaved
/// ("VNNI") layout libxsmm 1.17 requires of its A operand, then one kernel call. Needs even k, alpha = 1
/// and beta 0 or 1, and the "cpx" target; returns 0 otherwise.
int tandem_xsmm_bf16_sgemm(int transA, int transB, long m, long n, long k, float alpha,
                           const float *a, long lda, const float *b, long ldb,
                           float beta, float *c, long ldc);

// MARK: - oneDNN

/// Creates oneDNN's CPU engine and stream; 1 on success. Sets the OpenMP threads oneDNN runs on to
/// `threads` (omp_set_num_threads, found in the libgomp that libdnnl loads).
int tandem_dnnl_init(int threads);
/// oneDNN's version ("2.6.3") and the last error or implementation name.
const char *tandem_dnnl_version(void);
const char *tandem_dnnl_last_error(void);
/// The implementation oneDNN chose for the last product created (e.g. "brg:avx512_core"), for the
/// benchmark's header.
const char *tandem_dnnl_last_impl(void);

/// fp32 matmul primitive (f32 src, weights, dst, strided memory descriptors, so transposes are strides):
/// alpha is an output scale, beta a sum post-op. One primitive per (shape, transposes, leading
/// dimensions, alpha, beta) is created on first use and cached; each call sets the data handles and
/// executes it.
int tandem_dnnl_sgemm(int transA, int transB, long m, long n, long k, float alpha,
                      const float *a, long lda, const float *b, long ldb,
                      float beta, float *c, long ldc);

/// `count` products of one shape as one 3-D (batched) matmul primitive, strides as in tandem_xsmm_sgemm_batch.
int tandem_dnnl_sgemm_batch(int transA, int transB, long m, long n, long k, float alpha,
                            const float *a, long lda, long strideA, const float *b, long ldb, long strideB,
                            float beta, float *c, long ldc, long strideC, long count);

/// bf16 matmul (bf16 src and weights, f32 dst) fed by two reorders from the fp32 operands (oneDNN's
/// f32 -> bf16 conversion, round to nearest even) into the layouts the matmul asked for (format "any").
/// Reorders and matmul are cached per shape like tandem_dnnl_sgemm; each call runs all three.
int tandem_dnnl_bf16_sgemm(int transA, int transB, long m, long n, long k, float alpha,
                           const float *a, long lda, const float *b, long ldb,
                           float beta, float *c, long ldc);

#ifdef __cplusplus
}
#endif
#endif
