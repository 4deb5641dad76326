import TandemKernels

// The ops of a convolutional front end on channels-last (B, T, C) activations: wav2vec 2.0's feature
// encoder (Conv1d, GroupNorm with one group per channel) and its positional convolution (a grouped
// Conv1d whose weight is weight-normalised). And on channels-last (B, H, W, C) images, those of a VQ-VAE
// image tokenizer (BEiT's visual tokens): Conv2d and nearest-neighbour upsampling.

extension Tape {
    /// PyTorch's nn.Conv1d on channels-last activations: x (B, T, CIn), weight (COut, CIn/groups, K) in
    /// PyTorch's layout, bias (COut) or nil; y (B, TOut, COut) with TOut = outputLength ?? (T + 2 padding - K)/stride + 1.
    /// outputLength, when given, must be <= that and drops the trailing outputs (wav2vec2's SamePad removes the last one for even K).
    public func conv1d(_ x: Tensor, weight: Parameter, bias: Parameter?, stride: Int = 1, padding: Int = 0,
                       groups: Int = 1, outputLength: Int? = nil) -> Tensor {
        recordConv1d(x, weight: Tensor(weight), weightParameter: weight, name: weight.name, bias: bias,
                     stride: stride, padding: padding, groups: groups, outputLength: outputLength)
    }

    /// The same with a weight computed on the tape (e.g. by weightNorm); `weight.grad` gets the weight's gradient.
    public func conv1d(_ x: Tensor, weight: Tensor, bias: Parameter?, stride: Int = 1, padding: Int = 0,
                       groups: Int = 1, outputLength: Int? = nil) -> Tensor {
        recordConv1d(x, weight: weight, weightParameter: nil, name: bias?.name ?? "conv1d", bias: bias,
                     stride: stride, padding: padding, groups: groups, outputLength: outputLength)
    }

    /// conv1d(gelu(x)) as one op that keeps no copy of gelu(x): forward computes it into the tape's
    /// workspace, and backward computes it there again. wav2vec 2.0's feature encoder is a chain of
    /// convolutions each fed by the GELU of the one before, at up to 16,000 frames of 512 channels, and
    /// held every GELU output from forward to backward: 64 MB of a 5-second utterance's 163.
    /// x must feed nothing else (its gradient is this op's alone: the op stores it, writing the
    /// convolution's input gradient into it and multiplying by the GELU's derivative in place). The same
    /// bits as `conv1d(gelu(x))` in every output and gradient.
    public func geluConv1d(_ x: Tensor, approximation: GELUApproximation = .erf, weight: Parameter,
                           bias: Parameter?, stride: Int = 1) -> Tensor {
        recordConv1d(x, weight: Tensor(weight), weightParameter: weight, name: weight.name, bias: bias,
                     stride: stride, padding: 0, groups: 1, outputLength: nil, gelu: approximation)
    }

    /// Both `conv1d`s and `geluConv1d` (`gelu` given): `weightParameter` is the Parameter behind `weight`
    /// when there is one (its gradient then counts for the gradient-ready hooks), else `weight` is a tape
    /// tensor listed among the inputs.
    private func recordConv1d(_ x: Tensor, weight: Tensor, weightParameter: Parameter?, name: String,
                              bias: Parameter?, stride: Int, padding: Int, groups: Int,
                              outputLength: Int?, gelu: GELUApproximation? = nil) -> Tensor {
        precondition(x.shape.dims.count == 3 && weight.shape.dims.count == 3,
                     "conv1d \(name): input \(x.shape) must be (B, T, CIn) and weight \(weight.shape) (COut, CIn/groups, K)")
        let B = x.shape[0], T = x.shape[1], CIn = x.shape[2]
        let COut = weight.shape[0], K = weight.shape[2]
        precondition(groups > 0 && CIn % groups == 0 && COut % groups == 0 && weight.shape[1] == CIn / groups,
                     "conv1d \(name): weight \(weight.shape) does not fit input \(x.shape) with \(groups) groups")
        precondition(bias.map { $0.count == COut } ?? true, "conv1d \(name): bias \(bias!.shape) is not (\(COut))")
        let full = conv1dOutputLength(T: T, K: K, stride: stride, padding: padding)
        let TOut = outputLength ?? full
        precondition(TOut > 0 && TOut <= full, "conv1d \(name): output length \(TOut) outside 1...\(full) for input \(x.shape)")
        let y = tensor(Shape([B, TOut, COut]))
        // The workspace: the permuted weight and its gradient, then (geluConv1d) gelu(x).
        let scratchCount = conv1dScratchCount(CIn: CIn, COut: COut, K: K, groups: groups)
        reserveWorkspace(count: scratchCount + (gelu == nil ? 0 : x.count))
        let b = bias?.value, db = bias?.grad
        let precision = precision
        var parameters = bias.map { [$0] } ?? []
        if let weightParameter { parameters.insert(weightParameter, at: 0) }
        let n = x.count
        let write = gradientWrite(x)
        /// The convolution's input: x, or gelu(x) computed into the workspace.
        func input(_ workspace: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> {
            guard let gelu else { return x.data }
            let g = workspace + scratchCount
            geluForward(out: g, inp: x.data, count: n, approximation: gelu)
            return g
        }
        record(parameters: parameters, inputs: weightParameter == nil ? [x, weight] : [x],
               storing: gelu == nil ? [] : [write], forward: { [unowned self] in
            conv1dForward(out: y.data, inp: input(workspace), weight: weight.data, bias: b, B: B, T: T, CIn: CIn, COut: COut,
                          K: K, stride: stride, padding: padding, groups: groups, TOut: TOut, scratch: workspace,
                          precision: precision)
        }, backward: { [unowned self] in
            let inp = input(workspace)
            if gelu != nil, let dx = x.grad {
                precondition(!write.accumulates, "geluConv1d \(name): its input feeds another op too; use gelu and conv1d")
                dx.update(repeating: 0, count: n)
            }
            conv1dBackward(dinp: x.grad, dweight: weight.grad, dbias: db, dout: y.grad!, inp: inp,
                           weight: weight.data, B: B, T: T, CIn: CIn, COut: COut, K: K, stride: stride,
                           padding: padding, groups: groups, TOut: TOut, scratch: workspace, precision: precision)
            if let gelu, let dx = x.grad {
                geluBackward(dinp: dx, inp: x.data, dout: dx, count: n, approximation: gelu, accumulate: false)
            }
        })
        return y
    }

    /// PyTorch's weight_norm(dim:): w = g * v / ||v||, the norm taken over every axis of v except `dim`, g shaped
    /// like v with size 1 on every other axis (wav2vec2's pos_conv: v (C, C/16, 128), g (1, 1, 128), dim 2).
    /// Returns w, a tape tensor shaped like v whose backward accumulates into g.grad and v.grad.
    public func weightNorm(g: Parameter, v: Parameter, dim: Int) -> Tensor {
        let dims = v.shape.dims
        precondition(dim >= 0 && dim < dims.count, "weight norm \(v.name): dim \(dim) outside \(v.shape)")
        let D = dims[dim]
        precondition(g.count == D && g.shape.dims.count == dims.count,
                     "weight norm \(g.name) \(g.shape): must be \(v.shape) with 1 on every axis but \(dim)")
        let outer = dims[..<dim].reduce(1, *), inner = dims[(dim + 1)...].reduce(1, *)
        let w = tensor(v.shape)
        let norm = scratch(count: D)
        let gv = g.value, vv = v.value, dg = g.grad, dv = v.grad
        record(parameters: [g, v], inputs: [], forward: {
            weightNormForward(out: w.data, norm: norm, g: gv, v: vv, outer: outer, D: D, inner: inner)
        }, backward: {
            weightNormBackward(dg: dg, dv: dv, dout: w.grad!, g: gv, v: vv, norm: norm, outer: outer, D: D, inner: inner)
        })
        return w
    }

    /// nn.GroupNorm(num_groups: C, num_channels: C) (one group per channel, wav2vec2's first feature-encoder layer)
    /// on channels-last x (B, T, C): each (b, c) normalised over its T values (biased variance), then * weight[c] + bias[c].
    public func channelNormOverTime(_ x: Tensor, weight: Parameter, bias: Parameter, eps: Float) -> Tensor {
        precondition(x.shape.dims.count == 3 && x.shape[2] == weight.count && bias.count == weight.count,
                     "group norm \(weight.name) \(weight.shape): input \(x.shape) is not (B, T, \(weight.count))")
        let B = x.shape[0], T = x.shape[1], C = x.shape[2]
        let y = tensor(x.shape)
        let mean = scratch(count: B * C), rstd = scratch(count: B * C)
        let w = weight.value, b = bias.value, dw = weight.grad, db = bias.grad
        record(parameters: [weight, bias], inputs: [x], forward: {
            channelNormOverTimeForward(out: y.data, mean: mean, rstd: rstd, inp: x.data, weight: w, bias: b,
                                       B: B, T: T, C: C, eps: eps)
        }, backward: {
            channelNormOverTimeBackward(dinp: x.grad, dweight: dw, dbias: db, dout: y.grad!, inp: x.data, weight: w,
                                        mean: mean, rstd: rstd, B: B, T: T, C: C)
        })
        return y
    }

    /// PyTorch's nn.Conv2d (zero padding, no dilation, one group) on channels-last images: x (B, H, W, CIn),
    /// weight (COut, CIn, KH, KW) in PyTorch's layout, bias (COut) or nil; y (B, HOut, WOut, COut) with
    /// HOut = (H + 2 padding - KH)/stride + 1 and WOut likewise (`conv2dForward`).
    public func conv2d(_ x: Tensor, weight: Parameter, bias: Parameter?, stride: Int = 1, padding: Int = 0) -> Tensor {
        precondition(x.shape.rank == 4 && weight.shape.rank == 4,
                     "conv2d \(weight.name): input \(x.shape) must be (B, H, W, CIn) and weight \(weight.shape) (COut, CIn, KH, KW)")
        let B = x.shape[0], H = x.shape[1], W = x.shape[2], CIn = x.shape[3]
        let COut = weight.shape[0], KH = weight.shape[2], KW = weight.shape[3]
        precondition(weight.shape[1] == CIn, "conv2d \(weight.name): weight \(weight.shape) does not fit input \(x.shape)")
        precondition(bias.map { $0.count == COut } ?? true, "conv2d \(weight.name): bias \(bias!.shape) is not (\(COut))")
        precondition(stride > 0 && padding >= 0 && H + 2 * padding >= KH && W + 2 * padding >= KW,
                     "conv2d \(weight.name): kernel \(KH)x\(KW) with stride \(stride) and padding \(padding) does not fit input \(x.shape)")
        let (HOut, WOut) = conv2dOutputSize(H: H, W: W, KH: KH, KW: KW, stride: stride, padding: padding)
        let y = tensor(Shape(B, HOut, WOut, COut))
        reserveWorkspace(count: conv2dScratchCount(B: B, H: H, W: W, CIn: CIn, COut: COut, KH: KH, KW: KW,
                                                   stride: stride, padding: padding))
        let w = weight.value, dw = weight.grad, b = bias?.value, db = bias?.grad
        let precision = precision
        record(parameters: bias.map { [weight, $0] } ?? [weight], inputs: [x], forward: { [unowned self] in
            conv2dForward(out: y.data, inp: x.data, weight: w, bias: b, B: B, H: H, W: W, CIn: CIn, COut: COut,
                          KH: KH, KW: KW, stride: stride, padding: padding, scratch: workspace, precision: precision)
        }, backward: { [unowned self] in
            conv2dBackward(dinp: x.grad, dweight: dw, dbias: db, dout: y.grad!, inp: x.data, weight: w, B: B, H: H,
                           W: W, CIn: CIn, COut: COut, KH: KH, KW: KW, stride: stride, padding: padding,
                           scratch: workspace, precision: precision)
        })
        return y
    }

    /// PyTorch's nn.Upsample(scale_factor: 2, mode: "nearest") on channels-last images: x (B, H, W, C) ->
    /// (B, 2H, 2W, C), every pixel copied to its 2 x 2 children.
    public func upsampleNearest2x(_ x: Tensor) -> Tensor {
        precondition(x.shape.rank == 4, "upsampleNearest2x: input \(x.shape) is not (B, H, W, C)")
        let B = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
        let y = tensor(Shape(B, 2 * H, 2 * W, C))
        record(inputs: [x], forward: {
            upsampleNearest2xForward(out: y.data, inp: x.data, B: B, H: H, W: W, C: C)
        }, backward: {
            if let dx = x.grad { upsampleNearest2xBackward(dinp: dx, dout: y.grad!, B: B, H: H, W: W, C: C) }
        })
        return y
    }
}
