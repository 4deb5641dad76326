/// General matrix products on row-major Float matrices, all through `BLAS.sgemm` so that every
/// transpose is a flag to OpenBLAS and never a copy.

// MARK: - Forward

/// C = alpha op(A) op(B) + beta C, row-major, with op(A) (m, k), op(B) (k, n), C (m, n); leading
/// dimensions are row strides in elements, so strided views (one head of a (B, T, C) buffer) need no copy.
/// A is stored (m, k) for `.none` and (k, m) for `.transpose`; likewise B is (k, n) or (n, k).
public func gemm(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int, alpha: Float,
                 a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                 beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    checkGemmShapes(transA, transB, m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc)
    if m == 0 || n == 0 { return }
    BLAS.sgemm(transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
               beta: beta, c: c, ldc: ldc)
}

/// OpenBLAS reports a bad leading dimension on stderr and returns without computing, so a wrong stride
/// would silently leave C stale: check them here instead.
@inline(__always)
func checkGemmShapes(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
                     lda: Int, ldb: Int, ldc: Int) {
    precondition(m >= 0 && n >= 0 && k >= 0, "gemm: negative size m=\(m) n=\(n) k=\(k)")
    precondition(lda >= max(1, transA == .none ? k : m), "gemm: lda \(lda) too small")
    precondition(ldb >= max(1, transB == .none ? n : k), "gemm: ldb \(ldb) too small")
    precondition(ldc >= max(1, n), "gemm: ldc \(ldc) too small")
}

// MARK: - Backward

/// Gradients of C = op(A) op(B) (C (m, n)): dA += dC op(B)^T laid out like A, dB += op(A)^T dC laid
/// out like B; each is one sgemm with beta = 1 whose transposes absorb the layouts. `da`/`db` nil skips.
public func gemmBackward(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
                         a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                         dc: UnsafePointer<Float>, lddc: Int,
                         da: UnsafeMutablePointer<Float>?, ldda: Int,
                         db: UnsafeMutablePointer<Float>?, lddb: Int) {
    if let da {
        switch (transA, transB) {
        case (.none, .none):            // dA (m, k) += dC (m, n) B^T, B (k, n)
            gemm(.none, .transpose, m: m, n: k, k: n, alpha: 1, a: dc, lda: lddc, b: b, ldb: ldb,
                 beta: 1, c: da, ldc: ldda)
        case (.none, .transpose):       // dA (m, k) += dC (m, n) B, B (n, k)
            gemm(.none, .none, m: m, n: k, k: n, alpha: 1, a: dc, lda: lddc, b: b, ldb: ldb,
                 beta: 1, c: da, ldc: ldda)
        case (.transpose, .none):       // dA (k, m) += B (k, n) dC^T
            gemm(.none, .transpose, m: k, n: m, k: n, alpha: 1, a: b, lda: ldb, b: dc, ldb: lddc,
                 beta: 1, c: da, ldc: ldda)
        case (.transpose, .transpose):  // dA (k, m) += B^T dC^T, B (n, k)
            gemm(.transpose, .transpose, m: k, n: m, k: n, alpha: 1, a: b, lda: ldb, b: dc, ldb: lddc,
                 beta: 1, c: da, ldc: ldda)
        }
    }
    if let db {
        switch (transA, transB) {
        case (.none, .none):            // dB (k, n) += A^T dC, A (m, k)
            gemm(.transpose, .none, m: k, n: n, k: m, alpha: 1, a: a, lda: lda, b: dc, ldb: lddc,
                 beta: 1, c: db, ldc: lddb)
        case (.transpose, .none):       // dB (k, n) += A dC, A (k, m)
            gemm(.none, .none, m: k, n: n, k: m, alpha: 1, a: a, lda: lda, b: dc, ldb: lddc,
                 beta: 1, c: db, ldc: lddb)
        case (.none, .transpose):       // dB (n, k) += dC^T A, A (m, k)
            gemm(.transpose, .none, m: n, n: k, k: m, alpha: 1, a: dc, lda: lddc, b: a, ldb: lda,
                 beta: 1, c: db, ldc: lddb)
        case (.transpose, .transpose):  // dB (n, k) += dC^T A^T, A (k, m)
            gemm(.transpose, .transpose, m: n, n: k, k: m, alpha: 1, a: dc, lda: lddc, b: a, ldb: lda,
                 beta: 1, c: db, ldc: lddb)
        }
    }
}

// MARK: - Reference

/// Naive `gemm`: a triple loop with Double accumulation. Same arguments and result.
public func gemmReference(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int, alpha: Float,
                          a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                          beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    for i in 0..<m {
        for j in 0..<n {
            var acc = 0.0
            for p in 0..<k {
                let aip = transA == .none ? a[i * lda + p] : a[p * lda + i]
                let bpj = transB == .none ? b[p * ldb + j] : b[j * ldb + p]
                acc += Double(aip) * Double(bpj)
            }
            // beta = 0 must ignore C entirely (it may hold NaN), as BLAS does.
            let old = beta == 0 ? 0 : Double(beta) * Double(c[i * ldc + j])
            c[i * ldc + j] = Float(Double(alpha) * acc + old)
        }
    }
}

/// Naive `gemmBackward`: each gradient element summed directly from its definition in Double.
public func gemmBackwardReference(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int,
                                  a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                                  dc: UnsafePointer<Float>, lddc: Int,
                                  da: UnsafeMutablePointer<Float>?, ldda: Int,
                                  db: UnsafeMutablePointer<Float>?, lddb: Int) {
    // op(A)[i, p] lives at A[i, p] or A[p, i]; op(B)[p, j] at B[p, j] or B[j, p].
    func aIndex(_ i: Int, _ p: Int, _ ld: Int) -> Int { transA == .none ? i * ld + p : p * ld + i }
    func bIndex(_ p: Int, _ j: Int, _ ld: Int) -> Int { transB == .none ? p * ld + j : j * ld + p }
    if let da {
        for i in 0..<m {
            for p in 0..<k {
                var acc = 0.0
                for j in 0..<n { acc += Double(dc[i * lddc + j]) * Double(b[bIndex(p, j, ldb)]) }
                da[aIndex(i, p, ldda)] += Float(acc)
            }
        }
    }
    if let db {
        for p in 0..<k {
            for j in 0..<n {
                var acc = 0.0
                for i in 0..<m { acc += Double(a[aIndex(i, p, lda)]) * Double(dc[i * lddc + j]) }
                db[bIndex(p, j, lddb)] += Float(acc)
            }
        }
    }
}
