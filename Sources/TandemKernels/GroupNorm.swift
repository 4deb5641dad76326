/// Group normalisation (Wu & He, "Group Normalization", 2018) with one group per channel, as
/// `torch.nn.GroupNorm(num_groups: C, num_channels: C)` on wav2vec 2.0's first feature-encoder layer, on
/// channels-last activations: each (b, c) is normalised over its T values with the biased variance and
/// eps inside the square root, then scaled and shifted per channel.
///
/// A channel's T values sit C floats apart, so each pass sweeps the rows in order and keeps C running
/// sums. The sums are in Double: T reaches tens of thousands (16 kHz audio after a stride of 5), where a
/// Float running sum loses digits.

typealias DoubleVector = SIMD16<Double>

/// Runs `body` with two uninitialised Double buffers of C sums each, rounded up to whole 16-lane vectors so that they
/// load and store all 16 lanes (the tail lanes sum the zeros that `load` pads with).
@inline(__always)
func withChannelSums(C: Int, _ body: (UnsafeMutablePointer<Double>, UnsafeMutablePointer<Double>) -> Void) {
    let padded = (C + 15) / 16 * 16
    withUnsafeTemporaryAllocation(of: Double.self, capacity: 2 * padded) { buffer in
        let base = buffer.baseAddress!
        body(base, base + padded)
    }
}

@_transparent
func loadDoubles(_ p: UnsafePointer<Double>) -> DoubleVector { UnsafeRawPointer(p).loadUnaligned(as: DoubleVector.self) }

@_transparent
func storeDoubles(_ v: DoubleVector, to p: UnsafeMutablePointer<Double>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: DoubleVector.self)
}

// MARK: - Forward

/// out (B, T, C) = (inp - mean) rstd weight + bias, with mean and rstd = 1 / √(var + eps) (B, C) per
/// batch element and channel over the T rows, saved for backward. weight, bias (C). `out` may be `inp`.
public func channelNormOverTimeForward(out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
                                       rstd: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                                       weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
                                       B: Int, T: Int, C: Int, eps: Float) {
    withChannelSums(C: C) { sums, squares in
        for b in 0..<B {
            let x = inp + b * T * C, y = out + b * T * C, mu = mean + b * C, r = rstd + b * C
            // Two passes, as LayerNorm: the mean, then the mean of squared deviations.
            for (c, _) in chunks(C) { storeDoubles(DoubleVector(), to: sums + c); storeDoubles(DoubleVector(), to: squares + c) }
            for t in 0..<T {
                for (c, lanes) in chunks(C) {
                    storeDoubles(loadDoubles(sums + c) + DoubleVector(load(x + t * C + c, lanes: lanes)), to: sums + c)
                }
            }
            for (c, lanes) in chunks(C) { store(Vector(loadDoubles(sums + c) / Double(T)), to: mu + c, lanes: lanes) }
            for t in 0..<T {
                for (c, lanes) in chunks(C) {
                    let d = DoubleVector(load(x + t * C + c, lanes: lanes) - load(mu + c, lanes: lanes))
                    storeDoubles(loadDoubles(squares + c).addingProduct(d, d), to: squares + c)
                }
            }
            for (c, lanes) in chunks(C) {
                store(Vector(1 / (loadDoubles(squares + c) / Double(T) + Double(eps)).squareRoot()), to: r + c, lanes: lanes)
            }
            for t in 0..<T {
                for (c, lanes) in chunks(C) {
                    let i = t * C + c
                    let scale = load(r + c, lanes: lanes) * load(weight + c, lanes: lanes)
                    let norm = load(x + i, lanes: lanes) - load(mu + c, lanes: lanes)
                    store(load(bias + c, lanes: lanes).addingProduct(norm, scale), to: y + i, lanes: lanes)
                }
            }
        }
    }
}

// MARK: - Backward

/// Gradients of `channelNormOverTimeForward`, accumulated, from the saved mean and rstd (B, C). With
/// x̂ = (x - mean) rstd per (b, c) over its T values: dinp += weight rstd (dout - mean(dout) -
/// x̂ mean(dout x̂)), dweight (C) += Σ_b,t dout x̂, dbias (C) += Σ_b,t dout. A nil gradient is skipped.
public func channelNormOverTimeBackward(dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>?,
                                        dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
                                        inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                        mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
                                        B: Int, T: Int, C: Int) {
    withChannelSums(C: C) { dySums, dyNormSums in
        for b in 0..<B {
            let x = inp + b * T * C, dy = dout + b * T * C, mu = mean + b * C, r = rstd + b * C
            for (c, _) in chunks(C) { storeDoubles(DoubleVector(), to: dySums + c); storeDoubles(DoubleVector(), to: dyNormSums + c) }
            for t in 0..<T {
                for (c, lanes) in chunks(C) {
                    let i = t * C + c
                    let d = load(dy + i, lanes: lanes)
                    let norm = (load(x + i, lanes: lanes) - load(mu + c, lanes: lanes)) * load(r + c, lanes: lanes)
                    storeDoubles(loadDoubles(dySums + c) + DoubleVector(d), to: dySums + c)
                    storeDoubles(loadDoubles(dyNormSums + c) + DoubleVector(d * norm), to: dyNormSums + c)
                }
            }
            for (c, lanes) in chunks(C) {
                if let dbias { accumulate(Vector(loadDoubles(dySums + c)), into: dbias + c, lanes: lanes) }
                if let dweight { accumulate(Vector(loadDoubles(dyNormSums + c)), into: dweight + c, lanes: lanes) }
                // From here on the means.
                storeDoubles(loadDoubles(dySums + c) / Double(T), to: dySums + c)
                storeDoubles(loadDoubles(dyNormSums + c) / Double(T), to: dyNormSums + c)
            }
            guard let dinp else { continue }
            let dx = dinp + b * T * C
            for t in 0..<T {
                for (c, lanes) in chunks(C) {
                    let i = t * C + c, rV = load(r + c, lanes: lanes)
                    let norm = (load(x + i, lanes: lanes) - load(mu + c, lanes: lanes)) * rV
                    let dyMean = Vector(loadDoubles(dySums + c)), dyNormMean = Vector(loadDoubles(dyNormSums + c))
                    let g = load(dy + i, lanes: lanes) - dyMean - norm * dyNormMean
                    accumulate(g * (load(weight + c, lanes: lanes) * rV), into: dx + i, lanes: lanes)
                }
            }
        }
    }
}

// MARK: - Reference

/// Naive `channelNormOverTimeForward` in Double.
public func channelNormOverTimeForwardReference(out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
                                                rstd: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                                                weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
                                                B: Int, T: Int, C: Int, eps: Float) {
    for b in 0..<B {
        for c in 0..<C {
            let xs = (0..<T).map { Double(inp[(b * T + $0) * C + c]) }
            let mu = xs.reduce(0, +) / Double(T)
            let variance = xs.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / Double(T)
            let r = 1 / (variance + Double(eps)).squareRoot()
            mean[b * C + c] = Float(mu)
            rstd[b * C + c] = Float(r)
            for t in 0..<T {
                out[(b * T + t) * C + c] = Float((xs[t] - mu) * r * Double(weight[c]) + Double(bias[c]))
            }
        }
    }
}

/// Naive `channelNormOverTimeBackward`: the full Jacobian of each (b, c)'s T values applied to dout, in
/// Double.
public func channelNormOverTimeBackwardReference(dinp: UnsafeMutablePointer<Float>?,
                                                 dweight: UnsafeMutablePointer<Float>?,
                                                 dbias: UnsafeMutablePointer<Float>?, dout: UnsafePointer<Float>,
                                                 inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                                 mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
                                                 B: Int, T: Int, C: Int) {
    var dw = [Double](repeating: 0, count: C), db = [Double](repeating: 0, count: C)
    for b in 0..<B {
        for c in 0..<C {
            let mu = Double(mean[b * C + c]), r = Double(rstd[b * C + c])
            let index = { (t: Int) in (b * T + t) * C + c }
            let norm = (0..<T).map { (Double(inp[index($0)]) - mu) * r }
            // d x̂_j / d x_i = r (δ_ij - 1/T - x̂_i x̂_j / T)
            for i in 0..<T {
                var acc = 0.0
                for j in 0..<T {
                    let jac = r * ((i == j ? 1 : 0) - 1 / Double(T) - norm[i] * norm[j] / Double(T))
                    acc += Double(dout[index(j)]) * Double(weight[c]) * jac
                }
                dinp?[index(i)] += Float(acc)
                dw[c] += Double(dout[index(i)]) * norm[i]
                db[c] += Double(dout[index(i)])
            }
        }
    }
    for c in 0..<C {
        dweight?[c] += Float(dw[c])
        dbias?[c] += Float(db[c])
    }
}
