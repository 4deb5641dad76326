import Foundation
import XCTest
import TandemAutograd
import TandemCheckpoint
import TandemModels
import TandemTestSupport
import TandemTools
import TandemTraining

/// `tandem debug forward|grads` against transformers' DistilBertForMaskedLM, and DistilBERT's triple loss
/// against transformers' distiller.py, on the fixtures written by scripts/fixtures/make_distilbert_fixtures.py:
/// a random model with shapes that are not powers of two and a padded batch.
final class DistilBERTParityTests: ScratchDirectoryTestCase {
    private func out(_ name: String) -> String { scratch.appendingPathComponent(name).path }
    private let model = ModelFixtures.path("distilbert/model"), batch = ModelFixtures.path("distilbert/batch.safetensors")

    func testDebugForwardMatchesTransformers() throws {
        let path = out("forward.safetensors")
        try DebugCommands.forward(model: model, batch: batch, out: path, log: { _ in })
        let ours = try SafeTensorsFile(path: path)
        let reference = try SafeTensorsFile(path: ModelFixtures.path("distilbert/forward.safetensors"))
        XCTAssertEqual(Set(ours.names), Set(reference.names))
        for name in ["last_hidden_state", "logits"] {
            XCTAssertEqual(try ours.info(name).shape, try reference.info(name).shape, name)
            let difference = maxAbsDifference(try ours.floats(name), try reference.floats(name))
            print("DistilBERT forward parity: \(name) max abs difference \(difference)")
            XCTAssertLessThanOrEqual(difference, 1e-4, name)
        }
        let loss = try ours.floats("loss")[0], expected = try reference.floats("loss")[0]
        print("DistilBERT forward parity: loss \(loss) vs \(expected), relative \(abs(loss - expected) / abs(expected))")
        XCTAssertLessThanOrEqual(abs(loss - expected) / abs(expected), 1e-5, "loss \(loss) vs \(expected)")
    }

    func testDebugGradsMatchTransformers() throws {
        let path = out("grads.safetensors")
        try DebugCommands.grads(model: model, batch: batch, out: path, log: { _ in })
        let (lossError, worst) = try assertGradientsMatch(try SafeTensorsFile(path: path),
                                                          try SafeTensorsFile(path: ModelFixtures.path("distilbert/grads.safetensors")),
                                                          zeroGradientSuffix: "attention.k_lin.bias")
        print("DistilBERT gradient parity: loss relative \(lossError), worst relative error \(worst.error) on \(worst.name)")
    }

    /// The triple loss on the distiller's own random student and teacher outputs: each term, the total and
    /// the gradients of the student's logits and hidden states.
    func testDistillationLossMatchesTransformersDistiller() throws {
        let f = try SafeTensorsFile(path: ModelFixtures.path("distilbert/distillation.safetensors"))
        let shape = try f.info("student_logits").shape, C = try f.info("student_hidden").shape[2]
        let B = shape[0], T = shape[1], V = shape[2], N = B * T
        let tape = Tape()
        let studentLogits = tape.tensor(Shape(N, V)), studentHidden = tape.tensor(Shape(N, C))
        let teacherLogits = tape.input(Shape(N, V)), teacherHidden = tape.input(Shape(N, C)), mask = tape.input(Shape(N))
        let labels = tape.intInput(count: N)
        let losses = DistillationObjective().record(on: tape, studentLogits: studentLogits, teacherLogits: teacherLogits,
                                                    studentHidden: studentHidden, teacherHidden: teacherHidden,
                                                    attentionMask: mask, labels: labels)
        studentLogits.data.update(from: try f.floats("student_logits"), count: N * V)
        teacherLogits.data.update(from: try f.floats("teacher_logits"), count: N * V)
        studentHidden.data.update(from: try f.floats("student_hidden"), count: N * C)
        teacherHidden.data.update(from: try f.floats("teacher_hidden"), count: N * C)
        mask.data.update(from: try f.int32s("attention_mask").map(Float.init), count: N)
        labels.update(from: try f.int32s("labels"), count: N)
        tape.forward()
        tape.backward(from: losses.total)
        for (name, tensor) in [("loss_ce", losses.softTarget), ("loss_mlm", losses.mlm), ("loss_cos", losses.cosine), ("loss", losses.total)] {
            let expected = try f.floats(name)[0], relative = abs(tensor.data[0] - expected) / abs(expected)
            print("DistilBERT distillation parity: \(name) \(tensor.data[0]) vs \(expected), relative \(relative)")
            XCTAssertLessThanOrEqual(relative, 1e-5, name)
        }
        for (name, tensor) in [("grad_student_logits", studentLogits), ("grad_student_hidden", studentHidden)] {
            let error = relativeError(Array(UnsafeBufferPointer(start: tensor.grad!, count: tensor.count)), try f.floats(name))
            print("DistilBERT distillation parity: \(name) relative error \(error)")
            XCTAssertLessThanOrEqual(error, 1e-4, name)
        }
    }

    /// Student block i starts from teacher block 2i, the embeddings and the MLM head from the teacher's.
    func testStudentStartsFromEveryOtherTeacherLayer() throws {
        let teacherArena = ParameterArena()
        let teacher = BERT(BertConfig(vocabSize: 13, hiddenSize: 8, numHiddenLayers: 5, numAttentionHeads: 2, intermediateSize: 12,
                                      maxPositionEmbeddings: 10), arena: teacherArena, rng: Philox(seed: 1))
        teacherArena.seal()
        let arena = ParameterArena()
        let student = DistilBERT(DistilBertConfig(vocabSize: 13, maxPositionEmbeddings: 10, numLayers: 3, numHeads: 2, dim: 8,
                                                  hiddenDim: 12), arena: arena, rng: Philox(seed: 2))
        arena.seal()
        try student.initialise(fromTeacher: teacher)
        let theirs = Dictionary(uniqueKeysWithValues: teacher.parameters.map { ($0.name, Array($0.values)) })
        func expect(_ ours: String, _ source: String) {
            XCTAssertEqual(Array(student.parameters.first { $0.name == ours }!.values), theirs[source], "\(ours) from \(source)")
        }
        expect("distilbert.embeddings.word_embeddings.weight", "bert.embeddings.word_embeddings.weight")
        expect("distilbert.embeddings.LayerNorm.bias", "bert.embeddings.LayerNorm.bias")
        for (i, t) in [(0, 0), (1, 2), (2, 4)] {
            expect("distilbert.transformer.layer.\(i).attention.q_lin.weight", "bert.encoder.layer.\(t).attention.self.query.weight")
            expect("distilbert.transformer.layer.\(i).sa_layer_norm.weight", "bert.encoder.layer.\(t).attention.output.LayerNorm.weight")
            expect("distilbert.transformer.layer.\(i).ffn.lin2.bias", "bert.encoder.layer.\(t).output.dense.bias")
            expect("distilbert.transformer.layer.\(i).output_layer_norm.bias", "bert.encoder.layer.\(t).output.LayerNorm.bias")
        }
        expect("vocab_transform.weight", "cls.predictions.transform.dense.weight")
        expect("vocab_layer_norm.weight", "cls.predictions.transform.LayerNorm.weight")
        expect("vocab_projector.bias", "cls.predictions.bias")

        let tooDeep = DistilBERT(DistilBertConfig(vocabSize: 13, maxPositionEmbeddings: 10, numLayers: 4, numHeads: 2, dim: 8,
                                                  hiddenDim: 12), arena: ParameterArena(), rng: Philox(seed: 3))
        XCTAssertThrowsError(try tooDeep.initialise(fromTeacher: teacher))
    }

    func testConfigRejectsWhatTheModelCannotRun() {
        func decode(_ json: String) throws -> DistilBertConfig { try JSONDecoder().decode(DistilBertConfig.self, from: Data(json.utf8)) }
        XCTAssertThrowsError(try decode(#"{"sinusoidal_pos_embds": true}"#)) { XCTAssertTrue("\($0)".contains("sinusoidal_pos_embds")) }
        XCTAssertThrowsError(try decode(#"{"activation": "relu"}"#)) { XCTAssertTrue("\($0)".contains("activation")) }
        XCTAssertThrowsError(try decode(#"{"tie_word_embeddings": false}"#))
        XCTAssertThrowsError(try decode(#"{"dim": 36, "n_heads": 5}"#)) { XCTAssertTrue("\($0)".contains("n_heads")) }
        XCTAssertEqual(try decode("{}"), DistilBertConfig())
    }
}
