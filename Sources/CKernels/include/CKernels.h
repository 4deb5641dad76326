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
/// Needs tandem_avx512_supported().
void tandem_attention_softmax(float *rows, long count, long nrows, const float *mask, int causal);

/// Softmax backward over `nrows` rows of `count`: d[j] = p[j] * (d[j] - Σ_k p[k] d[k]) for each row,
/// in place in `d` (the Σ in 16 fused multiply-add lanes summed by halving, as TandemKernels' `rowDot`).
/// Needs tandem_avx512_supported().
void tandem_attention_softmax_backward(const float *p, float *d, long count, long nrows);

#ifdef __cplusplus
}
#endif
#endif
