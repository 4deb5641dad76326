import Foundation
import XCTest
import TandemCheckpoint
import TandemTestSupport
import TandemTools
import TandemTraining

/// `tandem debug forward|grads` on the wav2vec 2.0 fixtures of scripts/fixtures/make_wav2vec2_fixtures.py (see
/// `Wav2Vec2ParityTests`): the directories save_pretrained wrote and their batch files in, the outputs, the
/// loss and every parameter's gradient out, against transformers' `-forward` and `-grads` files.
final class Wav2Vec2DebugTests: ScratchDirectoryTestCase {
    private func out(_ name: String) -> String { scratch.appendingPathComponent(name).path }
    /// The outputs compared within 1e-4 (the parity tests' tolerance); the scalars are checked apart.
    private static let outputs: [String: [String]] = [
        "ctc-group": ["last_hidden_state", "logits"],
        "ctc-stable": ["last_hidden_state", "logits"],
        "pretraining": ["last_hidden_state", "projected_states", "projected_quantized_states"],
    ]
    /// Parameters without a gradient in the fixtures (as in `Wav2Vec2ParityTests`): nothing is masked in a CTC
    /// batch, eval-mode codes are an argmax, and softmax ignores the key bias.
    private static let zeroGradients: [String: Set<String>] = [
        "ctc-group": ["wav2vec2.masked_spec_embed"],
        "ctc-stable": ["wav2vec2.masked_spec_embed"],
        "pretraining": ["quantizer.weight_proj.weight", "quantizer.weight_proj.bias"],
    ]

    func testCTCWithGroupNormDebugMatchesTransformers() throws { try check("ctc-group") }

    func testCTCWithStableLayerNormDebugMatchesTransformers() throws { try check("ctc-stable") }

    func testPreTrainingDebugMatchesTransformers() throws { try check("pretraining") }

    private func check(_ name: String) throws {
        let outputs = try XCTUnwrap(Self.outputs[name])
        let forwardReference = try SafeTensorsFile(path: Wav2Vec2Fixtures.path("\(name)-forward.safetensors"))
        let reference = try SafeTensorsFile(path: Wav2Vec2Fixtures.path("\(name)-grads.safetensors"))
        let model = Wav2Vec2Fixtures.path(name), batch = Wav2Vec2Fixtures.path("\(name)-batch.safetensors")

        try DebugCommands.forward(model: model, batch: batch, out: out("\(name)-forward.safetensors"), log: { _ in })
        let forward = try SafeTensorsFile(path: out("\(name)-forward.safetensors"))
        // Every output transformers wrote (pre-training: the perplexity and both loss terms too), and no other.
        XCTAssertEqual(Set(forward.names), Set(forwardReference.names), name)
        for output in outputs {
            XCTAssertEqual(try forward.info(output).shape, try forwardReference.info(output).shape, "\(name) \(output)")
            let difference = maxAbsDifference(try forward.floats(output), try forwardReference.floats(output))
            print("wav2vec2 \(name) debug forward: \(output) max abs difference \(difference)")
            XCTAssertLessThanOrEqual(difference, 1e-4, "\(name) \(output)")
        }
        if name == "pretraining" {
            let perplexity = try forwardReference.floats("codevector_perplexity")[0]
            XCTAssertEqual(try forward.info("codevector_perplexity").shape, [])
            XCTAssertEqual(try forward.floats("codevector_perplexity")[0], perplexity, accuracy: 1e-5 * perplexity)
            for term in ["contrastive_loss", "diversity_loss"] {
                XCTAssertEqual(try forward.floats(term)[0], try forwardReference.floats(term)[0], accuracy: 1e-4, term)
            }
        }
        let forwardLoss = try forward.floats("loss")[0], expectedLoss = try forwardReference.floats("loss")[0]
        XCTAssertLessThanOrEqual(abs(forwardLoss - expectedLoss) / abs(expectedLoss), 1e-5, "\(name) forward loss \(forwardLoss) vs \(expectedLoss)")

        try DebugCommands.grads(model: model, batch: batch, out: out("\(name)-grads.safetensors"), log: { _ in })
        let grads = try SafeTensorsFile(path: out("\(name)-grads.safetensors"))
        XCTAssertEqual(Set(grads.names), Set(reference.names), "\(name): loss and one gradient per parameter")
        XCTAssertEqual(grads.names.count, reference.names.count, name)
        let loss = try grads.floats("loss")[0], expected = try reference.floats("loss")[0]
        XCTAssertEqual(forwardLoss, loss, "\(name): forward and grads give the same loss")
        let lossError = abs(loss - expected) / abs(expected)
        XCTAssertLessThanOrEqual(lossError, 1e-5, "\(name) loss \(loss) vs \(expected)")
        let zero = try XCTUnwrap(Self.zeroGradients[name]).union(grads.names.filter { $0.hasSuffix("k_proj.bias") })
        var worst = (name: "", error: 0.0)
        for tensor in grads.names where tensor != "loss" {
            XCTAssertEqual(try grads.info(tensor).shape, try reference.info(tensor).shape, tensor)
            let ours = try grads.floats(tensor), theirs = try reference.floats(tensor)
            if zero.contains(tensor) {
                XCTAssertLessThanOrEqual(l2Norm(ours), 1e-6, "\(name) \(tensor)")
                XCTAssertLessThanOrEqual(l2Norm(theirs), 1e-6, "\(name) \(tensor)")
                continue
            }
            XCTAssertGreaterThan(l2Norm(theirs), 1e-6, "\(name) \(tensor): a gradient that tests something")
            let error = relativeError(ours, theirs)
            XCTAssertLessThanOrEqual(error, 1e-4, "\(name) \(tensor)")
            if error > worst.error { worst = (tensor, error) }
        }
        print("wav2vec2 \(name) debug grads: loss relative difference \(lossError), worst relative gradient error \(worst.error) on \(worst.name)")
    }

    /// A batch whose tensors do not fit the model is an error naming the file and the tensor.
    func testBadBatchesNameTheTensor() throws {
        let path = out("bad.safetensors")
        func message(_ name: String, _ tensors: (inout SafeTensorsWriter) -> Void) -> String {
            var w = SafeTensorsWriter()
            tensors(&w)
            do {
                try w.write(toPath: path)
                try DebugCommands.grads(model: Wav2Vec2Fixtures.path(name), batch: path, out: out("bad-grads.safetensors"),
                                        log: { _ in })
                return "no error"
            } catch { return "\(error)" }
        }
        func assertMessage(_ name: String, _ expected: String, _ tensors: (inout SafeTensorsWriter) -> Void,
                           line: UInt = #line) {
            let m = message(name, tensors)
            XCTAssertTrue(m.contains(expected) && m.contains(path), "\(m)", line: line)
        }
        let audio = [Float](repeating: 0.1, count: 3 * 400)
        let values = { (w: inout SafeTensorsWriter) in w.add("input_values", shape: [3, 400], floats: audio) }
        assertMessage("ctc-group", "no labels tensor", values)
        assertMessage("ctc-group", "input_values has shape [3, 20, 20], expected (batch, samples)") {
            $0.add("input_values", shape: [3, 20, 20], floats: audio)
        }
        assertMessage("ctc-group", "fewer than the feature encoder's receptive field") {
            $0.add("input_values", shape: [3, 5], floats: [Float](repeating: 0, count: 15))
        }
        assertMessage("ctc-group", "labels has shape [2, 6], expected (3, label columns)") {
            values(&$0)
            $0.add("labels", shape: [2, 6], int64s: [Int64](repeating: 1, count: 12))
        }
        assertMessage("ctc-group", "labels[1] = 99 is outside") {
            values(&$0)
            $0.add("labels", shape: [3, 2], int64s: [1, 99, 2, 3, 4, -100])
        }
        assertMessage("ctc-group", "attention_mask has shape [3, 399], expected [3, 400]") {
            values(&$0)
            $0.add("attention_mask", shape: [3, 399], int64s: [Int64](repeating: 1, count: 3 * 399))
        }
        assertMessage("ctc-group", "attention_mask row 0 is not ones then zeros") {
            values(&$0)
            $0.add("attention_mask", shape: [3, 400], int64s: [0] + [Int64](repeating: 1, count: 3 * 400 - 1))
        }
        assertMessage("ctc-group", "mask_time_indices is an input of Wav2Vec2ForPreTraining") {
            values(&$0)
            $0.add("mask_time_indices", shape: [3, 19], int64s: [Int64](repeating: 0, count: 3 * 19))
        }
        assertMessage("ctc-group", "input_ids is not an input of a wav2vec2 model") {
            values(&$0)
            $0.add("input_ids", shape: [3, 2], int64s: [1, 2, 3, 4, 5, 6])
        }
        assertMessage("pretraining", "no mask_time_indices and sampled_negative_indices tensor", values)
        assertMessage("pretraining", "sampled_negative_indices has shape [3, 19, 4], expected [3, 19, 5]") {
            values(&$0)
            $0.add("mask_time_indices", shape: [3, 19], int64s: [Int64](repeating: 1, count: 3 * 19))
            $0.add("sampled_negative_indices", shape: [3, 19, 4], int64s: [Int64](repeating: 0, count: 3 * 19 * 4))
        }
        assertMessage("pretraining", "sampled_negative_indices[0] = 57 is outside 0...56") {
            values(&$0)
            $0.add("mask_time_indices", shape: [3, 19], int64s: [Int64](repeating: 1, count: 3 * 19))
            $0.add("sampled_negative_indices", shape: [3, 19, 5], int64s: [57] + [Int64](repeating: 0, count: 3 * 19 * 5 - 1))
        }
        assertMessage("pretraining", "mask_time_indices has shape [3, 18], expected [3, 19]") {
            values(&$0)
            $0.add("mask_time_indices", shape: [3, 18], int64s: [Int64](repeating: 1, count: 3 * 18))
        }
        assertMessage("pretraining", "labels is an input of Wav2Vec2ForCTC") {
            values(&$0)
            $0.add("labels", shape: [3, 2], int64s: [1, 2, 3, 4, 5, 6])
        }
    }

    /// Without targets `forward` writes the outputs and no loss (pre-training: no perplexity without the mask).
    func testForwardWithoutTargets() throws {
        var w = SafeTensorsWriter()
        w.add("input_values", shape: [2, 400], floats: (0..<800).map { Float(sin(Double($0) * 0.05)) })
        let path = out("audio.safetensors")
        try w.write(toPath: path)
        try DebugCommands.forward(model: Wav2Vec2Fixtures.path("ctc-group"), batch: path, out: out("ctc.safetensors"), log: { _ in })
        let ctc = try SafeTensorsFile(path: out("ctc.safetensors"))
        XCTAssertEqual(Set(ctc.names), ["last_hidden_state", "logits"])
        XCTAssertEqual(try ctc.info("logits").shape, [2, 19, 13])
        try DebugCommands.forward(model: Wav2Vec2Fixtures.path("pretraining"), batch: path, out: out("pt.safetensors"), log: { _ in })
        let pt = try SafeTensorsFile(path: out("pt.safetensors"))
        XCTAssertEqual(Set(pt.names), ["last_hidden_state", "projected_states", "projected_quantized_states"])
        XCTAssertTrue(try pt.floats("projected_quantized_states").allSatisfy(\.isFinite))
    }
}
