import CKernels
import Dispatch
import TandemTensor

/// Products with few rows against one weight used many times: a recurrent layer's W_hh, multiplied by
/// the B rows of the state at every one of T steps (h W_hh^T forward, dgates W_hh backward). `cblas_sgemm`
/// packs the weight into its panel layout on every call, which for B = 20 costs more than the product
/// (OpenBLAS's packing was about half the step product's time, `perf`, docs/performance.md "Recurrent
/// layers"). Here the weight is packed once (`panelPack`) and each step runs `panelGemm` on the packed
/// panels (`tandem_panel_gemm`, AVX-512: 12 x 32 register tiles, the next panel prefetched into L2).
public enum PanelGemm {
    /// Whether this CPU runs `panelGemm` (AVX-512 F); callers keep `gemm` otherwise.
    public static let supported: Bool = tandem_avx512_supported() != 0

    /// Floats `panelPack` writes for op(W) (K, N): ceil(N / 32) panels of K x 32.
    public static func packedCount(k: Int, n: Int) -> Int { tandem_panel_packed_count(k, n) }
}

/// Packs op(W) (K, N) for `panelGemm`: W stored (K, N) with row stride `ldw` for `.none`, stored (N, K)
/// (op(W) = W^T) for `.transpose`. `packed` holds `PanelGemm.packedCount(k:n:)` floats.
public func panelPack(_ packed: UnsafeMutablePointer<Float>, _ transW: Transpose, w: UnsafePointer<Float>, ldw: Int,
                      k: Int, n: Int) {
    precondition(ldw >= max(1, transW == .none ? n : k), "panelPack: ldw \(ldw) too small")
    tandem_panel_pack(packed, w, ldw, k, n, transW == .none ? 0 : 1)
}

/// C (M, N) += A (M, K) op(W), op(W) packed by `panelPack`; rows of C and A have strides `ldc`, `lda`.
/// Each element of C is one fused multiply-add sum over k in order, added to C, so the result is the
/// same for any number of threads: with `BLAS.threads` above 1 a product of at least 2^20 multiply-adds
/// is split across that many threads by column panels. Needs `PanelGemm.supported`. Counted by
/// `GemmProfile` while it is enabled.
public func panelGemm(c: UnsafeMutablePointer<Float>, ldc: Int, a: UnsafePointer<Float>, lda: Int,
                      packed: UnsafePointer<Float>, m: Int, n: Int, k: Int) {
    precondition(m >= 0 && n >= 0 && k >= 0 && lda >= max(1, k) && ldc >= max(1, n),
                 "panelGemm: m=\(m) n=\(n) k=\(k) lda=\(lda) ldc=\(ldc)")
    let panels = tandem_panel_count(n)
    let parts = m * n * k >= 1 << 20 ? min(BLAS.threads, panels) : 1
    GemmProfile.measure(m: m, n: n, k: k) {
        if parts <= 1 {
            tandem_panel_gemm(c, ldc, a, lda, packed, m, n, k, 0, panels)
        } else {
            DispatchQueue.concurrentPerform(iterations: parts) { part in
                tandem_panel_gemm(c, ldc, a, lda, packed, m, n, k, panels * part / parts, panels * (part + 1) / parts)
            }
        }
        return .panel
    }
}

// MARK: - Reference

/// Naive `panelGemm` on the unpacked W (stored as for `panelPack`): C += A op(W), sums in Double.
public func panelGemmReference(c: UnsafeMutablePointer<Float>, ldc: Int, a: UnsafePointer<Float>, lda: Int,
                               _ transW: Transpose, w: UnsafePointer<Float>, ldw: Int, m: Int, n: Int, k: Int) {
    for i in 0..<m {
        for j in 0..<n {
            var acc = Double(c[i * ldc + j])
            for p in 0..<k { acc += Double(a[i * lda + p]) * Double(transW == .none ? w[p * ldw + j] : w[j * ldw + p]) }
            c[i * ldc + j] = Float(acc)
        }
    }
}
