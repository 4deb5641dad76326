// bf16 GEMM on AVX512_BF16, written for Tandem (see the header and docs/performance.md, "bf16").
//
// GotoBLAS / BLIS blocking: for each NC-column block of op(B) and each KC-deep slice of K, the slice of
// op(B) is packed into NR-column panels; for each MC-row block of op(A) its slice is packed into
// MR-row panels; a register-blocked MR x NR micro-kernel then runs over every (panel of A, panel of B).
// Packing rounds the fp32 inputs to bf16 (vcvtne2ps2bf16: round to nearest even) and interleaves
// k-pairs: a packed element is a 32-bit word holding (x[k], x[k+1]) as two bf16, the layout vdpbf16ps
// consumes (each fp32 lane += a[k] b[k] + a[k+1] b[k+1]). An odd K gets a zero partner; rows and
// columns past the matrix are packed as zeros, so the micro-kernel always computes a full tile and only
// its stores are masked.
//
// The AVX-512 code is compiled through function attributes instead of -m flags so that the CPU check
// (and everything else outside the attributed functions) stays baseline x86-64: a CPU without
// AVX512_BF16 gets a message, never SIGILL.
#include "CBF16Gemm.h"

#include <cpuid.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

// MR x NR = 12 x 32: 24 zmm accumulators and 2 for the row of B; the A pair comes as an embedded
// broadcast. The blocking was chosen by measurement on Zen 4 (1 MB L2 per core) over BERT-base and
// ViT-B/16 shapes: KC = 768 makes K one block for hidden 768 (C is read and written once), an MC x KC
// block of A is 144 KB in L2, a KC x NC block of B 1.5 MB in L3; smaller KC, larger MC or NC measured
// within noise or slower.
enum { MR = 12, NR = 32, KC = 768, MC = 96, NC = 1024 };

// MARK: - CPU check

static int bf16Supported;
static pthread_once_t bf16Once = PTHREAD_ONCE_INIT;

static void detectBF16(void) {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & (1u << 27))) return;  // OSXSAVE
    unsigned xcr0lo, xcr0hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0lo), "=d"(xcr0hi) : "c"(0));
    // The OS saves SSE, AVX, opmask, upper ZMM0-15 and ZMM16-31 state.
    if ((xcr0lo & 0xE6) != 0xE6) return;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return;
    unsigned maxSubleaf = eax;
    int f = (ebx >> 16) & 1, bw = (ebx >> 30) & 1, vl = (ebx >> 31) & 1;
    if (!f || !bw || !vl || maxSubleaf < 1) return;
    __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx);
    bf16Supported = (eax >> 5) & 1;
}

int tandem_bf16_supported(void) {
    pthread_once(&bf16Once, detectBF16);
    return bf16Supported;
}

// MARK: - Per-thread packing buffers

// Grown on demand and kept for the thread's life, so steady-state calls allocate nothing; freed when
// the thread exits (a worker pool's threads may).
typedef struct {
    uint32_t *a, *b;
    size_t aWords, bWords;
} Workspace;

static pthread_key_t workspaceKey;
static pthread_once_t workspaceOnce = PTHREAD_ONCE_INIT;

static void freeWorkspace(void *p) {
    Workspace *w = p;
    free(w->a);
    free(w->b);
    free(w);
}

static void makeWorkspaceKey(void) { pthread_key_create(&workspaceKey, freeWorkspace); }

static Workspace *workspace(void) {
    pthread_once(&workspaceOnce, makeWorkspaceKey);
    Workspace *w = pthread_getspecific(workspaceKey);
    if (!w) {
        w = calloc(1, sizeof *w);
        if (!w || pthread_setspecific(workspaceKey, w) != 0) {
            fprintf(stderr, "tandem_bf16_sgemm: cannot allocate a packing workspace\n");
            abort();
        }
    }
    return w;
}

static uint32_t *reserve(uint32_t **buffer, size_t *words, size_t need) {
    if (need > *words) {
        free(*buffer);
        size_t bytes = (need * sizeof(uint32_t) + 63) & ~(size_t)63;
        *buffer = aligned_alloc(64, bytes);
        if (!*buffer) {
            fprintf(stderr, "tandem_bf16_sgemm: cannot allocate %zu bytes of packing buffer\n", bytes);
            abort();
        }
        *words = need;
    }
    return *buffer;
}

// MARK: - Packing

static inline long minl(long a, long b) { return a < b ? a : b; }

/// The first `count` (0...16) lanes.
static inline __mmask16 lanes(long count) {
    return count >= 16 ? (__mmask16)0xFFFF : count <= 0 ? 0 : (__mmask16)((1u << count) - 1);
}

/// Transposes a 16 x 16 matrix of 32-bit words held one row per register, in place: unpacks within
/// 128-bit lanes pair rows, then two rounds of 128-bit lane shuffles finish the transpose.
BF16_TARGET static inline void transpose16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    // u[4g + c]: column 4L + c of rows 4g...4g+3 in 128-bit lane L.
    for (int g = 0; g < 4; g++) {
        u[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
        u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
    }
    // For each c, a 4 x 4 transpose of 128-bit lanes across u[c], u[4 + c], u[8 + c], u[12 + c].
    for (int c = 0; c < 4; c++) {
        __m512i e0 = _mm512_shuffle_i32x4(u[c], u[4 + c], _MM_SHUFFLE(2, 0, 2, 0));
        __m512i e1 = _mm512_shuffle_i32x4(u[c], u[4 + c], _MM_SHUFFLE(3, 1, 3, 1));
        __m512i e2 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], _MM_SHUFFLE(2, 0, 2, 0));
        __m512i e3 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], _MM_SHUFFLE(3, 1, 3, 1));
        r[c] = _mm512_shuffle_i32x4(e0, e2, _MM_SHUFFLE(2, 0, 2, 0));
        r[8 + c] = _mm512_shuffle_i32x4(e0, e2, _MM_SHUFFLE(3, 1, 3, 1));
        r[4 + c] = _mm512_shuffle_i32x4(e1, e3, _MM_SHUFFLE(2, 0, 2, 0));
        r[12 + c] = _mm512_shuffle_i32x4(e1, e3, _MM_SHUFFLE(3, 1, 3, 1));
    }
}

/// Packs a panel whose K runs along memory rows: dst[q W + x] = bf16 pair (src[x ld + 2q],
/// src[x ld + 2q + 1]) for x < nx, q < (kc + 1) / 2; zero for nx <= x < W and past kc.
/// Sixteen rows by 32 floats are converted at a time (16 pairs per row) and transposed.
BF16_TARGET static void packAlongK(uint32_t *dst, const float *src, long ld, long nx, long kc, int W) {
    long kp = (kc + 1) / 2;
    for (int g = 0; g < W; g += 16) {
        __mmask16 store = lanes(W - g);
        for (long q0 = 0; q0 < kp; q0 += 16) {
            long floats = minl(32, kc - 2 * q0);
            __mmask16 lo = lanes(floats), hi = lanes(floats - 16);
            __m512i r[16];
            for (int x = 0; x < 16; x++) {
                if (g + x < nx) {
                    const float *s = src + (g + x) * ld + 2 * q0;
                    __m512 a = _mm512_maskz_loadu_ps(lo, s), b = _mm512_maskz_loadu_ps(hi, s + 16);
                    r[x] = (__m512i)_mm512_cvtne2ps_pbh(b, a);
                } else {
                    r[x] = _mm512_setzero_si512();
                }
            }
            transpose16(r);
            long pairs = minl(16, kp - q0);
            for (long q = 0; q < pairs; q++) _mm512_mask_storeu_epi32(dst + (q0 + q) * W + g, store, r[q]);
        }
    }
}

/// Packs a panel whose X runs along memory rows (two rows of memory make one k-pair): dst[q W + x] =
/// bf16 pair (src[2q ld + x], src[(2q + 1) ld + x]), zero where x >= nx or 2q + 1 >= kc.
BF16_TARGET static void packAcrossK(uint32_t *dst, const float *src, long ld, long nx, long kc, int W) {
    // Word 2j of the result takes bf16 j of the even row, word 2j + 1 bf16 j of the odd row.
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                                23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    long kp = (kc + 1) / 2;
    for (long q = 0; q < kp; q++) {
        const float *even = src + 2 * q * ld, *odd = even + ld;
        int hasOdd = 2 * q + 1 < kc;
        for (int g = 0; g < W; g += 16) {
            __mmask16 load = lanes(nx - g);
            __m512 e = _mm512_maskz_loadu_ps(load, even + g);
            __m512 o = hasOdd ? _mm512_maskz_loadu_ps(load, odd + g) : _mm512_setzero_ps();
            __m512i v = _mm512_permutexvar_epi16(interleave, (__m512i)_mm512_cvtne2ps_pbh(o, e));
            _mm512_mask_storeu_epi32(dst + q * W + g, lanes(W - g), v);
        }
    }
}

// MARK: - Micro-kernel

#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

/// C (mr x NR tile, columns masked by m0 / m1) = alpha (A panel . B panel) + beta C, beta = 0 not
/// reading C; the panels are kp k-pairs deep.
BF16_TARGET static inline void microKernel(long kp, const uint32_t *restrict ap, const uint32_t *restrict bp,
                                           float *c, long ldc, int mr, __mmask16 m0, __mmask16 m1,
                                           float alpha, float beta) {
#define DECLARE(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = _mm512_setzero_ps();
    ROWS(DECLARE)
    // The tile of C is written (and with beta != 0 read) only after the k loop; asking for its lines now
    // lets them arrive during it. In a training step C is an activation or a gradient last touched long
    // before, so without this every tile's stores waited on memory: 10-11% of the products' time at
    // BERT-base's and ViT-B/16's shapes with operands out of cache (docs/performance.md, "bf16").
#define PREFETCH(i)                                                                                       \
    if (i < mr) {                                                                                         \
        _mm_prefetch((const char *)(c + (long)i * ldc), _MM_HINT_T0);                                     \
        _mm_prefetch((const char *)(c + (long)i * ldc + 16), _MM_HINT_T0);                                \
    }
    ROWS(PREFETCH)
    for (long q = 0; q < kp; q++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512(bp), b1 = (__m512bh)_mm512_load_si512(bp + 16);
#define STEP(i)                                                            \
    {                                                                      \
        __m512bh a = (__m512bh)_mm512_set1_epi32((int)ap[i]);              \
        c##i##0 = _mm512_dpbf16_ps(c##i##0, a, b0);                        \
        c##i##1 = _mm512_dpbf16_ps(c##i##1, a, b1);                        \
    }
        ROWS(STEP)
        ap += MR;
        bp += NR;
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#define STORE(i)                                                                                          \
    if (i < mr) {                                                                                         \
        float *row = c + (long)i * ldc;                                                                   \
        if (beta == 0) {                                                                                  \
            _mm512_mask_storeu_ps(row, m0, _mm512_mul_ps(va, c##i##0));                                   \
            _mm512_mask_storeu_ps(row + 16, m1, _mm512_mul_ps(va, c##i##1));                              \
        } else {                                                                                          \
            __m512 old0 = _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m0, row));                              \
            __m512 old1 = _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m1, row + 16));                         \
            _mm512_mask_storeu_ps(row, m0, _mm512_fmadd_ps(va, c##i##0, old0));                           \
            _mm512_mask_storeu_ps(row + 16, m1, _mm512_fmadd_ps(va, c##i##1, old1));                      \
        }                                                                                                 \
    }
    ROWS(STORE)
#undef DECLARE
#undef PREFETCH
#undef STEP
#undef STORE
}

// MARK: - Driver

BF16_TARGET static void blockedGemm(int transA, int transB, long m, long n, long k, float alpha,
                                    const float *a, long lda, const float *b, long ldb,
                                    float beta, float *c, long ldc) {
    Workspace *w = workspace();
    long kpMax = (minl(KC, k) + 1) / 2;
    long ncMax = (minl(NC, n) + NR - 1) / NR * NR, mcMax = (minl(MC, m) + MR - 1) / MR * MR;
    uint32_t *bp = reserve(&w->b, &w->bWords, (size_t)(kpMax * ncMax));
    uint32_t *ap = reserve(&w->a, &w->aWords, (size_t)(kpMax * mcMax));
    for (long jc = 0; jc < n; jc += NC) {
        long nc = minl(NC, n - jc);
        for (long pc = 0; pc < k; pc += KC) {
            long kc = minl(KC, k - pc), kp = (kc + 1) / 2;
            float betaHere = pc == 0 ? beta : 1.0f;
            for (long jr = 0; jr < nc; jr += NR) {
                long nx = minl(NR, nc - jr);
                if (transB) packAlongK(bp + jr * kp, b + (jc + jr) * ldb + pc, ldb, nx, kc, NR);
                else packAcrossK(bp + jr * kp, b + pc * ldb + jc + jr, ldb, nx, kc, NR);
            }
            for (long ic = 0; ic < m; ic += MC) {
                long mc = minl(MC, m - ic);
                for (long ir = 0; ir < mc; ir += MR) {
                    long nx = minl(MR, mc - ir);
                    if (transA) packAcrossK(ap + ir * kp, a + pc * lda + ic + ir, lda, nx, kc, MR);
                    else packAlongK(ap + ir * kp, a + (ic + ir) * lda + pc, lda, nx, kc, MR);
                }
                for (long jr = 0; jr < nc; jr += NR) {
                    long nr = minl(NR, nc - jr);
                    __mmask16 m0 = lanes(nr), m1 = lanes(nr - 16);
                    for (long ir = 0; ir < mc; ir += MR) {
                        microKernel(kp, ap + ir * kp, bp + jr * kp, c + (ic + ir) * ldc + jc + jr, ldc,
                                    (int)minl(MR, mc - ir), m0, m1, alpha, betaHere);
                    }
                }
            }
        }
    }
}

void tandem_bf16_sgemm(int transA, int transB, long m, long n, long k, float alpha,
                       const float *a, long lda, const float *b, long ldb,
                       float beta, float *c, long ldc) {
    if (m <= 0 || n <= 0) return;
    if (!tandem_bf16_supported()) {
        fprintf(stderr, "tandem_bf16_sgemm: this CPU lacks AVX512_BF16 (or AVX-512 F/BW/VL); "
                        "use fp32 matrix products (train.precision: fp32)\n");
        abort();
    }
    if (k <= 0 || alpha == 0) {  // C = beta C, as BLAS does: A and B are not read.
        for (long i = 0; i < m; i++) {
            for (long j = 0; j < n; j++) c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j];
        }
        return;
    }
    blockedGemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
