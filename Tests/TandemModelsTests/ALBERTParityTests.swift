import Foundation
import XCTest
import TandemAutograd
import TandemCheckpoint
import TandemNN
@testable import TandemModels
import TandemTestSupport
import TandemTools
import TandemTraining

/// `tandem debug forward|grads` against transformers' AlbertForPreTraining on the fixtures written by
/// scripts/fixtures/make_albert_fixtures.py (a random model with E != H, shapes that are not powers of
/// two, one layer shared by 3 depths, and a padded batch).
final class ALBERTParityTests: ScratchDirectoryTestCase {
    private func out(_ name: String) -> String { scratch.appendingPathComponent(name).path }
    private let model = ModelFixtures.path("albert/random")
    private let batch = ModelFixtures.path("albert/batch.safetensors")

    func testDebugForwardMatchesTransformers() throws {
        let path = out("forward.safetensors")
        try DebugCommands.forward(model: model, batch: batch, out: path, log: { _ in })
        let ours = try SafeTensorsFile(path: path)
        let reference = try SafeTensorsFile(path: ModelFixtures.path("albert/forward.safetensors"))
        XCTAssertEqual(Set(ours.names), Set(reference.names))
        for name in ["last_hidden_state", "prediction_logits", "sop_logits"] {
            XCTAssertEqual(try ours.info(name).shape, try reference.info(name).shape, name)
            let difference = zip(try ours.floats(name), try reference.floats(name)).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
            print("ALBERT forward parity: \(name) max abs difference \(difference)")
            XCTAssertLessThanOrEqual(difference, 1e-4, name)
        }
        let loss = try ours.floats("loss")[0], expected = try reference.floats("loss")[0]
        print("ALBERT forward parity: loss \(loss) vs \(expected), relative difference \(abs(loss - expected) / abs(expected))")
        XCTAssertLessThanOrEqual(abs(loss - expected) / abs(expected), 1e-5, "loss \(loss) vs \(expected)")
    }

    /// Every gradient, the shared layer's (the sum over its 3 uses in PyTorch's autograd) and the word
    /// embedding's (lookup plus tied decoder) included.
    func testDebugGradsMatchTransformers() throws {
        let path = out("grads.safetensors")
        try DebugCommands.grads(model: model, batch: batch, out: path, log: { _ in })
        let (lossError, worst) = try assertGradientsMatch(try SafeTensorsFile(path: path),
                                                          try SafeTensorsFile(path: ModelFixtures.path("albert/grads.safetensors")),
                                                          zeroGradientSuffix: "attention.key.bias")
        print("ALBERT gradient parity: loss relative difference \(lossError), worst relative error \(worst.error) on \(worst.name)")
    }

    /// The shared layer's gradient is the sum over its uses: the same model unrolled into L layers, each
    /// with its own copy of the shared weights, gives the same loss, and its L per-layer gradients sum
    /// to the shared one (independently of the PyTorch fixture, which checks the same through autograd).
    func testSharedLayerGradientIsTheSumOverItsUses() throws {
        let albert = try PretrainedALBERT.load(directory: model, log: { _ in })
        let data = try AlbertBatch(path: batch, config: albert.config)
        let L = albert.config.numHiddenLayers
        let shared = albert.model.parameters.filter { $0.name.contains(".albert_layer_groups.") }
        XCTAssertEqual(shared.count, 16)

        // L unshared copies of the layer in an arena of their own, so each use has its own gradient.
        let arena = ParameterArena()
        let copy = ALBERT(albert.config, arena: arena, rng: Philox(seed: 1))
        let copies = (0..<L).map { i in UnrolledLayer(albert.model.sharedLayer, config: albert.config, arena: arena, index: i) }
        arena.seal()
        for (p, q) in zip(albert.model.parameters, copy.parameters) { q.values.baseAddress!.update(from: p.values.baseAddress!, count: p.count) }
        for c in copies { c.copyValues(from: albert.model.sharedLayer) }

        let tape = Tape()
        tape.training = false
        let g = albert.model.record(on: tape, batch: data.batch, sequence: data.sequence)
        data.fill(g)
        albert.arena.zeroGrads()
        tape.forward()
        tape.backward(from: g.loss)

        let unrolledTape = Tape()
        unrolledTape.training = false
        let u = UnrolledLayer.record(copy, layers: copies, on: unrolledTape, batch: data.batch, sequence: data.sequence)
        data.fill(u)
        arena.zeroGrads()
        unrolledTape.forward()
        unrolledTape.backward(from: u.loss)
        XCTAssertEqual(u.loss.data[0], g.loss.data[0], accuracy: 1e-6 * abs(g.loss.data[0]))

        var worst = 0.0
        for (k, p) in shared.enumerated() {
            var sum = [Float](repeating: 0, count: p.count)
            for c in copies { for (i, v) in c.parameters[k].grads.enumerated() { sum[i] += v } }
            // The key bias's exact gradient is zero (softmax ignores it): both hold rounding noise only.
            if p.name.hasSuffix("attention.key.bias") {
                XCTAssertLessThanOrEqual(l2Norm(Array(p.grads)), 1e-6, p.name)
                XCTAssertLessThanOrEqual(l2Norm(sum), 1e-6, p.name)
                continue
            }
            let error = relativeError(Array(p.grads), sum)
            worst = max(worst, error)
            XCTAssertLessThanOrEqual(error, 1e-5, p.name)
        }
        print("ALBERT shared layer: gradient vs sum over \(L) unshared copies, worst relative error \(worst) (key bias excepted)")
    }

    /// `from_pretrained` reads HF's config.json only if `embedding_size` is there: without it the error
    /// names the file and the field.
    func testConfigWithoutEmbeddingSizeIsAnError() throws {
        let directory = scratch.appendingPathComponent("no-embedding-size")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var fields = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: model + "/config.json"))) as! [String: Any]
        fields["embedding_size"] = nil
        try JSONSerialization.data(withJSONObject: fields).write(to: directory.appendingPathComponent("config.json"))
        XCTAssertThrowsError(try PretrainedALBERT.readConfig(directory: directory.path)) { error in
            XCTAssertTrue("\(error)".contains("config.json: embedding_size is missing"), "\(error)")
        }
        for (key, value) in [("num_hidden_groups", 2), ("inner_group_num", 2)] {
            var other = fields
            other["embedding_size"] = 20
            other[key] = value
            try JSONSerialization.data(withJSONObject: other).write(to: directory.appendingPathComponent("config.json"))
            XCTAssertThrowsError(try PretrainedALBERT.readConfig(directory: directory.path)) { error in
                XCTAssertTrue("\(error)".contains("\(key) 2 is not supported"), "\(error)")
            }
        }
    }

    /// The counts `tandem inspect` prints, against PyTorch's (AlbertForPreTraining and BertForPreTraining
    /// built by transformers) for albert-base's shape with BERT's vocabulary and its own.
    func testParameterCountsMatchPyTorch() throws {
        let c = AlbertConfig(vocabSize: 30522, embeddingSize: 128, hiddenSize: 768, numHiddenLayers: 12,
                             numAttentionHeads: 12, intermediateSize: 3072)
        XCTAssertEqual(c.parameterCount, 11_881_148)
        XCTAssertEqual(c.bertParameterCount, 110_106_428)
        // albert-base itself (vocab 30000): 11,813,810 against 109,705,010, the README's table.
        let base = try ALBERTFamily.config(preset: "albert-base", overrides: [:], vocabSize: nil, file: "test")
        XCTAssertEqual(base.parameterCount, 11_813_810)
        XCTAssertEqual(base.bertParameterCount, 109_705_010)
        let albert = try PretrainedALBERT.load(directory: model, log: { _ in })
        XCTAssertEqual(albert.arena.parameterCount, albert.config.parameterCount)
    }
}

/// The ALBERT layer recorded with its own copy of the shared parameters, for the gradient-sum test.
private final class UnrolledLayer {
    let block: TransformerBlock
    let parameters: [Parameter]

    init(_ shared: TransformerBlock, config: AlbertConfig, arena: ParameterArena, index: Int) {
        let scope = ParameterScope(arena: arena, rng: Philox(seed: 2))("copy")("\(index)")
        let H = config.hiddenSize, first = arena.parameters.count
        let outputNorm = LayerNorm(scope("full_layer_layer_norm"), dimensions: H, eps: config.layerNormEps)
        let heads = MultiHeadAttention(
            query: Linear(scope("query"), inputs: H, outputs: H, initializer: .zeros),
            key: Linear(scope("key"), inputs: H, outputs: H, initializer: .zeros),
            value: Linear(scope("value"), inputs: H, outputs: H, initializer: .zeros),
            output: Linear(scope("dense"), inputs: H, outputs: H, initializer: .zeros), heads: config.numAttentionHeads)
        let attentionNorm = LayerNorm(scope("LayerNorm"), dimensions: H, eps: config.layerNormEps)
        let up = Linear(scope("ffn"), inputs: H, outputs: config.intermediateSize, initializer: .zeros)
        let down = Linear(scope("ffn_output"), inputs: config.intermediateSize, outputs: H, initializer: .zeros)
        block = TransformerBlock(attention: heads, attentionNorm: attentionNorm,
                                 feedForward: FeedForward(up: up, down: down, approximation: config.geluApproximation),
                                 feedForwardNorm: outputNorm, norm: .post, dropout: 0)
        parameters = Array(arena.parameters[first...])
    }

    func copyValues(from shared: TransformerBlock) {
        let source = [shared.feedForwardNorm.weight, shared.feedForwardNorm.bias,
                      shared.attention.query.weight, shared.attention.query.bias!, shared.attention.key.weight, shared.attention.key.bias!,
                      shared.attention.value.weight, shared.attention.value.bias!, shared.attention.output.weight, shared.attention.output.bias!,
                      shared.attentionNorm.weight, shared.attentionNorm.bias, shared.feedForward.up.weight, shared.feedForward.up.bias!,
                      shared.feedForward.down.weight, shared.feedForward.down.bias!]
        for (p, q) in zip(source, parameters) { q.values.baseAddress!.update(from: p.values.baseAddress!, count: p.count) }
    }

    /// ALBERT's graph with layer i of the stack being `layers[i]` (dropout off, every position scored).
    static func record(_ model: ALBERT, layers: [UnrolledLayer], on tape: Tape, batch B: Int, sequence T: Int) -> ALBERT.Graph {
        model.record(on: tape, batch: B, sequence: T, maskedPositions: nil, layers: layers.map(\.block))
    }
}
