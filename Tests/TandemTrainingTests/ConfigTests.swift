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

    func parse(_ yaml: String, _ overrides: [String] = []) throws -> Config {
        try Config(yaml: yaml, file: "test.yaml", overrides: overrides)
    }

    func message(_ yaml: String, _ overrides: [String] = []) -> String {
        do { _ = try parse(yaml, overrides); return "no error" } catch { return "\(error)" }
    }

    func testValuesDefaultsAndOverrides() throws {
        let c = try parse(base, ["train.steps=20", "model.n_embd=64", "distributed.deterministic=true"])
        XCTAssertEqual(c.int("train.steps"), 20)
        XCTAssertEqual(c.int("data.seq_len"), 32)
        XCTAssertEqual(c.double("train.lr"), 1e-3)
        XCTAssertEqual(c.int("train.warmup"), 0)
        XCTAssertEqual(c.string("train.optimizer"), "adamw")
        XCTAssertTrue(c.bool("distributed.deterministic"))
        XCTAssertEqual(c.modelFields["n_layer"], .int(2))
        XCTAssertEqual(c.modelFields["n_embd"], .int(64))
        XCTAssertEqual(try RunSettings(c, worldSize: 2).accumulation, 2)
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

    func testModelFieldsAreChecked() throws {
        XCTAssertEqual(try ModelPresets.gptConfig("gpt-nano", overrides: ["n_layer": .int(2)], file: "f").nLayer, 2)
        XCTAssertThrowsError(try ModelPresets.gptConfig("gpt-nano", overrides: ["n_layers": .int(2)], file: "f")) {
            XCTAssertTrue("\($0)".contains("unknown model field model.n_layers"), "\($0)")
        }
        XCTAssertThrowsError(try ModelPresets.gptConfig("gpt-nano", overrides: ["n_head": .int(5)], file: "f")) {
            XCTAssertTrue("\($0)".contains("not divisible"), "\($0)")
        }
        XCTAssertThrowsError(try ModelPresets.family(of: "bert-gigantic", file: "f")) {
            XCTAssertTrue("\($0)".contains("model.preset = bert-gigantic is not a known preset"), "\($0)")
        }
    }
}
