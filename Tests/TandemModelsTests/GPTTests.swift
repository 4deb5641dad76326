import XCTest
import TandemAutograd
import TandemModels

final class GPTTests: XCTestCase {
    /// HF GPT2 module order, the tied head (no separate lm_head parameter), and the parameter count
    /// 2*C*... of the formula V*C + P*C + L*(12*C*C + 13*C) + 2*C.
    func testParameterLayout() {
        let arena = ParameterArena()
        let c = GPTConfig(vocabSize: 50, nPositions: 16, nEmbd: 12, nLayer: 2, nHead: 3)
        _ = GPT(c, arena: arena, rng: Philox(seed: 0))
        let names = arena.parameters.map(\.name)
        XCTAssertEqual(names.first, "transformer.wte.weight")
        XCTAssertEqual(names[1], "transformer.wpe.weight")
        XCTAssertEqual(names.last, "transformer.ln_f.bias")
        XCTAssertFalse(names.contains { $0.contains("lm_head") })
        let C = 12, L = 2
        XCTAssertEqual(arena.parameterCount, 50 * C + 16 * C + L * (12 * C * C + 13 * C) + 2 * C)
    }

    func testCausalityLaterTokensDoNotChangeEarlierLogits() {
        let arena = ParameterArena()
        let model = GPT(GPTConfig(vocabSize: 20, nPositions: 8, nEmbd: 12, nLayer: 2, nHead: 3, residPdrop: 0),
                        arena: arena, rng: Philox(seed: 4))
        arena.seal()
        let tape = Tape()
        let g = model.record(on: tape, batch: 1, sequence: 6)
        for t in 0..<6 { g.inputIDs[t] = Int32(t * 3 % 20); g.targets[t] = 1 }
        tape.forward()
        let before = Array(UnsafeBufferPointer(start: g.logits.data, count: 4 * 20))
        g.inputIDs[5] = 19
        tape.forward()
        XCTAssertEqual(Array(UnsafeBufferPointer(start: g.logits.data, count: 4 * 20)), before)
    }
}
