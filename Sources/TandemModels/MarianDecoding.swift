import TandemAutograd
import TandemKernels
import TandemNN

extension MarianMT: StepwiseTranslator {
    public var targetVocabularySize: Int { config.vocabSize }
    public var decoderStartID: Int32 { Int32(config.decoderStartTokenId) }
    public var endID: Int32 { Int32(config.eosTokenId) }
    /// Multi-head, multi-layer cross-attention has no single alignment to report.
    public var reportsAttention: Bool { false }
    public var maxPositions: Int? { config.maxPositionEmbeddings }

    public func decodingSteps(sources: [[Int32]], rowsPerSource: Int, maxLength: Int) -> DecodingSteps {
        MarianDecoderSteps(self, sources: sources, rowsPerSource: rowsPerSource, maxLength: maxLength)
    }
}

/// The Transformer's decoder step with a key/value cache: the encoder and every layer's cross-attention
/// keys and values run once per call over the sources; each step then embeds one token per row at
/// position t, appends its self-attention keys and values to the layer's cache (N, L, C) at row t, and
/// attends over the cache rows 0...t (a key mask that grows by one column a step, so one recorded graph
/// serves every step). The results equal the teacher-forced graph's row t up to rounding.
/// `advance(parents:)` reorders the caches' rows. No attention probabilities are reported.
final class MarianDecoderSteps: DecodingSteps {
    let tape: Tape
    let ids: UnsafeMutablePointer<Int32>
    let logits: Tensor
    /// The step about to run (its position).
    private final class Position { var t = 0 }
    private let position = Position()
    private let positions: UnsafeMutablePointer<Int32>
    /// (N, L) 1 on the cache rows written so far.
    private let cacheMask: Tensor
    /// Per decoder layer, (N, L, C).
    private let keyCaches: [Tensor], valueCaches: [Tensor]
    private let rows: Int, length: Int

    init(_ model: MarianMT, sources: [[Int32]], rowsPerSource K: Int, maxLength: Int) {
        let config = model.config, B = sources.count, C = config.dModel
        precondition(B >= 1 && sources.allSatisfy { !$0.isEmpty }, "decoding: an empty source")
        precondition(sources.allSatisfy { $0.allSatisfy { (0..<Int32(config.vocabSize)).contains($0) } },
                     "decoding: a source id is outside the vocabulary 0..<\(config.vocabSize)")
        let S = sources.map(\.count).max()!, N = B * K
        precondition(S <= config.maxPositionEmbeddings, "decoding: a source of \(S) tokens exceeds max_position_embeddings")
        let L = max(1, min(maxLength, config.maxPositionEmbeddings))
        rows = N
        length = L

        // The encoder, and each layer's cross-attention keys and values, once.
        let encoderTape = Tape(minimumBlockBytes: 1 << 20)
        encoderTape.training = false
        encoderTape.recordsGradients = false
        let sourceIDs = encoderTape.intInput(count: B * S), sourceMask = encoderTape.input(Shape(B, S))
        for (b, source) in sources.enumerated() {
            (sourceIDs + b * S).update(from: source + Array(repeating: Int32(config.padTokenId), count: S - source.count), count: S)
            (sourceMask.data + b * S).update(from: Array(repeating: 1, count: source.count) + Array(repeating: 0, count: S - source.count),
                                             count: S)
        }
        let memory = model.encode(sourceIDs, mask: sourceMask, batch: B, length: S, on: encoderTape)
        let cross = model.decoderLayers.map { layer in
            (layer.crossAttention.key(memory, on: encoderTape), layer.crossAttention.value(memory, on: encoderTape))
        }
        encoderTape.forward()

        let tape = Tape(minimumBlockBytes: 1 << 20)
        tape.training = false
        tape.recordsGradients = false
        self.tape = tape
        /// x (B, ...) with each sentence's rows repeated K times, (N, ...), an input of the step tape.
        func repeated(_ x: Tensor) -> Tensor {
            let y = tape.input(Shape([N] + Array(x.shape.dims.dropFirst())))
            let count = x.count / B
            for r in 0..<N { (y.data + r * count).update(from: x.data + (r / K) * count, count: count) }
            return y
        }
        let memoryMask = repeated(sourceMask)
        let crossCaches = cross.map { (repeated($0.0), repeated($0.1)) }
        keyCaches = model.decoderLayers.map { _ in tape.input(Shape(N, L, C)) }
        valueCaches = model.decoderLayers.map { _ in tape.input(Shape(N, L, C)) }
        for cache in keyCaches + valueCaches { cache.data.update(repeating: 0, count: cache.count) }
        cacheMask = tape.input(Shape(N, L))
        cacheMask.data.update(repeating: 0, count: N * L)
        ids = tape.intInput(count: N)
        ids.update(repeating: Int32(config.decoderStartTokenId), count: N)
        positions = tape.intInput(count: N)
        positions.update(repeating: 0, count: N)

        var x = model.embed(ids, positions: positions, count: N, on: tape).reshaped(Shape(N, 1, C))
        let position = self.position
        for (l, layer) in model.decoderLayers.enumerated() {
            let attention = layer.selfAttention
            let q = attention.query(x, on: tape), k = attention.key(x, on: tape), v = attention.value(x, on: tape)
            let keyCache = keyCaches[l], valueCache = valueCaches[l]
            tape.record(inputs: [], forward: {
                for r in 0..<N {
                    (keyCache.data + (r * L + position.t) * C).update(from: k.data + r * C, count: C)
                    (valueCache.data + (r * L + position.t) * C).update(from: v.data + r * C, count: C)
                }
            }, backward: {})
            let a = attention.output(tape.attention(q: q, k: keyCache, v: valueCache, heads: attention.heads, keyMask: cacheMask,
                                                    causal: false), on: tape)
            let h = layer.selfAttentionNorm(tape.add(x, a), on: tape)
            let crossAttention = layer.crossAttention
            let c = crossAttention.output(tape.attention(q: crossAttention.query(h, on: tape), k: crossCaches[l].0,
                                                         v: crossCaches[l].1, heads: crossAttention.heads, keyMask: memoryMask,
                                                         causal: false), on: tape)
            let h2 = layer.crossAttentionNorm(tape.add(h, c), on: tape)
            x = layer.finalNorm(tape.add(h2, layer.feedForward(h2, on: tape)), on: tape)
        }
        logits = model.project(x.reshaped(Shape(N, C)), on: tape)
    }

    func run() {
        let t = position.t
        precondition(t < length, "decoding: step \(t + 1) is past the \(length) positions the cache holds")
        positions.update(repeating: Int32(t), count: rows)
        for r in 0..<rows { cacheMask.data[r * length + t] = 1 }
        tape.forward()
        position.t += 1
    }

    func attentionRow(_ i: Int) -> [Float] { [] }

    func advance(parents: [Int]) {
        let C = keyCaches.first.map { $0.shape[2] } ?? 0, used = position.t * C
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: rows * used)
        defer { scratch.deallocate() }
        for cache in keyCaches + valueCaches {
            for (i, p) in parents.enumerated() {
                (scratch + i * used).update(from: cache.data + p * length * C, count: used)
            }
            for i in parents.indices { (cache.data + i * length * C).update(from: scratch + i * used, count: used) }
        }
    }
}
