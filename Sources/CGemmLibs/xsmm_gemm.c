// Row-major products through libxsmm 1.17's JIT GEMM kernels (see CGemmLibs.h). Written for Tandem
// against libxsmm's public header; libxsmm is column-major, so the row-major C = op(A) op(B) is computed
// as the column-major C^T = op(B)^T op(A)^T: libxsmm's A is our B and its B our A.
#include "CGemmLibs.h"

#include <libxsmm.h>

#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define XSMM_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

static _Thread_local const char *xsmmError = "";
static int xsmmState;  // 0 no JIT for this CPU, 1 ready
static pthread_once_t xsmmOnce = PTHREAD_ONCE_INIT;

static void initXsmm(void) {
    libxsmm_init();
    // LIBXSMM_X86_AVX2 and later generate AVX2 / AVX-512 code; below that the JIT is off.
    xsmmState = libxsmm_get_target_archid() >= LIBXSMM_X86_AVX2 ? 1 : 0;
}

int tandem_xsmm_init(void) {
    pthread_once(&xsmmOnce, initXsmm);
    return xsmmState;
}

const char *tandem_xsmm_arch(void) { return libxsmm_get_target_arch(); }
const char *tandem_xsmm_version(void) { return LIBXSMM_CONFIG_VERSION; }
const char *tandem_xsmm_last_error(void) { return xsmmError; }

// MARK: - Scratch

// Grown on demand and kept per thread: the transposed B, the alpha product, the bf16 operands.
typedef struct { void *p; size_t bytes; } Scratch;
static _Thread_local Scratch transposed, product, bf16A, bf16B, wordsB;

static void *scratch(Scratch *s, size_t bytes) {
    if (s->bytes < bytes) {
        free(s->p);
        size_t rounded = (bytes + 63) / 64 * 64;
        s->p = aligned_alloc(64, rounded);
        s->bytes = s->p ? rounded : 0;
    }
    return s->p;
}

// C = alpha P + beta C over an m x n block, beta 0 or 1 (P has row stride n).
static void addScaled(float *c, long ldc, const float *p, long m, long n, float alpha, float beta) {
    for (long i = 0; i < m; i++) {
        float *ci = c + i * ldc;
        const float *pi = p + i * n;
        if (beta == 0) {
            for (long j = 0; j < n; j++) ci[j] = alpha * pi[j];
        } else {
            for (long j = 0; j < n; j++) ci[j] += alpha * pi[j];
        }
    }
}

// MARK: - fp32

static libxsmm_smmfunction dispatchF32(int transA, long m, long n, long k, long ldaX, long ldbX, long ldcX,
                                       float beta) {
    const libxsmm_blasint mx = (libxsmm_blasint)n, nx = (libxsmm_blasint)m, kx = (libxsmm_blasint)k;
    const libxsmm_blasint la = (libxsmm_blasint)ldaX, lb = (libxsmm_blasint)ldbX, lc = (libxsmm_blasint)ldcX;
    const float one = 1;
    const int flags = transA ? LIBXSMM_GEMM_FLAG_TRANS_B : LIBXSMM_GEMM_FLAG_NONE;
    const int prefetch = LIBXSMM_GEMM_PREFETCH_NONE;
    return libxsmm_smmdispatch(mx, nx, kx, &la, &lb, &lc, &one, &beta, &flags, &prefetch);
}

// One product with the kernel already dispatched for (beta == 0 || alpha != 1 ? 0 : beta) and
// ldc' = (alpha == 1 ? ldc : n).
static void runF32(libxsmm_smmfunction kernel, int transB, long m, long n, long k, float alpha,
                   const float *a, const float *b, long ldb, float beta, float *c, long ldc) {
    const float *bx = b;
    if (transB) {
        float *t = scratch(&transposed, (size_t)k * (size_t)n * sizeof(float));
        // B (n, k) row-major is column-major k x n with ld ldb; its transpose (k, n) row-major has ld n.
        libxsmm_otrans(t, b, sizeof(float), (libxsmm_blasint)k, (libxsmm_blasint)n, (libxsmm_blasint)ldb,
                       (libxsmm_blasint)n);
        bx = t;
    }
    if (alpha == 1) {
        kernel(bx, a, c);
    } else {
        float *p = product.p;
        kernel(bx, a, p);
        addScaled(c, ldc, p, m, n, alpha, beta);
    }
}

static int checkF32(float beta) {
    if (tandem_xsmm_init() != 1) { xsmmError = "libxsmm has no JIT target for this CPU"; return 0; }
    if (beta != 0 && beta != 1) { xsmmError = "libxsmm 1.17 takes beta 0 or 1 only"; return 0; }
    return 1;
}

int tandem_xsmm_sgemm_batch(int transA, int transB, long m, long n, long k, float alpha,
                            const float *a, long lda, long strideA, const float *b, long ldb, long strideB,
                            float beta, float *c, long ldc, long strideC, long count) {
    if (!checkF32(beta)) return 0;
    if (m == 0 || n == 0 || count == 0) return 1;
    const long ldaX = transB ? n : ldb, ldcX = alpha == 1 ? ldc : n;
    libxsmm_smmfunction kernel = dispatchF32(transA, m, n, k, ldaX, lda, ldcX, alpha == 1 ? beta : 0);
    if (!kernel) { xsmmError = "libxsmm_smmdispatch returned no kernel"; return 0; }
    if (alpha != 1 && !scratch(&product, (size_t)m * (size_t)n * sizeof(float))) {
        xsmmError = "out of memory"; return 0;
    }
    for (long i = 0; i < count; i++) {
        runF32(kernel, transB, m, n, k, alpha, a + i * strideA, b + i * strideB, ldb, beta, c + i * strideC, ldc);
    }
    return 1;
}

int tandem_xsmm_sgemm(int transA, int transB, long m, long n, long k, float alpha,
                      const float *a, long lda, const float *b, long ldb,
                      float beta, float *c, long ldc) {
    return tandem_xsmm_sgemm_batch(transA, transB, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1);
}

// MARK: - bf16

// count floats to bf16, round to nearest even (vcvtne2ps2bf16), 32 at a time; the tail masked.
XSMM_BF16_TARGET
static void convertRow(uint16_t *out, const float *x, long count) {
    long j = 0;
    for (; j + 32 <= count; j += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + j + 16), _mm512_loadu_ps(x + j));
        _mm512_storeu_si512(out + j, (__m512i)v);
    }
    for (; j < count; j += 16) {
        long left = count - j < 16 ? count - j : 16;
        __mmask16 mask = (__mmask16)((1u << left) - 1);
        __m256bh v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, x + j));
        _mm256_mask_storeu_epi16(out + j, mask, (__m256i)v);
    }
}

// Rows r0 and r1 (r1 NULL: zeros) of n floats into n 32-bit words (bf16(r0[j]), bf16(r1[j])).
XSMM_BF16_TARGET
static void interleaveRows(uint16_t *out, const float *r0, const float *r1, long n) {
    const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                           23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (long j = 0; j < n; j += 16) {
        long left = n - j < 16 ? n - j : 16;
        __mmask16 mask = (__mmask16)((1u << left) - 1);
        __m512 lo = _mm512_maskz_loadu_ps(mask, r0 + j);
        __m512 hi = r1 ? _mm512_maskz_loadu_ps(mask, r1 + j) : _mm512_setzero_ps();
        __m512i pairs = _mm512_permutexvar_epi16(order, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        __mmask32 words = (__mmask32)(((uint64_t)1 << (2 * left)) - 1);
        _mm512_mask_storeu_epi16(out + 2 * j, words, pairs);
    }
}

int tandem_xsmm_bf16_sgemm(int transA, int transB, long m, long n, long k, float alpha,
                           const float *a, long lda, const float *b, long ldb,
                           float beta, float *c, long ldc) {
    if (!checkF32(beta)) return 0;
    if (libxsmm_get_target_archid() < LIBXSMM_X86_AVX512_CPX) {
        xsmmError = "libxsmm's target has no AVX512_BF16 (needs cpx)"; return 0;
    }
    if (m == 0 || n == 0) return 1;
    const long kk = (k + 1) / 2 * 2;  // odd K gets a zero partner
    uint16_t *ax = scratch(&bf16A, (size_t)m * (size_t)kk * 2);
    uint16_t *bx = scratch(&bf16B, (size_t)kk * (size_t)n * 2);
    if (!ax || !bx || (alpha != 1 && !scratch(&product, (size_t)m * (size_t)n * sizeof(float)))) {
        xsmmError = "out of memory"; return 0;
    }
    // libxsmm's B: op(A) as bf16 (m, kk) row-major (column-major kk x m).
    const float *rowsA = a;
    long ldRowsA = lda;
    if (transA) {
        float *t = scratch(&transposed, (size_t)m * (size_t)k * sizeof(float));
        if (!t) { xsmmError = "out of memory"; return 0; }
        libxsmm_otrans(t, a, sizeof(float), (libxsmm_blasint)m, (libxsmm_blasint)k, (libxsmm_blasint)lda,
                       (libxsmm_blasint)k);
        rowsA = t;
        ldRowsA = k;
    }
    for (long i = 0; i < m; i++) {
        convertRow(ax + i * kk, rowsA + i * ldRowsA, k);
        if (kk != k) ax[i * kk + k] = 0;
    }
    // libxsmm's A: op(B) column-major n x kk in VNNI layout, word (p/2, j) = (op(B)[p][j], op(B)[p+1][j]).
    if (!transB) {
        for (long p = 0; p < kk; p += 2) {
            interleaveRows(bx + p * n, b + p * ldb, p + 1 < k ? b + (p + 1) * ldb : NULL, n);
        }
    } else {
        // B (n, k): row j converted gives words (p/2) along memory; transpose the n x kk/2 words.
        uint16_t *w = scratch(&wordsB, (size_t)n * (size_t)kk * 2);
        if (!w) { xsmmError = "out of memory"; return 0; }
        for (long j = 0; j < n; j++) {
            convertRow(w + j * kk, b + j * ldb, k);
            if (kk != k) w[j * kk + k] = 0;
        }
        libxsmm_otrans(bx, w, 4, (libxsmm_blasint)(kk / 2), (libxsmm_blasint)n, (libxsmm_blasint)(kk / 2),
                       (libxsmm_blasint)n);
    }
    const libxsmm_blasint mx = (libxsmm_blasint)n, nx = (libxsmm_blasint)m, kx = (libxsmm_blasint)kk;
    const libxsmm_blasint la = mx, lb = kx, lc = (libxsmm_blasint)(alpha == 1 ? ldc : n);
    const float one = 1, kernelBeta = alpha == 1 ? beta : 0;
    const int flags = LIBXSMM_GEMM_FLAG_VNNI_A, prefetch = LIBXSMM_GEMM_PREFETCH_NONE;
    libxsmm_bsmmfunction kernel = libxsmm_bsmmdispatch(mx, nx, kx, &la, &lb, &lc, &one, &kernelBeta, &flags, &prefetch);
    if (!kernel) { xsmmError = "libxsmm_bsmmdispatch returned no kernel"; return 0; }
    if (alpha == 1) {
        kernel((const libxsmm_bfloat16 *)bx, (const libxsmm_bfloat16 *)ax, c);
    } else {
        float *p = product.p;
        kernel((const libxsmm_bfloat16 *)bx, (const libxsmm_bfloat16 *)ax, p);
        addScaled(c, ldc, p, m, n, alpha, beta);
    }
    return 1;
}
