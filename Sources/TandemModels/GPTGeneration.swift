import Foundation
import TandemKernels
import TandemNN

/// Autoregressive generation with a GPT-2 and a key/value cache (as transformers' `generate` with
/// `use_cache`): the prompt runs once through every layer (prefill), storing each layer's keys and values;
/// each new token then runs as one position, attending over the cache. Inference only: the kernels are
/// called directly, with no tape and no gradients, on buffers sized once for `capacity` positions.
public final class GPTGenerator {
    public let model: GPT
    /// Positions the cache holds (at most n_positions).
    public let capacity: Int
    /// Positions filled so far.
    public private(set) var length = 0
    private let keys: [UnsafeMutablePointer<Float>], values: [UnsafeMutablePointer<Float>]
    private let x, normed, qkv, attended, projected, inner, mean, rstd, scores, logitsBuffer: UnsafeMutablePointer<Float>
    private let ids: UnsafeMutablePointer<Int32>

    public init(model: GPT, capacity: Int) {
        let c = model.config
        precondition(capacity >= 1 && capacity <= c.nPositions, "capacity \(capacity) outside 1...\(c.nPositions)")
        self.model = model
        self.capacity = capacity
        let C = c.nEmbd, T = capacity
        keys = (0..<c.nLayer).map { _ in AlignedMemory.allocate(Float.self, count: T * C) }
        values = (0..<c.nLayer).map { _ in AlignedMemory.allocate(Float.self, count: T * C) }
        x = AlignedMemory.allocate(Float.self, count: T * C)
        normed = AlignedMemory.allocate(Float.self, count: T * C)
        qkv = AlignedMemory.allocate(Float.self, count: T * 3 * C)
        attended = AlignedMemory.allocate(Float.self, count: T * C)
        projected = AlignedMemory.allocate(Float.self, count: T * C)
        inner = AlignedMemory.allocate(Float.self, count: T * c.innerSize)
        mean = AlignedMemory.allocate(Float.self, count: T)
        rstd = AlignedMemory.allocate(Float.self, count: T)
        scores = AlignedMemory.allocate(Float.self, count: T * T)
        logitsBuffer = AlignedMemory.allocate(Float.self, count: c.vocabSize)
        ids = AlignedMemory.allocate(Int32.self, count: T)
    }

    deinit {
        for p in keys + values + [x, normed, qkv, attended, projected, inner, mean, rstd, scores, logitsBuffer] {
            AlignedMemory.deallocate(p)
        }
        AlignedMemory.deallocate(ids)
    }

    /// `linearForward`, or its matrix-vector form for a single position (a generation step).
    private func project(_ out: UnsafeMutablePointer<Float>, _ inp: UnsafePointer<Float>, _ layer: Conv1D, rows n: Int,
                         inputs: Int, outputs: Int) {
        if n == 1 {
            linearForwardRow(out: out, inp: inp, weight: layer.weight.value, bias: layer.bias.value, C: inputs, OC: outputs,
                             layout: .inputsByOutputs)
        } else {
            linearForward(out: out, inp: inp, weight: layer.weight.value, bias: layer.bias.value, N: n, C: inputs, OC: outputs,
                          layout: .inputsByOutputs)
        }
    }

    /// Forgets the cache: the next `append` starts a new sequence.
    public func reset() { length = 0 }

    /// Runs `tokens` as the next positions of the sequence and returns the logits (V) that predict the
    /// token after the last of them (valid until the next call).
    public func append(_ tokens: [Int32]) -> UnsafeBufferPointer<Float> {
        let c = model.config, C = c.nEmbd, n = tokens.count, p0 = length
        precondition(n >= 1 && p0 + n <= capacity, "\(p0) + \(n) positions exceed the cache of \(capacity)")
        for (i, t) in tokens.enumerated() {
            precondition(t >= 0 && Int(t) < c.vocabSize, "token \(t) outside the vocabulary of \(c.vocabSize)")
            ids[i] = t
        }
        let wte = model.tokenEmbedding.weight.value, wpe = model.positionEmbedding.weight.value
        for i in 0..<n {
            let row = x + i * C, token = wte + Int(ids[i]) * C, position = wpe + (p0 + i) * C
            for j in 0..<C { row[j] = token[j] + position[j] }
        }
        for (l, block) in model.blocks.enumerated() {
            layerNormForward(out: normed, mean: mean, rstd: rstd, inp: x, weight: block.ln1.weight.value,
                             bias: block.ln1.bias.value, N: n, C: C, eps: c.layerNormEpsilon)
            project(qkv, normed, block.attention, rows: n, inputs: C, outputs: 3 * C)
            for i in 0..<n {
                (keys[l] + (p0 + i) * C).update(from: qkv + i * 3 * C + C, count: C)
                (values[l] + (p0 + i) * C).update(from: qkv + i * 3 * C + 2 * C, count: C)
            }
            cachedAttentionForward(out: attended, q: qkv, ldq: 3 * C, keys: keys[l], values: values[l], ldkv: C,
                                   past: p0, count: n, NH: c.nHead, HS: C / c.nHead, scores: scores)
            project(projected, attended, block.attentionProjection, rows: n, inputs: C, outputs: C)
            residualForward(out: x, a: x, b: projected, count: n * C)
            layerNormForward(out: normed, mean: mean, rstd: rstd, inp: x, weight: block.ln2.weight.value,
                             bias: block.ln2.bias.value, N: n, C: C, eps: c.layerNormEpsilon)
            project(inner, normed, block.up, rows: n, inputs: C, outputs: c.innerSize)
            geluForward(out: inner, inp: inner, count: n * c.innerSize, approximation: block.gelu)
            project(projected, inner, block.down, rows: n, inputs: c.innerSize, outputs: C)
            residualForward(out: x, a: x, b: projected, count: n * C)
        }
        // Only the last position's logits are needed.
        let last = x + (n - 1) * C
        layerNormForward(out: normed, mean: mean, rstd: rstd, inp: last, weight: model.finalNorm.weight.value,
                         bias: model.finalNorm.bias.value, N: 1, C: C, eps: c.layerNormEpsilon)
        linearForwardRow(out: logitsBuffer, inp: normed, weight: wte, bias: nil, C: C, OC: c.vocabSize)
        length = p0 + n
        return UnsafeBufferPointer(start: logitsBuffer, count: c.vocabSize)
    }
}

/// How the next token is drawn from the logits, as transformers' `generate`: greedy when `temperature` is
/// 0, else softmax(logits / temperature) restricted to the `topK` most likely tokens (0: all) and then to
/// the smallest set whose probability reaches `topP` (1: all), sampled with a counter-based generator so
/// that a seed gives the same text on any machine.
public struct SamplingOptions: Sendable, Equatable {
    public var temperature: Float
    public var topK: Int
    public var topP: Float
    public var seed: UInt64

    public init(temperature: Float = 1, topK: Int = 0, topP: Float = 1, seed: UInt64 = 0) {
        self.temperature = temperature; self.topK = topK; self.topP = topP; self.seed = seed
    }

    /// The ids of the k largest logits, largest first (ties by id).
    static func best(_ k: Int, of logits: UnsafeBufferPointer<Float>) -> [Int] {
        func before(_ a: Int, _ b: Int) -> Bool { logits[a] > logits[b] || (logits[a] == logits[b] && a < b) }
        var kept = Array(0..<k)
        kept.sort(by: before)
        for i in k..<logits.count where before(i, kept[k - 1]) {
            // Insert i in order; the last one falls out.
            var j = k - 1
            while j > 0 && before(i, kept[j - 1]) { kept[j] = kept[j - 1]; j -= 1 }
            kept[j] = i
        }
        return kept
    }

    /// The token drawn from `logits` for generation step `step`.
    public func pick(_ logits: UnsafeBufferPointer<Float>, step: Int) -> Int32 {
        if temperature == 0 {
            var best = 0
            for i in 1..<logits.count where logits[i] > logits[best] { best = i }
            return Int32(best)
        }
        // Candidates by descending logit (ties by id), cut to top-k: with a top-k, only the k best are
        // kept and sorted (one pass over the vocabulary); the whole vocabulary is sorted only for top-p alone.
        var order: [Int]
        if topK > 0 && topK < logits.count {
            order = Self.best(topK, of: logits)
        } else if topP < 1 {
            order = Array(0..<logits.count)
            order.sort { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        } else {
            order = Array(0..<logits.count)
        }
        let top = Double(order.lazy.map { logits[$0] }.max()!)
        var weights = order.map { exp((Double(logits[$0]) - top) / Double(temperature)) }
        let total = weights.reduce(0, +)
        if topP < 1 {
            // Keep tokens while the mass before them is below top_p (the first always stays).
            var mass = 0.0, keep = 0
            while keep < weights.count && (keep == 0 || mass < Double(topP)) { mass += weights[keep] / total; keep += 1 }
            order.removeLast(order.count - keep)
            weights.removeLast(weights.count - keep)
        }
        let kept = weights.reduce(0, +)
        let u = Double(Philox(seed: seed).uniform(stream: 0x67656E, step: UInt64(step), index: 0)) * kept
        var acc = 0.0
        for (i, w) in weights.enumerated() {
            acc += w
            if u < acc { return Int32(order[i]) }
        }
        return Int32(order[weights.count - 1])
    }
}
