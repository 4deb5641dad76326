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

#ifdef __cplusplus
}
#endif
#endif
