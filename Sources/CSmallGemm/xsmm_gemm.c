// Row-major fp32 products through libxsmm 1.17's JIT GEMM kernels (see CSmallGemm.h). Written for Tandem
// against libxsmm's public header; libxsmm is column-major, so the row-major C = op(A) op(B) is computed
// as the column-major C^T = op(B)^T op(A)^T: libxsmm's A is our B and its B our A.
#include "CSmallGemm.h"

#include <libxsmm.h>

#include <pthread.h>
#include <stdlib.h>

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

// Grown on demand and kept per thread: the transposed B and the alpha product.
typedef struct { void *p; size_t bytes; } Scratch;
static _Thread_local Scratch transposed, product;

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

int tandem_xsmm_sgemm(int transA, int transB, long m, long n, long k, float alpha,
                      const float *a, long lda, const float *b, long ldb,
                      float beta, float *c, long ldc) {
    if (!checkF32(beta)) return 0;
    if (m == 0 || n == 0) return 1;
    const long ldaX = transB ? n : ldb, ldcX = alpha == 1 ? ldc : n;
    libxsmm_smmfunction kernel = dispatchF32(transA, m, n, k, ldaX, lda, ldcX, alpha == 1 ? beta : 0);
    if (!kernel) { xsmmError = "libxsmm_smmdispatch returned no kernel"; return 0; }
    if ((alpha != 1 && !scratch(&product, (size_t)m * (size_t)n * sizeof(float)))
        || (transB && !scratch(&transposed, (size_t)k * (size_t)n * sizeof(float)))) {
        xsmmError = "out of memory"; return 0;
    }
    runF32(kernel, transB, m, n, k, alpha, a, b, ldb, beta, c, ldc);
    return 1;
}
