import XCTest
@testable import TandemTraining

final class OptimizerTests: XCTestCase {
    /// AdamW against torch.optim.AdamW's update written out in Double for three steps, with one decayed and
    /// one non-decayed parameter.
    func testAdamWMatchesPyTorchFormula() {
        let arena = ParameterArena()
        let w = arena.register("w", Shape(3), initializer: .zeros)
        let b = arena.register("b", Shape(2), initializer: .zeros, decays: false)
        arena.seal()
        let w0: [Float] = [0.5, -1.0, 2.0], b0: [Float] = [0.1, -0.2]
        for i in 0..<3 { w.value[i] = w0[i] }
        for i in 0..<2 { b.value[i] = b0[i] }
        var s = OptimizerSettings(); s.weightDecay = 0.1; s.eps = 1e-8
        let opt = Optimizer(.adamw, settings: s, arena: arena)
        var ref = (w0 + b0).map(Double.init), m = [Double](repeating: 0, count: 5), v = m
        let lr = 0.01
        for step in 1...3 {
            let g: [Float] = (0..<5).map { Float($0 + step) * 0.1 - 0.25 }
            for i in 0..<3 { w.grad[i] = g[i] }
            for i in 0..<2 { b.grad[i] = g[3 + i] }
            opt.update(lr: Float(lr))
            for i in 0..<5 {
                let wd = i < 3 ? 0.1 : 0
                ref[i] *= 1 - lr * wd
                m[i] = 0.9 * m[i] + 0.1 * Double(g[i])
                v[i] = 0.999 * v[i] + 0.001 * Double(g[i]) * Double(g[i])
                let mh = m[i] / (1 - pow(0.9, Double(step))), vh = v[i] / (1 - pow(0.999, Double(step)))
                ref[i] -= lr * mh / (vh.squareRoot() + 1e-8)
            }
        }
        let got = Array(w.values) + Array(b.values)
        for i in 0..<5 { XCTAssertEqual(Double(got[i]), ref[i], accuracy: 1e-6) }
    }

    func testLAMBTrustRatioScalesTheStep() {
        let arena = ParameterArena()
        let w = arena.register("w", Shape(4), initializer: .ones)
        arena.seal()
        var s = OptimizerSettings(); s.weightDecay = 0
        let opt = Optimizer(.lamb, settings: s, arena: arena)
        for i in 0..<4 { w.grad[i] = [1, -1, 1, -1][i] }
        opt.update(lr: 0.1)
        // First step: m^ = g, v^ = g^2, so r = sign(g) (up to eps); ||w|| = 2, ||r|| = 2, ratio 1.
        XCTAssertEqual(Array(w.values), [0.9, 1.1, 0.9, 1.1].map { Float($0) }, accuracy: 1e-5)
    }

    func testScheduleMatchesHF() {
        let lin = LRSchedule(peak: 1, warmup: 10, total: 110, decay: .linear)
        XCTAssertEqual(lin(0), 0)
        XCTAssertEqual(lin(5), 0.5)
        XCTAssertEqual(lin(10), 1)
        XCTAssertEqual(lin(60), 0.5)
        XCTAssertEqual(lin(110), 0)
        let cos = LRSchedule(peak: 2, warmup: 0, total: 100, decay: .cosine)
        XCTAssertEqual(cos(50), 1, accuracy: 1e-6)
        XCTAssertEqual(cos(100), 0, accuracy: 1e-6)
    }

    /// The Transformer paper's schedule: d^-0.5 min(step^-0.5, step warmup^-1.5) is inverse_sqrt with
    /// peak d^-0.5 warmup^-0.5; the peak is at the end of the warm-up, then lr halves when step quadruples.
    func testInverseSquareRootScheduleIsThePapers() {
        let d = 512.0, warmup = 4000
        let schedule = LRSchedule(peak: Float(1 / (d * Double(warmup)).squareRoot()), warmup: warmup, total: 100_000,
                                  decay: .inverseSqrt)
        for step in [1, 100, 2000, 3999, 4000, 4001, 16000, 64000, 1_000_000] {
            let paper = pow(d, -0.5) * min(pow(Double(step), -0.5), Double(step) * pow(Double(warmup), -1.5))
            XCTAssertEqual(Double(schedule(step)), paper, accuracy: paper * 1e-6, "step \(step)")
        }
        XCTAssertEqual(schedule(0), 0)
        XCTAssertEqual(schedule(16000), schedule(4000) / 2, accuracy: 1e-9)
        let noWarmup = LRSchedule(peak: 1, warmup: 0, total: 10, decay: .inverseSqrt)
        XCTAssertEqual(noWarmup(0), 1)
        XCTAssertEqual(noWarmup(4), 0.5)
        XCTAssertEqual(noWarmup(100), 0.1, accuracy: 1e-7)
    }

    func testClipping() {
        let arena = ParameterArena()
        let w = arena.register("w", Shape(2), initializer: .zeros)
        arena.seal()
        w.grad[0] = 3; w.grad[1] = 4
        XCTAssertEqual(clipGradientNorm(arena, maxNorm: 1), 5)
        XCTAssertEqual(Double(w.grad[0]), 0.6, accuracy: 1e-5)
        XCTAssertEqual(Double(w.grad[1]), 0.8, accuracy: 1e-5)
    }
}

func XCTAssertEqual(_ a: [Float], _ b: [Float], accuracy: Float, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, file: file, line: line)
    for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: accuracy, file: file, line: line) }

}

extension OptimizerTests {
    /// The trainer's fused path (clip factor, update and zeroing in one pass) gives the same bits as
    /// clipping the arena, updating and zeroing one after the other, for AdamW and LAMB.
    func testFusedClipUpdateZeroEqualsSeparatePasses() {
        for kind in [Optimizer.Kind.adamw, .lamb] {
            func make() -> (ParameterArena, Optimizer) {
                let arena = ParameterArena()
                _ = arena.register("a", Shape(37), initializer: .normal(std: 1))
                _ = arena.register("b", Shape(5), initializer: .normal(std: 1), decays: false)
                arena.seal()
                arena.reinitialize(rng: Philox(seed: 9))
                for p in arena.parameters { for i in 0..<p.count { p.grad[i] = Float(i % 7) - 3 } }
                return (arena, Optimizer(kind, settings: OptimizerSettings(), arena: arena))
            }
            let (a1, o1) = make(), (a2, o2) = make()
            for _ in 0..<3 {
                let norm = clipGradientNorm(a1, maxNorm: 1)
                o1.update(lr: 1e-2)
                a1.zeroGrads()
                let (norm2, factor) = gradientClipFactor(a2, maxNorm: 1)
                o2.update(lr: 1e-2, gradScale: factor, zeroingGrads: true)
                XCTAssertEqual(norm, norm2)
                XCTAssertEqual(Array(a1.values), Array(a2.values), "\(kind)")
                // Padding between parameters is never written, so only the parameters' gradients are looked at.
                XCTAssertTrue(a2.parameters.allSatisfy { p in (0..<p.count).allSatisfy { p.grad[$0] == 0 } })
                for a in [a1, a2] { for p in a.parameters { for i in 0..<p.count { p.grad[i] = Float(i % 5) - 2 } } }
            }
        }
    }
}

extension OptimizerTests {
    /// A sharded update: two shards that split the arena (across parameters, mid-parameter, in blocks
    /// larger than `shardBlock`) update their elements to the bits of one whole update, leave the rest
    /// (values, moments, gradients) alone, and publish exactly their elements, block by block.
    func testShardedUpdateEqualsWholeUpdateOnItsElements() {
        func make() -> (ParameterArena, Optimizer) {
            let arena = ParameterArena()
            _ = arena.register("a", Shape(37), initializer: .normal(std: 1))
            _ = arena.register("b", Shape(5), initializer: .normal(std: 1), decays: false)
            _ = arena.register("c", Shape(3 * Optimizer.shardBlock + 123), initializer: .normal(std: 1))
            arena.seal()
            arena.reinitialize(rng: Philox(seed: 9))
            for p in arena.parameters { for i in 0..<p.count { p.grad[i] = Float(i % 7) - 3 } }
            return (arena, Optimizer(.adamw, settings: OptimizerSettings(), arena: arena))
        }
        let (whole, wholeOpt) = make()
        let n = whole.count
        // Shard 0 owns [0, 48) (all of a, part of b) and [64 + 1000, 64 + 1000 + 2 x block + 7) inside c.
        let c = whole["c"]!.offset
        let split = c + 1000 + 2 * Optimizer.shardBlock + 7
        let shards: [[Range<Int>]] = [[0..<48, (c + 1000)..<split], [48..<(c + 1000), split..<n]]
        for _ in 0..<2 { wholeOpt.update(lr: 1e-2, gradScale: 0.5, zeroingGrads: true)
            for p in whole.parameters { for i in 0..<p.count { p.grad[i] = Float(i % 5) - 2 } } }
        for ranges in shards {
            let (arena, opt) = make()
            let before = Array(arena.values)
            var published: [Range<Int>] = []
            let shard = Optimizer.Shard(ranges: ranges, publish: { published.append($0) })
            for _ in 0..<2 { opt.update(lr: 1e-2, gradScale: 0.5, zeroingGrads: true, shard: shard)
                for p in arena.parameters { for i in 0..<p.count { p.grad[i] = Float(i % 5) - 2 } } }
            var mine = [Bool](repeating: false, count: n)
            for r in ranges { for i in r { mine[i] = true } }
            for p in arena.parameters {
                for i in p.offset..<(p.offset + p.count) {
                    if mine[i] {
                        XCTAssertEqual(arena.values[i].bitPattern, whole.values[i].bitPattern, "element \(i)")
                        XCTAssertEqual(opt.m[i].bitPattern, wholeOpt.m[i].bitPattern, "m \(i)")
                        XCTAssertEqual(opt.v[i].bitPattern, wholeOpt.v[i].bitPattern, "v \(i)")
                    } else {
                        XCTAssertEqual(arena.values[i], before[i], "element \(i) outside the shard changed")
                        XCTAssertEqual(opt.m[i], 0); XCTAssertEqual(opt.v[i], 0)
                    }
                }
            }
            // Published: each owned parameter element once per update, in blocks of at most shardBlock.
            var count = [Int](repeating: 0, count: n)
            for r in published { XCTAssertLessThanOrEqual(r.count, Optimizer.shardBlock); for i in r { count[i] += 1 } }
            for p in arena.parameters {
                for i in p.offset..<(p.offset + p.count) { XCTAssertEqual(count[i], mine[i] ? 2 : 0, "element \(i)") }
            }
        }
    }
}

extension OptimizerTests {
    /// Releasing the moments outside a shard keeps every owned element and frees only whole pages
    /// outside it (they read as zeros afterwards).
    func testReleaseMomentsKeepsOwnedElements() {
        let arena = ParameterArena()
        _ = arena.register("w", Shape(20_000), initializer: .zeros)
        arena.seal()
        let opt = Optimizer(.adamw, settings: OptimizerSettings(), arena: arena)
        let perPage = AlignedMemory.pageSize / 4
        let ranges = [100..<(3 * perPage + 5), (3 * perPage + 4000)..<(3 * perPage + 4016), 19_000..<20_000]
        for i in 0..<arena.count { opt.m[i] = Float(i) + 1; opt.v[i] = -Float(i) - 1 }
        opt.releaseMoments(outside: ranges)
        var owned = [Bool](repeating: false, count: arena.count)
        for r in ranges { for i in r { owned[i] = true } }
        var freed = 0
        for i in 0..<arena.count {
            let page = i / perPage
            let pageOwned = (page * perPage..<min(arena.count, (page + 1) * perPage)).contains { owned[$0] }
            if pageOwned {
                XCTAssertEqual(opt.m[i], Float(i) + 1, "element \(i)"); XCTAssertEqual(opt.v[i], -Float(i) - 1)
            } else {
                XCTAssertEqual(opt.m[i], 0, "element \(i)"); XCTAssertEqual(opt.v[i], 0); freed += 1
            }
        }
        XCTAssertGreaterThan(freed, 4 * perPage)
    }
}
