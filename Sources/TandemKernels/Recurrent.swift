#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One layer, one direction of a recurrent network, with exactly `torch.nn.RNN`/`LSTM`/`GRU`'s equations
/// (weights W_ih (G H, I), W_hh (G H, H), biases b_ih, b_hh (G H), gate blocks stacked in torch's order):
///
/// - RNN:  h' = act(W_ih x + b_ih + W_hh h + b_hh), act tanh or relu (Elman 1990).
/// - LSTM: gates i|f|g|o = W_ih x + b_ih + W_hh h + b_hh; i, f, o = σ, g = tanh; c' = f c + i g,
///   h' = o tanh(c') (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000).
/// - GRU:  r|z = σ(W_i{r,z} x + b_i{r,z} + W_h{r,z} h + b_h{r,z}), n = tanh(W_in x + b_in + r (W_hn h + b_hn)),
///   h' = (1 - z) n + z h (Cho et al. 2014, torch's variant with r applied after the W_hn product).
///
/// Structure (as cuDNN and llm.c-style CPU RNNs do it): the input projections of all B T positions are
/// one matrix product before the time loop; each step is one (B, H) x (H, G H) product for W_hh added
/// into that step's slice of the gate buffer and one fused, vectorised elementwise pass. Backward through
/// time runs the steps in reverse with the same structure, and dW_hh, dW_ih, dx and the biases are single
/// products (or column sums) over all B T positions after the loop. Given a `packed` buffer
/// (`RecurrentShape.packedWeightCount` floats, nonzero when T >= 2 on a CPU with AVX-512), forward and
/// backward each pack W_hh once (`panelPack`) and run the steps' products as `panelGemm`, instead of
/// `cblas_sgemm` packing it again at every step; T = 1 keeps `gemm` (packing would be all the work).
/// bf16 products (`MatmulPrecision.bf16`) keep `gemm` too.
///
/// Padding (`pack_padded_sequence` then `pad_packed_sequence`): sequence b has lengths[b] valid steps; at
/// a step t >= lengths[b] h (and c) stay unchanged and the output row is zero. The reverse direction runs
/// t = T-1 ... 0 with the same rule, so it starts at each sequence's last valid step from h0.
///
/// sigmoid and tanh use `FastMath`: tanh has at most 4.5e-7 absolute error, and σ(x) = 1 / (1 + e^-x)
/// through `FastMath.exp` (2.0e-7 relative) has at most about 3e-7 relative error (both a few ulp), far
/// below the 1e-5 / 1e-4 parity with PyTorch that the tests hold.

/// The cell of a recurrent layer; raw values are torch's `mode` strings (and the LM's `rnn_type`).
public enum RecurrentCell: String, Sendable, CaseIterable, Codable {
    case rnnTanh = "RNN_TANH"
    case rnnRelu = "RNN_RELU"
    case lstm = "LSTM"
    case gru = "GRU"

    /// G, the number of gate blocks of H rows in W_ih and W_hh.
    public var gates: Int {
        switch self {
        case .rnnTanh, .rnnRelu: return 1
        case .lstm: return 4
        case .gru: return 3
        }
    }

    /// Whether the cell carries c besides h (LSTM).
    public var hasCellState: Bool { self == .lstm }
}

/// One direction's weights: W_ih (G H, I), W_hh (G H, H), b_ih, b_hh (G H).
public struct RecurrentWeights {
    public var inputWeight: UnsafePointer<Float>
    public var hiddenWeight: UnsafePointer<Float>
    public var inputBias: UnsafePointer<Float>
    public var hiddenBias: UnsafePointer<Float>

    public init(inputWeight: UnsafePointer<Float>, hiddenWeight: UnsafePointer<Float>,
                inputBias: UnsafePointer<Float>, hiddenBias: UnsafePointer<Float>) {
        self.inputWeight = inputWeight; self.hiddenWeight = hiddenWeight
        self.inputBias = inputBias; self.hiddenBias = hiddenBias
    }
}

/// One direction's weight gradients, laid out like `RecurrentWeights`; nil skips.
public struct RecurrentWeightGradients {
    public var inputWeight: UnsafeMutablePointer<Float>?
    public var hiddenWeight: UnsafeMutablePointer<Float>?
    public var inputBias: UnsafeMutablePointer<Float>?
    public var hiddenBias: UnsafeMutablePointer<Float>?

    public init(inputWeight: UnsafeMutablePointer<Float>?, hiddenWeight: UnsafeMutablePointer<Float>?,
                inputBias: UnsafeMutablePointer<Float>?, hiddenBias: UnsafeMutablePointer<Float>?) {
        self.inputWeight = inputWeight; self.hiddenWeight = hiddenWeight
        self.inputBias = inputBias; self.hiddenBias = hiddenBias
    }
}

/// The sizes of one recurrent layer direction: batch B, time T, input I, hidden H, and whether it runs
/// t = T-1 ... 0.
public struct RecurrentShape: Sendable {
    public var cell: RecurrentCell
    public var B: Int, T: Int, I: Int, H: Int
    public var reverse: Bool

    public init(cell: RecurrentCell, B: Int, T: Int, I: Int, H: Int, reverse: Bool) {
        self.cell = cell; self.B = B; self.T = T; self.I = I; self.H = H; self.reverse = reverse
    }

    var GH: Int { cell.gates * H }

    /// Floats `recurrentForward` keeps for backward: the activated gates (B, T, G H) and the state entering
    /// each step (B, T, H); LSTM adds the cell state entering each step and tanh(c') (B, T, H each), GRU
    /// the hidden products W_hh h + b_hh (B, T, 3 H).
    public var savedCount: Int {
        let rows = B * T
        switch cell {
        case .rnnTanh, .rnnRelu: return rows * GH + rows * H
        case .lstm: return rows * GH + 3 * rows * H
        case .gru: return 2 * rows * GH + rows * H
        }
    }

    /// Floats `recurrentBackward` uses as scratch: the gate gradients (B, T, G H), for GRU also those of the
    /// hidden products (B, T, 3 H), and the running dh and dc (B, H each).
    public var backwardScratchCount: Int {
        B * T * GH * (cell == .gru ? 2 : 1) + 2 * B * H
    }

    /// Whether the steps' W_hh products can run on W_hh packed once (`panelGemm`): T >= 2 steps share it
    /// and the CPU has AVX-512.
    public var packsHiddenWeight: Bool { T >= 2 && PanelGemm.supported }

    /// Floats of the `packed` buffer `recurrentForward` and `recurrentBackward` pack W_hh into (both
    /// layouts fit; forward and backward may share it): 0 when `packsHiddenWeight` is false.
    public var packedWeightCount: Int {
        packsHiddenWeight ? max(PanelGemm.packedCount(k: H, n: GH), PanelGemm.packedCount(k: GH, n: H)) : 0
    }

    /// Whether the steps of a call with this `packed` buffer and precision run `panelGemm`.
    func packsHiddenWeight(_ packed: UnsafeMutablePointer<Float>?, _ precision: MatmulPrecision) -> Bool {
        packed != nil && packsHiddenWeight && !(precision == .bf16 && MatmulPrecision.usesBF16(m: B, n: GH, k: H))
    }

    /// Step s of the loop works on time t.
    @inline(__always)
    func time(_ s: Int) -> Int { reverse ? T - 1 - s : s }
}

/// Pointers into the saved buffer (see `RecurrentShape.savedCount`).
private struct SavedLayout {
    let gates: UnsafeMutablePointer<Float>     // (B, T, G H) activated gates
    let hPrev: UnsafeMutablePointer<Float>     // (B, T, H) h entering step t
    let cPrev: UnsafeMutablePointer<Float>     // LSTM: (B, T, H) c entering step t
    let tanhC: UnsafeMutablePointer<Float>     // LSTM: (B, T, H) tanh(c')
    let hidden: UnsafeMutablePointer<Float>    // GRU: (B, T, 3 H) W_hh h + b_hh

    init(_ p: UnsafeMutablePointer<Float>, _ s: RecurrentShape) {
        let rows = s.B * s.T
        gates = p
        hPrev = p + rows * s.GH
        cPrev = hPrev + rows * s.H
        tanhC = cPrev + rows * s.H
        hidden = cPrev
    }
}

/// Whether time t is inside sequence b.
@inline(__always)
private func isValid(_ lengths: UnsafePointer<Int32>?, _ b: Int, _ t: Int) -> Bool {
    guard let lengths else { return true }
    return t < Int(lengths[b])
}

@_transparent
private func sigmoid(_ x: Vector) -> Vector { 1 / (1 + FastMath.exp(-x)) }

// MARK: - Forward

/// Runs one direction over x (B, T, I): writes the outputs h_t into out (B, T, H) rows of stride `ldo`
/// (ldo = D H lets two directions write their halves of one (B, T, 2 H) buffer), the final states into
/// hN (B, H) and, for LSTM, cN (B, H), and what backward needs into `saved` (`savedCount`). h0, c0 (B, H)
/// nil start from zeros; `lengths` (B), each in 0...T, nil means all T. Products run in `precision`.
/// `packed` (`packedWeightCount` floats, nil: none) is where W_hh is packed for the steps' products.
public func recurrentForward(out: UnsafeMutablePointer<Float>, ldo: Int, hN: UnsafeMutablePointer<Float>,
                             cN: UnsafeMutablePointer<Float>?, saved: UnsafeMutablePointer<Float>,
                             inp: UnsafePointer<Float>, h0: UnsafePointer<Float>?, c0: UnsafePointer<Float>?,
                             lengths: UnsafePointer<Int32>?, weights w: RecurrentWeights, shape s: RecurrentShape,
                             packed: UnsafeMutablePointer<Float>? = nil, precision: MatmulPrecision = .fp32) {
    let B = s.B, T = s.T, I = s.I, H = s.H, GH = s.GH, cell = s.cell
    precondition(ldo >= H, "recurrent: output stride \(ldo) below H \(H)")
    precondition(!cell.hasCellState || cN != nil, "recurrent: LSTM needs cN")
    if let lengths {
        for b in 0..<B { precondition((0...T).contains(Int(lengths[b])), "recurrent: length \(lengths[b]) of sequence \(b) outside 0...\(T)") }
    }
    let m = SavedLayout(saved, s)
    // Input projections of all B T positions in one product; for RNN and LSTM b_hh joins b_ih here, so
    // each step only adds W_hh h. GRU keeps b_hn apart (r multiplies W_hn h + b_hn).
    for r in 0..<B * T {
        let row = m.gates + r * GH
        for (i, lanes) in chunks(GH) {
            var v = load(w.inputBias + i, lanes: lanes)
            if cell != .gru { v += load(w.hiddenBias + i, lanes: lanes) }
            store(v, to: row + i, lanes: lanes)
        }
    }
    gemm(.none, .transpose, m: B * T, n: GH, k: I, alpha: 1, a: inp, lda: I, b: w.inputWeight, ldb: I,
         beta: 1, c: m.gates, ldc: GH, precision: precision)
    if let h0 { hN.update(from: h0, count: B * H) } else { hN.update(repeating: 0, count: B * H) }
    if let cN {
        if let c0 { cN.update(from: c0, count: B * H) } else { cN.update(repeating: 0, count: B * H) }
    }
    // W_hh^T (H, G H) packed once for all T steps.
    let packs = s.packsHiddenWeight(packed, precision)
    if packs, let packed { panelPack(packed, .transpose, w: w.hiddenWeight, ldw: H, k: H, n: GH) }

    for step in 0..<T {
        let t = s.time(step)
        for b in 0..<B {
            (m.hPrev + (b * T + t) * H).update(from: hN + b * H, count: H)
            if let cN { (m.cPrev + (b * T + t) * H).update(from: cN + b * H, count: H) }
        }
        // The step's W_hh product, for all B rows at once (rows of time t are T G H apart).
        let target: UnsafeMutablePointer<Float>
        if cell == .gru {
            target = m.hidden + t * GH
            for b in 0..<B { (target + b * T * GH).update(from: w.hiddenBias, count: GH) }
        } else {
            target = m.gates + t * GH
        }
        if packs, let packed {
            panelGemm(c: target, ldc: T * GH, a: hN, lda: H, packed: packed, m: B, n: GH, k: H)
        } else {
            gemm(.none, .transpose, m: B, n: GH, k: H, alpha: 1, a: hN, lda: H, b: w.hiddenWeight, ldb: H,
                 beta: 1, c: target, ldc: T * GH, precision: precision)
        }
        for b in 0..<B {
            let r = b * T + t
            let o = out + r * ldo
            guard isValid(lengths, b, t) else {
                o.update(repeating: 0, count: H)
                continue
            }
            let g = m.gates + r * GH, h = hN + b * H
            switch cell {
            case .rnnTanh, .rnnRelu:
                for (i, lanes) in chunks(H) {
                    let x = load(g + i, lanes: lanes)
                    let y = cell == .rnnTanh ? FastMath.tanh(x) : FastMath.maximum(x, Vector())
                    store(y, to: g + i, lanes: lanes)
                    store(y, to: h + i, lanes: lanes)
                    store(y, to: o + i, lanes: lanes)
                }
            case .lstm:
                let c = cN! + b * H, tc = m.tanhC + r * H
                for (i, lanes) in chunks(H) {
                    let ig = sigmoid(load(g + i, lanes: lanes))
                    let fg = sigmoid(load(g + H + i, lanes: lanes))
                    let gg = FastMath.tanh(load(g + 2 * H + i, lanes: lanes))
                    let og = sigmoid(load(g + 3 * H + i, lanes: lanes))
                    let c1 = (fg * load(c + i, lanes: lanes)).addingProduct(ig, gg)
                    let t1 = FastMath.tanh(c1)
                    let h1 = og * t1
                    store(ig, to: g + i, lanes: lanes)
                    store(fg, to: g + H + i, lanes: lanes)
                    store(gg, to: g + 2 * H + i, lanes: lanes)
                    store(og, to: g + 3 * H + i, lanes: lanes)
                    store(c1, to: c + i, lanes: lanes)
                    store(t1, to: tc + i, lanes: lanes)
                    store(h1, to: h + i, lanes: lanes)
                    store(h1, to: o + i, lanes: lanes)
                }
            case .gru:
                let hh = m.hidden + r * GH
                for (i, lanes) in chunks(H) {
                    let rg = sigmoid(load(g + i, lanes: lanes) + load(hh + i, lanes: lanes))
                    let zg = sigmoid(load(g + H + i, lanes: lanes) + load(hh + H + i, lanes: lanes))
                    let ng = FastMath.tanh(load(g + 2 * H + i, lanes: lanes).addingProduct(rg, load(hh + 2 * H + i, lanes: lanes)))
                    // (1 - z) n + z h, written as torch's CPU cell computes it: n + z (h - n).
                    let h1 = ng.addingProduct(zg, load(h + i, lanes: lanes) - ng)
                    store(rg, to: g + i, lanes: lanes)
                    store(zg, to: g + H + i, lanes: lanes)
                    store(ng, to: g + 2 * H + i, lanes: lanes)
                    store(h1, to: h + i, lanes: lanes)
                    store(h1, to: o + i, lanes: lanes)
                }
            }
        }
    }
}

// MARK: - Backward

/// Gradients of `recurrentForward`, accumulated, from dout (B, T, H) rows of stride `ldo` and dhN, dcN
/// (B, H) (nil: the final states feed nothing): into dinp (B, T, I), dh0, dc0 (B, H) and the weight
/// gradients, each skipped when nil. `saved` is what forward wrote; `scratch` holds
/// `backwardScratchCount` floats. dout at padded positions is ignored (their outputs are constant zeros).
/// `packed` (`packedWeightCount` floats, nil: none) is where W_hh is packed for the steps' products.
public func recurrentBackward(dinp: UnsafeMutablePointer<Float>?, dh0: UnsafeMutablePointer<Float>?,
                              dc0: UnsafeMutablePointer<Float>?, dweights dw: RecurrentWeightGradients,
                              scratch: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, ldo: Int,
                              dhN: UnsafePointer<Float>?, dcN: UnsafePointer<Float>?,
                              saved: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>,
                              lengths: UnsafePointer<Int32>?, weights w: RecurrentWeights, shape s: RecurrentShape,
                              packed: UnsafeMutablePointer<Float>? = nil, precision: MatmulPrecision = .fp32) {
    let B = s.B, T = s.T, I = s.I, H = s.H, GH = s.GH, cell = s.cell
    let m = SavedLayout(saved, s)
    // dxg: gradients of the input projections' pre-activations; dhg: of the hidden products' (the same
    // buffer except for GRU, where r scales the n block of W_hn h + b_hn).
    let dxg = scratch
    let dhg = cell == .gru ? scratch + B * T * GH : dxg
    let dh = dhg + B * T * GH, dc = dh + B * H
    if let dhN { dh.update(from: dhN, count: B * H) } else { dh.update(repeating: 0, count: B * H) }
    if let dcN { dc.update(from: dcN, count: B * H) } else { dc.update(repeating: 0, count: B * H) }
    // W_hh (G H, H) packed once for all T steps.
    let packs = s.packsHiddenWeight(packed, precision)
    if packs, let packed { panelPack(packed, .none, w: w.hiddenWeight, ldw: H, k: GH, n: H) }

    for step in (0..<T).reversed() {
        let t = s.time(step)
        for b in 0..<B {
            let r = b * T + t
            let dx = dxg + r * GH, dhh = dhg + r * GH
            guard isValid(lengths, b, t) else {
                dx.update(repeating: 0, count: GH)
                if cell == .gru { dhh.update(repeating: 0, count: GH) }
                continue
            }
            let g = m.gates + r * GH, dy = dout + r * ldo, dhb = dh + b * H
            switch cell {
            case .rnnTanh, .rnnRelu:
                for (i, lanes) in chunks(H) {
                    let y = load(g + i, lanes: lanes)
                    let d = load(dhb + i, lanes: lanes) + load(dy + i, lanes: lanes)
                    let dp = cell == .rnnTanh ? d * (1 - y * y) : d.replacing(with: 0, where: y .<= 0)
                    store(dp, to: dx + i, lanes: lanes)
                    store(Vector(), to: dhb + i, lanes: lanes)
                }
            case .lstm:
                let dcb = dc + b * H, cp = m.cPrev + r * H, tc = m.tanhC + r * H
                for (i, lanes) in chunks(H) {
                    let ig = load(g + i, lanes: lanes), fg = load(g + H + i, lanes: lanes)
                    let gg = load(g + 2 * H + i, lanes: lanes), og = load(g + 3 * H + i, lanes: lanes)
                    let t1 = load(tc + i, lanes: lanes)
                    let d = load(dhb + i, lanes: lanes) + load(dy + i, lanes: lanes)
                    let dcv = load(dcb + i, lanes: lanes).addingProduct(d * og, 1 - t1 * t1)
                    store(dcv * ig * (1 - ig) * gg, to: dx + i, lanes: lanes)
                    store(dcv * fg * (1 - fg) * load(cp + i, lanes: lanes), to: dx + H + i, lanes: lanes)
                    store(dcv * ig * (1 - gg * gg), to: dx + 2 * H + i, lanes: lanes)
                    store(d * t1 * og * (1 - og), to: dx + 3 * H + i, lanes: lanes)
                    store(dcv * fg, to: dcb + i, lanes: lanes)
                    store(Vector(), to: dhb + i, lanes: lanes)
                }
            case .gru:
                let hp = m.hPrev + r * H, hh = m.hidden + r * GH
                for (i, lanes) in chunks(H) {
                    let rg = load(g + i, lanes: lanes), zg = load(g + H + i, lanes: lanes)
                    let ng = load(g + 2 * H + i, lanes: lanes)
                    let d = load(dhb + i, lanes: lanes) + load(dy + i, lanes: lanes)
                    let dnp = d * (1 - zg) * (1 - ng * ng)
                    let dzp = d * (load(hp + i, lanes: lanes) - ng) * zg * (1 - zg)
                    let drp = dnp * load(hh + 2 * H + i, lanes: lanes) * rg * (1 - rg)
                    store(drp, to: dx + i, lanes: lanes)
                    store(dzp, to: dx + H + i, lanes: lanes)
                    store(dnp, to: dx + 2 * H + i, lanes: lanes)
                    store(drp, to: dhh + i, lanes: lanes)
                    store(dzp, to: dhh + H + i, lanes: lanes)
                    store(dnp * rg, to: dhh + 2 * H + i, lanes: lanes)
                    store(d * zg, to: dhb + i, lanes: lanes)
                }
            }
        }
        // dh (B, H) += dhg_t (B, G H) W_hh: padded rows have zero gate gradients and keep their dh.
        if packs, let packed {
            panelGemm(c: dh, ldc: H, a: dhg + t * GH, lda: T * GH, packed: packed, m: B, n: H, k: GH)
        } else {
            gemm(.none, .none, m: B, n: H, k: GH, alpha: 1, a: dhg + t * GH, lda: T * GH, b: w.hiddenWeight, ldb: H,
                 beta: 1, c: dh, ldc: H, precision: precision)
        }
    }
    if let dh0 { residualBackward(da: dh0, db: nil, dout: dh, count: B * H) }
    if let dc0, cell.hasCellState { residualBackward(da: dc0, db: nil, dout: dc, count: B * H) }
    // The weight gradients and dx over all B T positions at once.
    if let dW = dw.hiddenWeight {
        gemm(.transpose, .none, m: GH, n: H, k: B * T, alpha: 1, a: dhg, lda: GH, b: m.hPrev, ldb: H,
             beta: 1, c: dW, ldc: H, precision: precision)
    }
    if let db = dw.hiddenBias { accumulateColumnSums(db, dhg, N: B * T, C: GH) }
    if let dW = dw.inputWeight {
        gemm(.transpose, .none, m: GH, n: I, k: B * T, alpha: 1, a: dxg, lda: GH, b: inp, ldb: I,
             beta: 1, c: dW, ldc: I, precision: precision)
    }
    if let db = dw.inputBias { accumulateColumnSums(db, dxg, N: B * T, C: GH) }
    if let dinp {
        gemm(.none, .none, m: B * T, n: I, k: GH, alpha: 1, a: dxg, lda: GH, b: w.inputWeight, ldb: I,
             beta: 1, c: dinp, ldc: I, precision: precision)
    }
}

// MARK: - Reference

/// One sequence's steps in Double, straight from torch's equations: what the naive references share.
private struct ReferenceStep {
    var t: Int
    var hPrev: [Double], cPrev: [Double]
    /// Activated gates (G H) and, for GRU, W_hh h + b_hh (3 H).
    var gates: [Double], hidden: [Double]
    var c: [Double], h: [Double]
}

private func referenceSteps(b: Int, inp: UnsafePointer<Float>, h0: UnsafePointer<Float>?, c0: UnsafePointer<Float>?,
                            lengths: UnsafePointer<Int32>?, weights w: RecurrentWeights,
                            shape s: RecurrentShape) -> [ReferenceStep] {
    let T = s.T, I = s.I, H = s.H, GH = s.GH
    var h = (0..<H).map { j in h0.map { Double($0[b * H + j]) } ?? 0 }
    var c = (0..<H).map { j in c0.map { Double($0[b * H + j]) } ?? 0 }
    var steps: [ReferenceStep] = []
    for step in 0..<T {
        let t = s.time(step)
        guard isValid(lengths, b, t) else { continue }
        var xg = [Double](repeating: 0, count: GH), hg = [Double](repeating: 0, count: GH)
        for k in 0..<GH {
            var accX = Double(w.inputBias[k]), accH = Double(w.hiddenBias[k])
            for j in 0..<I { accX += Double(w.inputWeight[k * I + j]) * Double(inp[(b * T + t) * I + j]) }
            for j in 0..<H { accH += Double(w.hiddenWeight[k * H + j]) * h[j] }
            xg[k] = accX; hg[k] = accH
        }
        func sig(_ x: Double) -> Double { 1 / (1 + exp(-x)) }
        var gates = [Double](repeating: 0, count: GH)
        var h1 = h, c1 = c
        for j in 0..<H {
            switch s.cell {
            case .rnnTanh: gates[j] = tanh(xg[j] + hg[j]); h1[j] = gates[j]
            case .rnnRelu: gates[j] = max(0, xg[j] + hg[j]); h1[j] = gates[j]
            case .lstm:
                let i = sig(xg[j] + hg[j]), f = sig(xg[H + j] + hg[H + j])
                let g = tanh(xg[2 * H + j] + hg[2 * H + j]), o = sig(xg[3 * H + j] + hg[3 * H + j])
                gates[j] = i; gates[H + j] = f; gates[2 * H + j] = g; gates[3 * H + j] = o
                c1[j] = f * c[j] + i * g
                h1[j] = o * tanh(c1[j])
            case .gru:
                let r = sig(xg[j] + hg[j]), z = sig(xg[H + j] + hg[H + j])
                let n = tanh(xg[2 * H + j] + r * hg[2 * H + j])
                gates[j] = r; gates[H + j] = z; gates[2 * H + j] = n
                h1[j] = (1 - z) * n + z * h[j]
            }
        }
        steps.append(ReferenceStep(t: t, hPrev: h, cPrev: c, gates: gates, hidden: hg, c: c1, h: h1))
        h = h1; c = c1
    }
    return steps
}

/// Naive `recurrentForward` in Double, sequence by sequence and step by step.
public func recurrentForwardReference(out: UnsafeMutablePointer<Float>, ldo: Int, hN: UnsafeMutablePointer<Float>,
                                      cN: UnsafeMutablePointer<Float>?, inp: UnsafePointer<Float>,
                                      h0: UnsafePointer<Float>?, c0: UnsafePointer<Float>?,
                                      lengths: UnsafePointer<Int32>?, weights w: RecurrentWeights,
                                      shape s: RecurrentShape) {
    let H = s.H
    for b in 0..<s.B {
        for t in 0..<s.T { (out + (b * s.T + t) * ldo).update(repeating: 0, count: H) }
        for j in 0..<H {
            hN[b * H + j] = h0?[b * H + j] ?? 0
            cN?[b * H + j] = c0?[b * H + j] ?? 0
        }
        for st in referenceSteps(b: b, inp: inp, h0: h0, c0: c0, lengths: lengths, weights: w, shape: s) {
            for j in 0..<H {
                out[(b * s.T + st.t) * ldo + j] = Float(st.h[j])
                hN[b * H + j] = Float(st.h[j])
                cN?[b * H + j] = Float(st.c[j])
            }
        }
    }
}

/// Naive `recurrentBackward` in Double: recomputes each sequence's forward, then backpropagates through
/// its valid steps in reverse order, one scalar at a time. Same gradients, accumulated.
public func recurrentBackwardReference(dinp: UnsafeMutablePointer<Float>?, dh0: UnsafeMutablePointer<Float>?,
                                       dc0: UnsafeMutablePointer<Float>?, dweights dw: RecurrentWeightGradients,
                                       dout: UnsafePointer<Float>, ldo: Int, dhN: UnsafePointer<Float>?,
                                       dcN: UnsafePointer<Float>?, inp: UnsafePointer<Float>,
                                       h0: UnsafePointer<Float>?, c0: UnsafePointer<Float>?,
                                       lengths: UnsafePointer<Int32>?, weights w: RecurrentWeights,
                                       shape s: RecurrentShape) {
    let T = s.T, I = s.I, H = s.H, GH = s.GH
    var dWih = [Double](repeating: 0, count: GH * I), dWhh = [Double](repeating: 0, count: GH * H)
    var dbih = [Double](repeating: 0, count: GH), dbhh = [Double](repeating: 0, count: GH)
    for b in 0..<s.B {
        var dh = (0..<H).map { j in dhN.map { Double($0[b * H + j]) } ?? 0 }
        var dc = (0..<H).map { j in dcN.map { Double($0[b * H + j]) } ?? 0 }
        for st in referenceSteps(b: b, inp: inp, h0: h0, c0: c0, lengths: lengths, weights: w, shape: s).reversed() {
            let row = b * T + st.t
            var dxg = [Double](repeating: 0, count: GH), dhg = [Double](repeating: 0, count: GH)
            var dhPrev = [Double](repeating: 0, count: H)
            for j in 0..<H {
                let d = dh[j] + Double(dout[row * ldo + j])
                switch s.cell {
                case .rnnTanh: dxg[j] = d * (1 - st.h[j] * st.h[j])
                case .rnnRelu: dxg[j] = st.h[j] > 0 ? d : 0
                case .lstm:
                    let i = st.gates[j], f = st.gates[H + j], g = st.gates[2 * H + j], o = st.gates[3 * H + j]
                    let tc = tanh(st.c[j])
                    let dcv = dc[j] + d * o * (1 - tc * tc)
                    dxg[j] = dcv * g * i * (1 - i)
                    dxg[H + j] = dcv * st.cPrev[j] * f * (1 - f)
                    dxg[2 * H + j] = dcv * i * (1 - g * g)
                    dxg[3 * H + j] = d * tc * o * (1 - o)
                    dc[j] = dcv * f
                case .gru:
                    let r = st.gates[j], z = st.gates[H + j], n = st.gates[2 * H + j]
                    let dn = d * (1 - z) * (1 - n * n)
                    dxg[j] = dn * st.hidden[2 * H + j] * r * (1 - r)
                    dxg[H + j] = d * (st.hPrev[j] - n) * z * (1 - z)
                    dxg[2 * H + j] = dn
                    dhPrev[j] = d * z
                }
            }
            for k in 0..<GH { dhg[k] = s.cell == .gru && k >= 2 * H ? dxg[k] * st.gates[k - 2 * H] : dxg[k] }
            var dx = [Double](repeating: 0, count: I)
            for k in 0..<GH {
                dbih[k] += dxg[k]; dbhh[k] += dhg[k]
                for j in 0..<I {
                    dWih[k * I + j] += dxg[k] * Double(inp[row * I + j])
                    dx[j] += dxg[k] * Double(w.inputWeight[k * I + j])
                }
                for j in 0..<H {
                    dWhh[k * H + j] += dhg[k] * st.hPrev[j]
                    dhPrev[j] += dhg[k] * Double(w.hiddenWeight[k * H + j])
                }
            }
            for j in 0..<I { dinp?[row * I + j] += Float(dx[j]) }
            dh = dhPrev
        }
        for j in 0..<H {
            dh0?[b * H + j] += Float(dh[j])
            if s.cell.hasCellState { dc0?[b * H + j] += Float(dc[j]) }
        }
    }
    for k in 0..<GH {
        dw.inputBias?[k] += Float(dbih[k])
        dw.hiddenBias?[k] += Float(dbhh[k])
        for j in 0..<I { dw.inputWeight?[k * I + j] += Float(dWih[k * I + j]) }
        for j in 0..<H { dw.hiddenWeight?[k * H + j] += Float(dWhh[k * H + j]) }
    }
}
