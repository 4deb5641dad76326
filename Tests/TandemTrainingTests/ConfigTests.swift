import XCTest
@testable import TandemTraining

final class ConfigTests: XCTestCase {
    let base = """
    model:
      preset: gpt-nano
      n_layer: 2
    data:
      train: corpus.txt
      seq_len: 32
    train:
      steps: 10
      global_batch: 8
      micro_batch: 2
      lr: 1.0e-3
    """

    func parse(_ yaml: String, _ overrides: [String] = []) throws -> TrainingConfig {
        try TrainingConfig(yaml: yaml, file: "test.yaml", overrides: overrides)
    }

    func message(_ yaml: String, _ overrides: [String] = []) -> String {
        do { _ = try parse(yaml, overrides); return "no error" } catch { return "\(error)" }
    }

    func testValuesDefaultsAndOverrides() throws {
        let c = try parse(base, ["train.steps=20", "model.n_embd=64", "distributed.deterministic=true"])
        XCTAssertEqual(c.train.steps, 20)
        XCTAssertEqual(c.data.seqLen, 32)
        XCTAssertEqual(c.train.lr, 1e-3)
        XCTAssertEqual(c.train.warmup, 0)
        XCTAssertEqual(c.train.optimizer, .adamw)
        XCTAssertTrue(c.distributed.deterministic)
        XCTAssertEqual(c.model.preset, "gpt-nano")
        XCTAssertEqual(c.model.fields["n_layer"], .int(2))
        XCTAssertEqual(c.model.fields["n_embd"], .int(64))
        XCTAssertNil(c.data.vocab)
        // What trainer_state.json records and the ranks hash: set values and defaults, as text.
        XCTAssertEqual(c.values["train.steps"], "20")
        XCTAssertEqual(c.values["train.eps"], "1e-06")
        XCTAssertEqual(c.values["distributed.reduce"], "hierarchical")
        XCTAssertEqual(c.values["model.n_embd"], "64")
        XCTAssertNil(c.values["data.vocab"])
        XCTAssertEqual(try RunSettings(c, worldSize: 2).accumulation, 2)
    }

    func testModelFieldsTakeLists() throws {
        // HF config.json lists (wav2vec2's conv_dim): a YAML sequence, or brackets in --set.
        func yaml(_ dims: String) -> String {
            "model:\n  preset: wav2vec2-small\n  conv_dim: \(dims)\n  names: ['a', b]\n" + base[base.range(of: "data:")!.lowerBound...]
        }
        let sets = ["model.conv_stride=[5, 2]", "model.empty=[]"]
        let c = try parse(yaml("[64, 64]"), sets)
        XCTAssertEqual(c.model.fields["conv_dim"], .list([.int(64), .int(64)]))
        XCTAssertEqual(c.model.fields["names"], .list([.string("a"), .string("b")]))
        XCTAssertEqual(c.model.fields["conv_stride"], .list([.int(5), .int(2)]))
        XCTAssertEqual(c.model.fields["empty"], .list([]))
        XCTAssertEqual(c.values["model.conv_dim"], "[64, 64]")
        XCTAssertEqual(c.hash, try parse(yaml("[64, 64]"), sets).hash)
        XCTAssertNotEqual(c.hash, try parse(yaml("[64, 32]"), sets).hash)
        // Lists are for model fields only, and hold single values.
        XCTAssertTrue(message("train:\n  steps: [1, 2]\n").contains("train.steps must be a single value, not a list"))
        XCTAssertTrue(message("model:\n  conv_dim: [[1], 2]\n").contains("model.conv_dim must be a list of single values"))
    }

    func testHashDependsOnValues() throws {
        XCTAssertEqual(try parse(base).hash, try parse(base).hash)
        XCTAssertNotEqual(try parse(base).hash, try parse(base, ["train.seed=1"]).hash)
    }

    func testErrorsNameFileKeyAndLine() {
        XCTAssertEqual(message(base + "\n  lr_decay: 3"), "test.yaml:12: unknown key train.lr_decay in test.yaml")
        XCTAssertTrue(message(base + "\n  stpes: 3").contains("did you mean train.steps?"), message(base + "\n  stpes: 3"))
        XCTAssertTrue(message(base, ["train.lr=-1"]).contains("train.lr = -1"))
        XCTAssertTrue(message(base, ["train.steps=ten"]).contains("expected an integer"))
        XCTAssertTrue(message(base, ["train.micro_batch=0"]).contains("train.micro_batch = 0"))
        XCTAssertTrue(message(base, ["train.optimizer=sgd"]).contains("one of adamw, lamb"))
        XCTAssertTrue(message(base, ["nonsense"]).contains("expected key=value"))
        XCTAssertTrue(message("model: [1, 2]\n").contains("must be a single value, not a list") ||
                      message("model: [1, 2]\n").contains("must be a section"))
        XCTAssertTrue(message("train:\n  steps: 1\n  steps: 2\n").contains("duplicate key train.steps"))
        XCTAssertTrue(message("train: {steps: [1\n").contains("malformed YAML"))
        XCTAssertTrue(message("- 1\n- 2\n").contains("top level must be a mapping"))
    }

    func testGlobalBatchMustSplitOverRanks() throws {
        let c = try parse(base)
        XCTAssertThrowsError(try RunSettings(c, worldSize: 3)) { error in
            XCTAssertTrue("\(error)".contains("train.global_batch = 8 is not micro_batch (2) x accumulation x ranks (3)"), "\(error)")
        }
    }

    func testMissingRequiredKey() throws {
        let c = try parse(base.replacingOccurrences(of: "  lr: 1.0e-3\n", with: "").replacingOccurrences(of: "  lr: 1.0e-3", with: ""))
        XCTAssertThrowsError(try RunSettings(c, worldSize: 1)) { XCTAssertTrue("\($0)".contains("train.lr is required"), "\($0)") }
    }

    func testReferenceListsEveryKeyWithKindDefaultAndHelp() {
        let lines = TrainingConfig.reference.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, TrainingConfig.keys.count)
        XCTAssertTrue(lines.contains { $0.hasPrefix("train.schedule: one of linear, cosine, constant, inverse_sqrt; default linear. after warm-up:") },
                      lines.joined(separator: "\n"))
        XCTAssertTrue(lines.contains { $0.hasPrefix("train.precision: one of fp32, bf16; default fp32.") })
        XCTAssertTrue(lines.contains { $0.hasPrefix("train.steps: an integer in 1...; no default.") })
        XCTAssertTrue(lines.contains { $0.hasPrefix("distributed.bucket_mb: a number in 0.001...4096.0; default 25.0.") })
    }

    func testModelFieldsAreChecked() throws {
        XCTAssertEqual(try GPTFamily.config(preset: "gpt-nano", overrides: ["n_layer": .int(2)], file: "f").nLayer, 2)
        XCTAssertThrowsError(try GPTFamily.config(preset: "gpt-nano", overrides: ["n_layers": .int(2)], file: "f")) {
            XCTAssertTrue("\($0)".contains("unknown model field model.n_layers"), "\($0)")
        }
        XCTAssertThrowsError(try GPTFamily.config(preset: "gpt-nano", overrides: ["n_head": .int(5)], file: "f")) {
            XCTAssertTrue("\($0)".contains("not divisible"), "\($0)")
        }
        XCTAssertThrowsError(try ModelFamilies.family(ofPreset: "bert-gigantic", file: "f")) {
            XCTAssertTrue("\($0)".contains("model.preset = bert-gigantic is not a known preset"), "\($0)")
        }
        XCTAssertThrowsError(try BERTFamily.config(preset: "vit-tiny", overrides: [:], vocabSize: nil, file: "f")) {
            XCTAssertEqual("\($0)", "f: model.preset = vit-tiny is not a bert preset")
        }
        // Dropout rates, the attention probabilities' included, lie in [0, 1).
        XCTAssertEqual(try BERTFamily.config(preset: "bert-tiny", overrides: [:], vocabSize: nil, file: "f").attentionProbsDropoutProb, 0.1)
        XCTAssertThrowsError(try BERTFamily.config(preset: "bert-tiny", overrides: ["attention_probs_dropout_prob": .float(1)],
                                                   vocabSize: nil, file: "f")) {
            XCTAssertTrue("\($0)".contains("attention_probs_dropout_prob = 1.0 must be in [0, 1)"), "\($0)")
        }
        XCTAssertThrowsError(try GPTFamily.config(preset: "gpt-nano", overrides: ["attn_pdrop": .float(-0.1)], file: "f")) {
            XCTAssertTrue("\($0)".contains("model.attn_pdrop = -0.1 must be in [0, 1)"), "\($0)")
        }
    }

    /// Objectives belong to families: a BERT run cannot name ViT's, and an unknown one lists the family's.
    func testObjectiveIsCheckedByTheFamily() throws {
        let settings = try RunSettings(parse(base), worldSize: 1)
        func error(_ overrides: [String]) -> String {
            do { _ = try ModelFamilies.makeTask(parse(base, overrides), settings: settings, initFrom: nil); return "no error" }
            catch { return "\(error)" }
        }
        XCTAssertEqual(error(["train.objective=distillation"]),
                       "test.yaml: train.objective = distillation is not an objective of the gpt2 family (it has one objective and no train.objective)")
        XCTAssertEqual(error(["model.preset=vit-tiny", "train.objective=mim"]),
                       "test.yaml: train.objective = mim is not an objective of the vit family (its objectives are classification, masked_image_modeling, distillation)")
        XCTAssertEqual(error(["model.preset=vit-tiny", "train.teacher=runs/x"]),
                       "test.yaml: train.teacher is only used with train.objective = distillation")
    }

    /// A model directory of a type Tandem does not know says which model_type it found and which are
    /// supported, instead of failing later as a BERT with missing tensors.
    func testModelDirectoryOfAnUnknownTypeNamesIt() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-model-type-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func message() -> String {
            do { return "found \(try ModelFamilies.family(ofDirectory: dir).name)" } catch { return "\(error)" }
        }
        let supported = ModelFamilies.all.flatMap { $0.modelTypes }.joined(separator: ", ")
        XCTAssertTrue(supported.hasPrefix("bert, vit, deit, gpt2"), supported)
        XCTAssertEqual(message(), "\(dir)/config.json: cannot read (is \(dir) a model directory?)")
        try #"{"model_type": "xlnet", "hidden_size": 17}"#.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        XCTAssertEqual(message(), "\(dir)/config.json: model_type xlnet is not supported (supported model_types: \(supported))")
        try #"{"hidden_size": 17}"#.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        XCTAssertEqual(message(), "\(dir)/config.json: no model_type field, so the model family is unknown (supported model_types: \(supported))")
        try #"{"model_type": "deit"}"#.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        XCTAssertEqual(message(), "found vit")
    }
}
