// See CKernels.h. The product of a recurrent layer's time step, C (M, N) += A (M, K) op(W), M = the
// batch (a few dozen rows), op(W) the hidden weight W_hh (K, N) packed once per forward or backward call
// into panels of 32 columns. cblas_sgemm packs W_hh again at every step (OpenBLAS's incopy/itcopy were
// 54% of the forward step product's time and 43% of the backward one's for a 2 x 650 LSTM, perf), which
// costs more than the 20-row product itself.
//
// The register tile is up to 12 rows x 32 columns (24 zmm accumulators): per k, two loads of
// the panel and one broadcast of A per row feed 2 x rows FMAs. A panel (K x 32 floats, 83 KB for an
// LSTM of 650) is read once from L3 by the first row chunk and from L2 by the others, while a software
// prefetch spread over the chunks brings the next panel into L2, so the L3 traffic is even over the
// whole panel instead of in a burst (the forward product of B = 20, H = 650 ran at 136 GFLOP/s without it,
// 153-159 with it; 10 x 48 and 24 x 16 tiles measured 127-139).
//
// Numerics: every C element is one running FMA sum over k = 0 ..< K in order, added to C at the end,
// independent of the tile, the row chunks and the panel ranges (so of any split across threads). The
// FMAs are explicit intrinsics, so the target's -ffp-contract=off does not apply to them: these products
// had no bit-exact Swift or BLAS counterpart to match (OpenBLAS sums in its own blocked order), and
// are held to their Double reference within rounding (TandemKernelsTests.PanelGemmTests).
#include "CKernels.h"

#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define PANEL 32

long tandem_panel_packed_count(long k, long n) { return (n + PANEL - 1) / PANEL * PANEL * k; }

long tandem_panel_count(long n) { return (n + PANEL - 1) / PANEL; }

void tandem_panel_pack(float *packed, const float *w, long ldw, long k, long n, int transposed) {
    for (long p = 0; p * PANEL < n; p++) {
        long n0 = p * PANEL, width = n - n0 < PANEL ? n - n0 : PANEL;
        float *out = packed + p * k * PANEL;
        if (transposed) {
            // op(W) = W^T, W stored (N, K): column j of the panel is row n0 + j of W.
            for (long kk = 0; kk < k; kk++) {
                for (long j = 0; j < width; j++) out[kk * PANEL + j] = w[(n0 + j) * ldw + kk];
                for (long j = width; j < PANEL; j++) out[kk * PANEL + j] = 0;
            }
        } else {
            for (long kk = 0; kk < k; kk++) {
                memcpy(out + kk * PANEL, w + kk * ldw + n0, (size_t)width * sizeof(float));
                memset(out + kk * PANEL + width, 0, (size_t)(PANEL - width) * sizeof(float));
            }
        }
    }
}

#if defined(__x86_64__)
#define AVX512 __attribute__((target("avx512f")))
#define MAX_ROWS 12

AVX512 static inline __mmask16 firstLanes(long lanes) {
    return lanes >= 16 ? (__mmask16)0xFFFF : lanes <= 0 ? (__mmask16)0 : (__mmask16)((1u << lanes) - 1);
}

/// C (rows, width) += A (rows, K) P (K, 32), P one packed panel; vectors = 1 when width <= 16.
/// At each k < `prefetches` prefetches the line at `prefetch` + k `stride` bytes into L2 (this chunk's
/// share of the next panel).
AVX512 static inline __attribute__((always_inline))
void tile(int rows, int vectors, long k, const float *a, long lda, const float *p, float *c, long ldc, long width,
          const char *prefetch, long prefetches, long stride) {
    __m512 acc[MAX_ROWS][2];
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < vectors; j++) acc[i][j] = _mm512_setzero_ps();
    for (long kk = 0; kk < k; kk++) {
        __m512 w0 = _mm512_loadu_ps(p + kk * PANEL), w1 = w0;
        if (vectors == 2) w1 = _mm512_loadu_ps(p + kk * PANEL + 16);
        if (kk < prefetches) _mm_prefetch(prefetch + kk * stride, _MM_HINT_T1);
        for (int i = 0; i < rows; i++) {
            __m512 x = _mm512_set1_ps(a[i * lda + kk]);
            acc[i][0] = _mm512_fmadd_ps(x, w0, acc[i][0]);
            if (vectors == 2) acc[i][1] = _mm512_fmadd_ps(x, w1, acc[i][1]);
        }
    }
    for (int i = 0; i < rows; i++) {
        for (int j = 0; j < vectors; j++) {
            __mmask16 m = firstLanes(width - 16 * j);
            float *cij = c + i * ldc + 16 * j;
            _mm512_mask_storeu_ps(cij, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, cij), acc[i][j]));
        }
    }
}

#define ROWS(R) case R: \
    if (vectors == 2) tile(R, 2, k, ar, lda, panel, cr, ldc, width, prefetch, prefetches, stride); \
    else tile(R, 1, k, ar, lda, panel, cr, ldc, width, prefetch, prefetches, stride); \
    break;

AVX512 void tandem_panel_gemm(float *c, long ldc, const float *a, long lda, const float *packed,
                              long m, long n, long k, long panelBegin, long panelEnd) {
    if (m <= 0 || k <= 0) return;
    long panels = tandem_panel_count(n);
    // Row chunks of at most MAX_ROWS, as even as possible (B = 20: two of 10).
    long chunks = (m + MAX_ROWS - 1) / MAX_ROWS;
    for (long p = panelBegin; p < panelEnd && p < panels; p++) {
        long n0 = p * PANEL, width = n - n0 < PANEL ? n - n0 : PANEL;
        int vectors = width > 16 ? 2 : 1;
        const float *panel = packed + p * k * PANEL;
        // The next panel, 2 k lines: each chunk prefetches its share, at most one line per k (a lone chunk
        // every other line, which the L2 streamer's pairing of adjacent lines fills in).
        long nextLines = p + 1 < panelEnd && p + 1 < panels ? 2 * k : 0;
        long share = (nextLines + chunks - 1) / chunks;
        long stride = share > k ? 128 : 64;
        for (long ch = 0; ch < chunks; ch++) {
            long r0 = m * ch / chunks, rows = m * (ch + 1) / chunks - r0;
            const float *ar = a + r0 * lda;
            float *cr = c + r0 * ldc + n0;
            long first = ch * share, lines = nextLines - first < share ? nextLines - first : share;
            long prefetches = lines <= 0 ? 0 : (lines * 64 + stride - 1) / stride;
            const char *prefetch = (const char *)(panel + k * PANEL) + 64 * first;
            switch (rows) {
                ROWS(1) ROWS(2) ROWS(3) ROWS(4) ROWS(5) ROWS(6)
                ROWS(7) ROWS(8) ROWS(9) ROWS(10) ROWS(11) ROWS(12)
            }
        }
    }
}
#else
void tandem_panel_gemm(float *c, long ldc, const float *a, long lda, const float *packed,
                       long m, long n, long k, long panelBegin, long panelEnd) { __builtin_trap(); }
#endif
