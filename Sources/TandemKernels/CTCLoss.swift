#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Connectionist temporal classification (Graves et al. 2006) over logits, with the log-softmax fused,
/// as `Wav2Vec2ForCTC` computes it: `ctc_loss(log_softmax(logits).transpose(0, 1), targets, input_lengths,
/// target_lengths, blank, reduction, zero_infinity)` in PyTorch's semantics. For utterance n with T_n
/// frames and target l (length L), l' is l with a blank before, between and after its labels (S = 2L + 1)
/// and, in log space over the frames' log-probabilities y,
///
///     alpha_t(s) = log(e^alpha_{t-1}(s) + e^alpha_{t-1}(s-1) [+ e^alpha_{t-1}(s-2) if l'_s is no blank
///                  and differs from l'_{s-2}]) + y_t(l'_s),   alpha_0 on s = 0, 1 only,
///     loss_n = -log(e^alpha_{T-1}(S-1) + e^alpha_{T-1}(S-2)),
///
/// and beta the same recursion run backwards. The gradient with respect to the logits is
/// softmax_t(c) - exp(log Σ_{s: l'_s = c} e^(alpha_t(s) + beta_t(s)) + loss_n - y_t(c)) on the first T_n
/// frames, 0 after them.
public enum CTCReduction: String, Sendable, CaseIterable {
    /// Σ over the batch of each utterance's loss (Wav2Vec2Config's default `ctc_loss_reduction`).
    case sum
    /// Mean over the batch of each utterance's loss divided by its target length (PyTorch's "mean").
    case mean
}

/// What `ctcLossForward` keeps for the backward pass, and the memory both passes work in. One value
/// passed to every step reuses its arrays: after `reserve` (or the first steps) a step allocates nothing.
public struct CTCSaved {
    /// (N, T, C) log-softmax of the logits.
    public var logProbs: [Float] = []
    /// (N): each utterance's loss (0 where `zeroInfinity` zeroed an infinite one).
    public var losses: [Double] = []
    /// (N): whether the utterance's loss was infinite (no alignment fits in its frames).
    public var infinite: [Bool] = []
    /// Every utterance's alpha (frames, S) one after another, utterance n's from `alphaStarts[n]`, which
    /// the backward pass needs beside beta.
    var alphas: [Double] = []
    var alphaStarts: [Int] = []
    /// The backward pass's beta of one utterance and occupancy of one frame.
    var beta: [Double] = []
    var occupancy: [Double] = []

    public init() {}

    /// Capacity for N utterances of at most T frames over C classes with targets of at most U labels.
    public mutating func reserve(N: Int, T: Int, C: Int, labels U: Int) {
        let S = 2 * U + 1
        logProbs.reserveCapacity(N * T * C); losses.reserveCapacity(N); infinite.reserveCapacity(N)
        alphas.reserveCapacity(N * T * S); alphaStarts.reserveCapacity(N); beta.reserveCapacity(T * S)
        occupancy.reserveCapacity(C)
    }
}

/// `array` = `count` copies of `value`, in its own memory when that is large enough.
@inline(__always) private func refill<T>(_ array: inout [T], _ value: T, count: Int) {
    array.removeAll(keepingCapacity: true)
    array.append(contentsOf: repeatElement(value, count: count))
}

/// Returns the reduced loss and what the backward pass needs. `logits` (N, T, C); `inputLengths` (N),
/// each in 1...T; `targets` the N targets one after another, `targetLengths` (N) their lengths; every
/// label in 0..<C and not `blank`. An utterance whose target cannot be aligned in its frames has an
/// infinite loss, or 0 (and no gradient) with `zeroInfinity`, as in PyTorch.
public func ctcLossForward(logits: UnsafePointer<Float>, N: Int, T: Int, C: Int, inputLengths: [Int], targets: [Int32],
                           targetLengths: [Int], blank: Int, reduction: CTCReduction, zeroInfinity: Bool) -> (Float, CTCSaved) {
    var saved = CTCSaved()
    let loss = ctcLossForward(logits: logits, N: N, T: T, C: C, inputLengths: inputLengths, targets: targets,
                              targetLengths: targetLengths, blank: blank, reduction: reduction, zeroInfinity: zeroInfinity,
                              saved: &saved)
    return (loss, saved)
}

/// `ctcLossForward` into `saved`, whose memory it reuses.
public func ctcLossForward(logits: UnsafePointer<Float>, N: Int, T: Int, C: Int, inputLengths: [Int], targets: [Int32],
                           targetLengths: [Int], blank: Int, reduction: CTCReduction, zeroInfinity: Bool,
                           saved: inout CTCSaved) -> Float {
    precondition(inputLengths.count == N && targetLengths.count == N, "ctc: \(N) utterances need \(N) input and target lengths")
    precondition(targets.count == targetLengths.reduce(0, +), "ctc: \(targets.count) target labels, the lengths add up to \(targetLengths.reduce(0, +))")
    precondition(blank >= 0 && blank < C, "ctc: blank \(blank) outside 0..<\(C)")
    refill(&saved.logProbs, 0, count: N * T * C)
    saved.logProbs.withUnsafeMutableBufferPointer { lp in
        for row in 0..<(N * T) {
            let x = logits + row * C
            var m = -Float.infinity
            for c in 0..<C { m = max(m, x[c]) }
            var sum = 0.0
            for c in 0..<C { sum += Double(expf(x[c] - m)) }
            let logZ = Double(m) + log(sum)
            for c in 0..<C { lp[row * C + c] = Float(Double(x[c]) - logZ) }
        }
    }
    refill(&saved.losses, 0, count: N)
    refill(&saved.infinite, false, count: N)
    saved.alphaStarts.removeAll(keepingCapacity: true)
    var total = 0
    for n in 0..<N {
        saved.alphaStarts.append(total)
        total += inputLengths[n] * (2 * targetLengths[n] + 1)
    }
    refill(&saved.alphas, -.infinity, count: total)
    var offset = 0
    for n in 0..<N {
        let label = targets[offset..<(offset + targetLengths[n])]
        offset += targetLengths[n]
        precondition(inputLengths[n] >= 1 && inputLengths[n] <= T, "ctc: input length \(inputLengths[n]) outside 1...\(T)")
        precondition(label.allSatisfy { $0 >= 0 && Int($0) < C && Int($0) != blank }, "ctc: target \(n) has a label outside 0..<\(C) or the blank")
        let S = 2 * label.count + 1, start = saved.alphaStarts[n], last = start + (inputLengths[n] - 1) * S
        ctcAlpha(saved.logProbs, n: n, T: T, C: C, frames: inputLengths[n], label: label, blank: blank,
                 into: &saved.alphas, at: start)
        let logP = logAdd(saved.alphas[last + S - 1], S > 1 ? saved.alphas[last + S - 2] : -.infinity)
        saved.losses[n] = -logP
        if !logP.isFinite { saved.infinite[n] = true; if zeroInfinity { saved.losses[n] = 0 } }
    }
    var loss = 0.0
    switch reduction {
    case .sum: for n in 0..<N { loss += saved.losses[n] }
    case .mean:
        for n in 0..<N { loss += saved.losses[n] / Double(max(1, targetLengths[n])) }
        loss /= Double(N)
    }
    return Float(loss)
}

/// dlogits (N, T, C) += dloss d(loss)/dlogits from the saved log-probabilities; `saved` also lends the
/// pass its memory.
public func ctcLossBackward(dlogits: UnsafeMutablePointer<Float>, saved: inout CTCSaved, N: Int, T: Int, C: Int,
                            inputLengths: [Int], targets: [Int32], targetLengths: [Int], blank: Int,
                            reduction: CTCReduction, zeroInfinity: Bool, dloss: Float) {
    var offset = 0
    for n in 0..<N {
        let label = targets[offset..<(offset + targetLengths[n])]
        offset += targetLengths[n]
        // An infinite loss has an infinite gradient in PyTorch (NaN after the softmax term); zeroed with
        // zeroInfinity. Here it is skipped without zeroInfinity too, where PyTorch would poison the run.
        if saved.infinite[n] { continue }
        let weight = Double(dloss) * (reduction == .sum ? 1 : 1 / (Double(max(1, targetLengths[n])) * Double(N)))
        let frames = inputLengths[n], S = 2 * label.count + 1
        let start = saved.alphaStarts[n]
        refill(&saved.beta, -.infinity, count: frames * S)
        ctcBeta(saved.logProbs, n: n, T: T, C: C, frames: frames, label: label, blank: blank, into: &saved.beta)
        let loss = saved.losses[n]
        for t in 0..<frames {
            refill(&saved.occupancy, -.infinity, count: C)
            for s in 0..<S {
                let c = extended(s, label, blank)
                saved.occupancy[c] = logAdd(saved.occupancy[c], saved.alphas[start + t * S + s] + saved.beta[t * S + s])
            }
            let d = dlogits + (n * T + t) * C
            for c in 0..<C {
                let y = Double(saved.logProbs[(n * T + t) * C + c])
                let o = saved.occupancy[c]
                let g = exp(y) - (o.isFinite ? exp(o + loss - y) : 0)
                d[c] += Float(weight * g)
            }
        }
    }
}

/// log(e^a + e^b), exact at -infinity.
@inline(__always) func logAdd(_ a: Double, _ b: Double) -> Double {
    if a == -.infinity { return b }
    if b == -.infinity { return a }
    return max(a, b) + log1p(exp(-abs(a - b)))
}

/// The label of extended position s: the blank at even s, label[s/2] at odd s.
@inline(__always) private func extended(_ s: Int, _ label: ArraySlice<Int32>, _ blank: Int) -> Int {
    s % 2 == 0 ? blank : Int(label[label.startIndex + s / 2])
}

/// alpha (frames, S) in log space for utterance n (see the type's comment) into alpha[at...], which holds
/// -infinity there.
func ctcAlpha(_ lp: [Float], n: Int, T: Int, C: Int, frames: Int, label: ArraySlice<Int32>, blank: Int,
              into alpha: inout [Double], at start: Int) {
    let S = 2 * label.count + 1
    @inline(__always) func y(_ t: Int, _ c: Int) -> Double { Double(lp[(n * T + t) * C + c]) }
    alpha[start] = y(0, blank)
    if S > 1 { alpha[start + 1] = y(0, extended(1, label, blank)) }
    for t in 1..<max(1, frames) {
        let row = start + t * S, previous = row - S
        for s in 0..<S {
            let c = extended(s, label, blank)
            var a = alpha[previous + s]
            if s >= 1 { a = logAdd(a, alpha[previous + s - 1]) }
            if s >= 2 && c != blank && c != extended(s - 2, label, blank) { a = logAdd(a, alpha[previous + s - 2]) }
            alpha[row + s] = a == -.infinity ? -.infinity : a + y(t, c)
        }
    }
}

/// beta (frames, S) in log space for utterance n: the same recursion from the last frame backwards, into
/// beta, which holds -infinity.
func ctcBeta(_ lp: [Float], n: Int, T: Int, C: Int, frames: Int, label: ArraySlice<Int32>, blank: Int,
             into beta: inout [Double]) {
    let S = 2 * label.count + 1
    @inline(__always) func y(_ t: Int, _ c: Int) -> Double { Double(lp[(n * T + t) * C + c]) }
    let last = frames - 1
    beta[last * S + S - 1] = y(last, extended(S - 1, label, blank))
    if S > 1 { beta[last * S + S - 2] = y(last, extended(S - 2, label, blank)) }
    for t in stride(from: last - 1, through: 0, by: -1) {
        for s in 0..<S {
            let c = extended(s, label, blank)
            var b = beta[(t + 1) * S + s]
            if s + 1 < S { b = logAdd(b, beta[(t + 1) * S + s + 1]) }
            if s + 2 < S && c != blank && c != extended(s + 2, label, blank) { b = logAdd(b, beta[(t + 1) * S + s + 2]) }
            beta[t * S + s] = b == -.infinity ? -.infinity : b + y(t, c)
        }
    }
}
