import CMallocCounter
import Foundation
import XCTest
import TandemCollectives
import TandemAutograd
import TandemKernels
import TandemTensor
@testable import TandemTraining

final class TrainerTests: XCTestCase {
    /// A real text (this file's own source repeated) as a byte corpus.
    func corpus() throws -> String {
        let path = NSTemporaryDirectory() + "tandem-trainer-\(getpid()).txt"
        let text = try String(contentsOfFile: #filePath, encoding: .utf8)
        try String(repeating: text, count: 4).write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func makeTrainer(_ extra: [String] = []) throws -> Trainer {
        let yaml = """
        model: {preset: gpt-nano, n_layer: 2, n_embd: 32, n_head: 4, n_positions: 64}
        data: {train: \(try corpus()), seq_len: 32}
        train: {steps: 30, global_batch: 8, micro_batch: 4, lr: 3.0e-3, warmup: 2, log_every: 5}
        """
        let config = try TrainingConfig(yaml: yaml, file: "test.yaml", overrides: extra)
        let comm = LocalCommunicator()
        let settings = try RunSettings(config, worldSize: comm.size)
        return try Trainer(settings: settings, task: try ModelFamilies.makeTask(config, settings: settings, initFrom: nil), communicator: comm)
    }

    /// The whole optimizer step (data, forward, backward, reduction, clipping, update) in a release build.
    /// At gpt-nano's width: OpenBLAS 0.3.21's small-matrix sgemm path (tiny products, e.g. 32 channels)
    /// mallocs a scratch buffer per call, which is the library's and not ours. bf16 products (where the
    /// CPU has them) pack into per-thread buffers that the first steps size.
    func testSteadyStateStepsAllocateNothing() throws {
        #if DEBUG
        throw XCTSkip("unoptimised builds box values on the heap; launch/test runs this in release")
        #endif
        for precision in MatmulPrecision.bf16Supported ? ["fp32", "bf16"] : ["fp32"] {
            let trainer = try makeTrainer(["model.n_embd=128", "model.n_positions=128", "data.seq_len=128",
                                           "train.precision=\(precision)"])
            for _ in 0..<3 { trainer.trainStep() }
            malloc_counter_start()
            for _ in 0..<5 { trainer.trainStep() }
            let allocations = malloc_counter_stop()
            XCTAssertEqual(allocations, 0, "heap allocations in 5 steady-state \(precision) training steps")
        }
    }

    /// The CTC loss keeps its working memory between replays: once recorded, steps whose target and input
    /// lengths change from one to the next allocate nothing.
    func testCTCLossStepsAllocateNothing() throws {
        #if DEBUG
        throw XCTSkip("unoptimised builds box values on the heap; launch/test runs this in release")
        #endif
        let B = 3, T = 40, V = 6, U = 7
        let tape = Tape(rng: Philox(seed: 1), minimumBlockBytes: 1 << 16)
        let logits = tape.tensor(Shape(B, T, V))
        let labels = tape.intInput(count: B * U), lengths = tape.intInput(count: B)
        let loss = tape.ctcLoss(logits, labels: labels, labelColumns: U, inputLengths: lengths, blank: 0,
                                reduction: .mean, zeroInfinity: true)
        tape.seal()
        for i in 0..<logits.count { logits.data[i] = Float((i * 37) % 11) / 5 - 1 }
        func step(_ k: Int) {
            for b in 0..<B {
                let n = 1 + (k + 2 * b) % U  // labels in 1..<V, the rest padding (-100)
                for u in 0..<U { labels[b * U + u] = u < n ? Int32(1 + (u + k + b) % (V - 1)) : -100 }
                lengths[b] = Int32(T - (k + b) % 9)
            }
            tape.forward()
            tape.backward(from: loss)
        }
        step(0)
        malloc_counter_start()
        for k in 1...6 { step(k) }
        let allocations = malloc_counter_stop()
        XCTAssertEqual(allocations, 0, "heap allocations in 6 CTC steps")
        XCTAssertTrue(loss.data[0].isFinite)
    }

    func testLossFallsOnRealText() throws {
        let trainer = try makeTrainer()
        let first = trainer.trainStep().loss
        var last = first
        for _ in 0..<29 { last = trainer.trainStep().loss }
        XCTAssertEqual(first, log(256), accuracy: 0.3, "an untrained byte model starts near ln 256")
        XCTAssertLessThan(last, first - 1.5, "loss after 30 steps")
    }

    func testAccumulationMatchesOneBigMicroBatch() throws {
        // Without dropout, 2 micro-batches of 4 with accumulation give the gradient of 1 micro-batch of 8.
        let a = try makeTrainer(["model.resid_pdrop=0", "model.embd_pdrop=0", "model.attn_pdrop=0", "train.micro_batch=4"])
        let b = try makeTrainer(["model.resid_pdrop=0", "model.embd_pdrop=0", "model.attn_pdrop=0", "train.micro_batch=8"])
        for _ in 0..<3 { a.trainStep(); b.trainStep() }
        let pa = Array(a.task.arena.values), pb = Array(b.task.arena.values)
        var worst: Float = 0
        for i in 0..<pa.count { worst = max(worst, abs(pa[i] - pb[i])) }
        XCTAssertLessThan(worst, 1e-5)
    }
}
