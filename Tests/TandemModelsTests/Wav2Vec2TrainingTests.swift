import Foundation
import XCTest
import TandemAutograd
import TandemModels
import TandemTestSupport
import TandemTraining

/// wav2vec 2.0's training-only behaviour: feature masking (`mask_feature_prob`) and LayerDrop (`layerdrop`)
/// in the recorded graph, and that evaluation is unchanged by either.
final class Wav2Vec2TrainingTests: XCTestCase {
    static let lengths = [400, 331, 257]

    /// A small CTC model: two convolutions, hidden 16 in 2 layers, no dropout (so that training and
    /// evaluation differ only by the features under test).
    private func config(layerdrop: Float, maskFeatureProb: Float) -> Wav2Vec2Config {
        var c = Wav2Vec2Config()
        c.vocabSize = 8
        c.hiddenSize = 16
        c.numHiddenLayers = 2
        c.numAttentionHeads = 2
        c.intermediateSize = 32
        c.convDim = [8, 8]
        c.convStride = [5, 2]
        c.convKernel = [10, 3]
        c.numConvPosEmbeddings = 4
        c.numConvPosEmbeddingGroups = 2
        c.hiddenDropout = 0
        c.activationDropout = 0
        c.finalDropout = 0
        c.maskTimeProb = 0
        c.layerdrop = layerdrop
        c.maskFeatureProb = maskFeatureProb
        c.maskFeatureLength = 4
        return c
    }

    private struct Run {
        let model: Wav2Vec2, arena: ParameterArena, tape: Tape, graph: Wav2Vec2.Graph
        func parameter(_ name: String) -> Parameter { model.parameters.first { $0.name == name }! }
        func gradient(_ name: String) -> [Float] { Array(parameter(name).grads) }
        /// Forward and backward at `step`, training or not.
        func run(step: UInt64 = 0, training: Bool) {
            tape.training = training
            tape.step = step
            arena.zeroGrads()
            tape.forward()
            tape.backward(from: graph.loss)
        }
    }

    /// Records `config` on a batch of three padded utterances with labels; parameters copied from `from`
    /// by name when given.
    private func record(_ config: Wav2Vec2Config, from source: Run? = nil) -> Run {
        let arena = ParameterArena()
        let model = Wav2Vec2(config, arena: arena, rng: Philox(seed: 1))
        arena.seal()
        if let source {
            for p in model.parameters {
                if let q = source.model.parameters.first(where: { $0.name == p.name }) { p.value.update(from: q.value, count: p.count) }
            }
        }
        let tape = Tape(rng: Philox(seed: 9), minimumBlockBytes: 1 << 16)
        let S = Self.lengths.max()!
        let graph = model.record(on: tape, batch: Self.lengths.count, samples: S, labelColumns: 3)
        let audio = GradCheck.random(count: Self.lengths.count * S, seed: 2)
        for (b, n) in Self.lengths.enumerated() {
            for s in 0..<S { graph.inputValues.data[b * S + s] = s < n ? audio[b * S + s] : 0 }
        }
        graph.setLengths(Self.lengths, config: config)
        for (i, label) in [1, 2, 3, 4, 5, -100, 6, -100, -100].enumerated() { graph.labels![i] = Int32(label) }
        return Run(model: model, arena: arena, tape: tape, graph: graph)
    }

    private func layerNames(_ run: Run, _ layer: Int) -> [String] {
        // The key projection's bias never gets a gradient (softmax is shift-invariant), skipped or not.
        run.model.parameters.map(\.name).filter { $0.hasPrefix("wav2vec2.encoder.layers.\(layer).") && !$0.hasSuffix("k_proj.bias") }
    }

    /// Evaluation is the model without either feature: the same loss, logits and gradients, bit for bit.
    func testEvaluationIsUnchangedByLayerDropAndFeatureMasking() {
        let plain = record(config(layerdrop: 0, maskFeatureProb: 0))
        let both = record(config(layerdrop: 0.9, maskFeatureProb: 0.5), from: plain)
        XCTAssertNil(plain.graph.featureKeep)
        // Mask half the channels: evaluation must not read them.
        for i in 0..<both.graph.featureKeep!.count { both.graph.featureKeep!.data[i] = Float(i % 2) }
        for step in 0..<5 as Range<UInt64> {
            plain.run(step: step, training: false)
            both.run(step: step, training: false)
            XCTAssertEqual(both.graph.loss.data[0], plain.graph.loss.data[0])
            XCTAssertEqual(Array(both.graph.logits!.values), Array(plain.graph.logits!.values))
            for p in plain.model.parameters { XCTAssertEqual(both.gradient(p.name), plain.gradient(p.name), p.name) }
        }
    }

    /// In training each layer is skipped exactly when Philox(tape seed) at (layer-drop stream, step, layer)
    /// falls below layerdrop: its parameters then get no gradient, and the others do.
    func testLayerDropSkipsLayersByStepAndLayer() {
        let p: Float = 0.5
        let run = record(config(layerdrop: p, maskFeatureProb: 0))
        let reference = record(config(layerdrop: 0, maskFeatureProb: 0), from: run)
        var seen = Set<[Bool]>()
        for step in 0..<24 as Range<UInt64> {
            run.run(step: step, training: true)
            let skips = (0..<2).map { Philox(seed: 9).uniform(stream: Wav2Vec2.layerDropStream, step: step, index: UInt64($0)) < p }
            seen.insert(skips)
            for layer in 0..<2 {
                for name in layerNames(run, layer) {
                    let zero = run.gradient(name).allSatisfy { $0 == 0 }
                    XCTAssertEqual(zero, skips[layer], "step \(step) \(name): skipped \(skips[layer])")
                }
            }
            XCTAssertTrue(run.gradient("lm_head.weight").contains { $0 != 0 })
            if skips == [false, false] {
                // Nothing skipped: the model without LayerDrop, bit for bit.
                reference.run(step: step, training: true)
                XCTAssertEqual(run.graph.loss.data[0], reference.graph.loss.data[0])
                for q in reference.model.parameters { XCTAssertEqual(run.gradient(q.name), reference.gradient(q.name), q.name) }
            }
            // A replay of the same step makes the same decisions.
            let loss = run.graph.loss.data[0]
            run.run(step: step, training: true)
            XCTAssertEqual(run.graph.loss.data[0], loss)
        }
        XCTAssertEqual(seen.count, 4, "24 steps at p = 0.5 see every combination of two layers' decisions")
    }

    /// Training with feature masking zeroes the masked hidden channels for every frame of their utterance:
    /// a channel masked in every utterance gets no gradient in the feature projection's row for it.
    func testFeatureMaskingZeroesChannelsInTraining() {
        let run = record(config(layerdrop: 0, maskFeatureProb: 0.5))
        let keep = run.graph.featureKeep!
        let C = 16, B = Self.lengths.count
        XCTAssertEqual(keep.shape, Shape(B, C))
        XCTAssertEqual(Array(keep.values), [Float](repeating: 1, count: B * C), "recorded with every channel kept")
        run.run(training: false)
        let evaluationLoss = run.graph.loss.data[0]
        run.run(training: true)
        XCTAssertEqual(run.graph.loss.data[0], evaluationLoss, "all channels kept: training == evaluation")
        XCTAssertTrue(run.gradient("wav2vec2.feature_projection.projection.bias").allSatisfy { $0 != 0 })
        let masked = [3, 4, 5, 11]
        for b in 0..<B { for c in masked { keep.data[b * C + c] = 0 } }
        run.run(training: true)
        XCTAssertNotEqual(run.graph.loss.data[0], evaluationLoss)
        let bias = run.gradient("wav2vec2.feature_projection.projection.bias")
        let weight = run.gradient("wav2vec2.feature_projection.projection.weight")
        let F = 8
        for c in 0..<C {
            let row = Array(weight[(c * F)..<((c + 1) * F)])
            if masked.contains(c) {
                XCTAssertEqual(bias[c], 0, "channel \(c)")
                XCTAssertEqual(row, [Float](repeating: 0, count: F), "channel \(c)")
            } else {
                XCTAssertNotEqual(bias[c], 0, "channel \(c)")
            }
        }
        // The quantiser's input is untouched by feature masking: extract_features (before the projection)
        // are the same with and without the mask.
        let masking = Array(run.graph.extractFeatures.values)
        for i in 0..<keep.count { keep.data[i] = 1 }
        run.run(training: true)
        XCTAssertEqual(Array(run.graph.extractFeatures.values), masking)
        run.run(training: false)
        XCTAssertEqual(run.graph.loss.data[0], evaluationLoss)
    }

    /// The config keys load, validate and round-trip; the family accepts feature masking now.
    func testFeatureMaskingConfig() throws {
        func decode(_ json: String) throws -> Wav2Vec2Config { try JSONDecoder().decode(Wav2Vec2Config.self, from: Data(json.utf8)) }
        func error(_ json: String) -> String {
            do { _ = try decode(json); return "" } catch { return "\(error)" }
        }
        let c = try decode(#"{"hidden_size": 36, "num_attention_heads": 3, "num_conv_pos_embedding_groups": 4, "mask_feature_prob": 0.2, "mask_feature_length": 12, "mask_feature_min_masks": 1, "layerdrop": 0.3}"#)
        XCTAssertEqual(c.maskFeatureProb, 0.2)
        XCTAssertEqual(c.maskFeatureLength, 12)
        XCTAssertEqual(c.maskFeatureMinMasks, 1)
        XCTAssertEqual(c.layerdrop, 0.3)
        XCTAssertEqual(try JSONDecoder().decode(Wav2Vec2Config.self, from: JSONEncoder().encode(c)), c)
        XCTAssertTrue(error(#"{"hidden_size": 36, "num_attention_heads": 3, "num_conv_pos_embedding_groups": 4, "mask_feature_prob": 0.2, "mask_feature_length": 40}"#)
            .contains("mask_feature_length 40 is longer than hidden_size 36"))
        // Unused, a long span is not an error (transformers only refuses it when masking).
        XCTAssertEqual(try decode(#"{"hidden_size": 36, "num_attention_heads": 3, "num_conv_pos_embedding_groups": 4, "mask_feature_length": 40}"#).maskFeatureLength, 40)
        XCTAssertTrue(error(#"{"mask_feature_prob": 1.0}"#).contains("mask_feature_prob"))
        XCTAssertTrue(error(#"{"mask_feature_prob": -0.1}"#).contains("mask_feature_prob"))
        XCTAssertTrue(error(#"{"layerdrop": 1.0}"#).contains("layerdrop"))
        XCTAssertTrue(error(#"{"mask_feature_length": 0}"#).contains("mask_feature_length"))
        XCTAssertTrue(error(#"{"mask_feature_min_masks": -1}"#).contains("mask_feature_min_masks"))

        let family = try Wav2Vec2Family.config(preset: "wav2vec2-tiny", initFrom: nil,
                                               overrides: ["mask_feature_prob": .float(0.2), "mask_feature_length": .int(8),
                                                           "mask_feature_min_masks": .int(1), "layerdrop": .float(0.2)],
                                               objective: "ctc", vocabSize: 32, file: "w2v.yaml")
        XCTAssertEqual(family.maskFeatureProb, 0.2)
        XCTAssertEqual(family.maskFeatureLength, 8)
        XCTAssertEqual(family.maskFeatureMinMasks, 1)
        XCTAssertEqual(family.layerdrop, 0.2)
        // The feature encoder's lists are model fields too (model.conv_dim: [...] in YAML or --set).
        let narrow = try Wav2Vec2Family.config(preset: "wav2vec2-tiny", initFrom: nil,
                                               overrides: ["conv_dim": .list(Array(repeating: .int(12), count: 7)),
                                                           "conv_kernel": .list([10, 3, 3, 3, 3, 2, 2].map { .int($0) })],
                                               objective: "ctc", vocabSize: 32, file: "w2v.yaml")
        XCTAssertEqual(narrow.convDim, Array(repeating: 12, count: 7))
        XCTAssertThrowsError(try Wav2Vec2Family.config(preset: "wav2vec2-tiny", initFrom: nil,
                                                       overrides: ["conv_dim": .list([.int(12), .int(12)])],
                                                       objective: "ctc", vocabSize: 32, file: "w2v.yaml")) { error in
            XCTAssertTrue("\(error)".contains("conv_dim (2)"), "\(error)")
        }
        XCTAssertThrowsError(try Wav2Vec2Family.config(preset: "wav2vec2-tiny", initFrom: nil,
                                                       overrides: ["conv_dim": .list([.string("wide")])],
                                                       objective: "ctc", vocabSize: 32, file: "w2v.yaml")) { error in
            XCTAssertTrue("\(error)".hasPrefix("w2v.yaml: invalid model fields: conv_dim: "), "\(error)")
        }
        XCTAssertThrowsError(try Wav2Vec2Family.config(preset: "wav2vec2-tiny", initFrom: nil,
                                                       overrides: ["mask_feature_prob": .float(0.2), "mask_feature_length": .int(33)],
                                                       objective: "ctc", vocabSize: 32, file: "w2v.yaml")) { error in
            XCTAssertTrue("\(error)".contains("mask_feature_length"), "\(error)")
        }
    }
}
