// Loops that Swift's SIMD types compile badly, written in C for the C compiler's vectoriser. Each
// does exactly the IEEE single-precision operations of its Swift reference, in the same order, with no
// fused multiply-add (the target is built with -ffp-contract=off), so results are bit-identical.
#ifndef TANDEM_CKERNELS_H
#define TANDEM_CKERNELS_H

#ifdef __cplusplus
extern "C" {
#endif

/// The AdamW loop of TandemKernels' `adamwUpdate` over n elements, in place; the caller precomputes
/// the step's constants. Per element, in this order of Float operations:
///   g = grad * clip;  grad = 0 when zeroing;
///   m = m + (g - m) * oneMinusBeta1;  v = v * beta2 + (oneMinusBeta2 * g) * g;
///   w = w * decay;  w = w - (stepSize * m) / (sqrt(v) / bc2Sqrt + eps).
/// Swift's SIMD16<Float>.squareRoot() is 16 scalar square roots, which made that loop bound by the
/// divider at about a third of memory bandwidth; here sqrt and both divisions are vector instructions.
void tandem_adamw(float *weight, float *grad, float *m, float *v, long n,
                  float stepSize, float bc2Sqrt, float decay, float oneMinusBeta1, float beta2,
                  float oneMinusBeta2, float eps, float clip, int zeroing);

/// 1 when this CPU and the operating system support AVX-512 F, which the attention row kernels below
/// need; callers keep their Swift loops otherwise.
int tandem_avx512_supported(void);

/// Attention's softmax over `rows` rows of `count` scores, in place (TandemKernels' `maskedSoftmaxRow`
/// on each): row i covers keys j <= lastKey, lastKey = i when `causal` and count - 1 otherwise, and
/// with mask[j] != 0 when `mask` is not NULL; every other entry becomes 0, and a row with no such key
/// becomes zeros. The same operations as the Swift version (its exp polynomial, its lane order, its
/// halving sums), so the same bits, but a row's partial last vector is a masked load and store
/// instead of a copy through the stack, which is what made the Swift loop slow on rows of 65 or 197.
/// With `first_keys` (one per row, or NULL for zeros), row i sees no key before first_keys[i]: entries
/// before it become 0 and the rest is done as a row of its own starting there (mask read from there too).
/// Needs tandem_avx512_supported().
void tandem_attention_softmax(float *rows, long count, long nrows, const float *mask, int causal,
                              const int *first_keys);

/// Softmax backward over `nrows` rows of `count`: d[j] = p[j] * (d[j] - Σ_k p[k] d[k]) for each row,
/// in place in `d` (the Σ in 16 fused multiply-add lanes summed by halving, as TandemKernels' `rowDot`).
/// Needs tandem_avx512_supported().
void tandem_attention_softmax_backward(const float *p, float *d, long count, long nrows);

/// The W_hh product of a recurrent layer's time step (panel_gemm.c): op(W) (K, N) packed once by
/// tandem_panel_pack into ceil(N / 32) panels of K x 32 floats (columns past N zero), then
/// C (M, N) += A (M, K) op(W) for the panels panelBegin ..< panelEnd (columns 32 panelBegin ..< 32 panelEnd;
/// a range per thread), C and A rows of stride ldc and lda. Each C element is one FMA sum over k in order,
/// so the result does not depend on the ranges. Unlike the loops above it fuses multiply-adds and has no
/// bit-exact Swift twin: it is tested against a Double reference.
/// Floats the packed op(W) takes (`tandem_panel_pack`'s output), and its number of panels.
long tandem_panel_packed_count(long k, long n);
long tandem_panel_count(long n);
/// Packs op(W) (K, N): W stored (K, N) with row stride ldw when `transposed` is 0 (op(W) = W), stored
/// (N, K) when 1 (op(W) = W^T).
void tandem_panel_pack(float *packed, const float *w, long ldw, long k, long n, int transposed);
/// The product; needs tandem_avx512_supported().
void tandem_panel_gemm(float *c, long ldc, const float *a, long lda, const float *packed,
                       long m, long n, long k, long panelBegin, long panelEnd);

#ifdef __cplusplus
}
#endif
#endif
