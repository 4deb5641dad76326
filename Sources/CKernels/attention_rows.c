// See CKernels.h. A port of TandemKernels' maskedSoftmaxRow and the row loop of attentionBackward,
// operation for operation (FastMath.exp, FastMath.maximum, horizontalMax, horizontalSum, rowDot), so
// both give the same bits; what differs is the partial last vector of a row, which Swift can only
// load and store through a stack copy (a memcpy call and vzeroupper each) and AVX-512 does masked.
// The AVX-512 functions carry target attributes and sit behind tandem_avx512_supported(), so the
// target needs no -m flags.
#include "CKernels.h"

#include <immintrin.h>

#pragma STDC FP_CONTRACT OFF

int tandem_avx512_supported(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

#if defined(__x86_64__)
#define AVX512 __attribute__((target("avx512f")))

/// The first min(lanes, 16) lanes (none when lanes <= 0).
AVX512 static inline __mmask16 firstLanes(long lanes) {
    return lanes >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << lanes) - 1);
}

/// FastMath.clamp: lo where x < lo, hi where x > hi, x otherwise (NaN stays NaN).
AVX512 static inline __m512 clamp(__m512 x, float lo, float hi) {
    __m512 l = _mm512_set1_ps(lo), h = _mm512_set1_ps(hi);
    x = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, l, _CMP_LT_OQ), x, l);
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, h, _CMP_GT_OQ), x, h);
}

/// FastMath.exp, step for step (see its comments for the method and the error bound).
AVX512 static inline __m512 exp16(__m512 x) {
    __m512 xc = clamp(x, -87.5f, 88.8f);
    __m512 magic = _mm512_set1_ps(12582912.0f);
    __m512 t = _mm512_fmadd_ps(xc, _mm512_set1_ps(1.44269504f), magic);
    __m512 n = _mm512_sub_ps(t, magic);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693145751953125f), xc);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(-1.428606765330187e-6f), r);
    __m512 p = _mm512_set1_ps(0.00275027776f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.0167378429f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.0833390654f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.333330364f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.999999762f));
    __m512 two = _mm512_set1_ps(2);
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_fmadd_ps(r, two, two));
    __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(126 - 0x4B400000)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
}

/// horizontalSum: halves added down to two lanes, then those two.
AVX512 static inline float sum16(__m512 v) {
    __m256 lo = _mm512_castps512_ps256(v);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    __m256 a = _mm256_add_ps(lo, hi);
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
    return _mm_cvtss_f32(c) + _mm_cvtss_f32(_mm_shuffle_ps(c, c, 1));
}

/// horizontalMax: the larger half kept at each step (high where high > low), then Swift's max(c0, c1).
AVX512 static inline float max16(__m512 v) {
    __m256 lo = _mm512_castps512_ps256(v);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    __m256 a = _mm256_max_ps(hi, lo);
    __m128 b = _mm_max_ps(_mm256_extractf128_ps(a, 1), _mm256_castps256_ps128(a));
    __m128 c = _mm_max_ps(_mm_movehl_ps(b, b), b);
    float c0 = _mm_cvtss_f32(c), c1 = _mm_cvtss_f32(_mm_shuffle_ps(c, c, 1));
    return c1 >= c0 ? c1 : c0;
}

/// Keys j..<j+16 allowed: j + lane <= lastKey and, with a mask, mask[j + lane] != 0 (read in lanes `k`).
AVX512 static inline __mmask16 allowed(long j, __mmask16 k, long lastKey, const float *mask) {
    __mmask16 inRange = _mm512_cmp_epi32_mask(
        _mm512_add_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32((int)j)),
        _mm512_set1_epi32((int)lastKey), _MM_CMPINT_LE);
    if (!mask) return inRange;
    __m512 mv = _mm512_maskz_loadu_ps(k, mask + j);
    return inRange & _mm512_cmp_ps_mask(mv, _mm512_setzero_ps(), _CMP_NEQ_UQ);
}

AVX512 static void softmaxRow(float *row, long count, const float *mask, long lastKey) {
    long keys = lastKey + 1;
    for (long j = keys; j < count; j++) row[j] = 0;
    __m512 ninf = _mm512_set1_ps(-__builtin_inff());
    __m512 m = ninf;
    for (long j = 0; j < keys; j += 16) {
        __mmask16 k = firstLanes(keys - j);
        __m512 x = _mm512_maskz_loadu_ps(k, row + j);
        x = _mm512_mask_blend_ps(allowed(j, k, lastKey, mask), ninf, x);
        m = _mm512_max_ps(x, m);  // FastMath.maximum(m, x): x where x > m
    }
    float rowMax = max16(m);
    if (rowMax == -__builtin_inff()) {
        for (long j = 0; j < keys; j++) row[j] = 0;
        return;
    }
    __m512 shift = _mm512_set1_ps(rowMax), s = _mm512_setzero_ps();
    for (long j = 0; j < keys; j += 16) {
        __mmask16 k = firstLanes(keys - j);
        __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, row + j), shift));
        e = _mm512_maskz_mov_ps(allowed(j, k, lastKey, mask), e);
        _mm512_mask_storeu_ps(row + j, k, e);
        s = _mm512_add_ps(s, e);
    }
    __m512 inv = _mm512_set1_ps(1 / sum16(s));
    for (long j = 0; j < keys; j += 16) {
        __mmask16 k = firstLanes(keys - j);
        _mm512_mask_storeu_ps(row + j, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, row + j), inv));
    }
}

AVX512 void tandem_attention_softmax(float *rows, long count, long nrows, const float *mask, int causal,
                                     const int *first_keys) {
    for (long i = 0; i < nrows; i++) {
        float *row = rows + i * count;
        long first = first_keys ? first_keys[i] : 0, last = causal ? i : count - 1;
        for (long j = 0; j < first; j++) row[j] = 0;
        softmaxRow(row + first, count - first, mask ? mask + first : 0, last - first);
    }
}

AVX512 void tandem_attention_softmax_backward(const float *p, float *d, long count, long nrows) {
    for (long i = 0; i < nrows; i++) {
        const float *pr = p + i * count;
        float *dr = d + i * count;
        __m512 s = _mm512_setzero_ps();
        for (long j = 0; j < count; j += 16) {
            __mmask16 k = firstLanes(count - j);
            s = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, pr + j), _mm512_maskz_loadu_ps(k, dr + j), s);
        }
        __m512 dot = _mm512_set1_ps(sum16(s));
        for (long j = 0; j < count; j += 16) {
            __mmask16 k = firstLanes(count - j);
            __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, pr + j), _mm512_sub_ps(_mm512_maskz_loadu_ps(k, dr + j), dot));
            _mm512_mask_storeu_ps(dr + j, k, x);
        }
    }
}
#else
void tandem_attention_softmax(float *rows, long count, long nrows, const float *mask, int causal, const int *first_keys) { __builtin_trap(); }
void tandem_attention_softmax_backward(const float *p, float *d, long count, long nrows) { __builtin_trap(); }
#endif
