import TandemKernels

// Losses, each returning a scalar tensor, and their weighted sum.

extension Tape {
    /// Mean softmax cross-entropy of `logits` (N, V) against `targets` (N), ignoring `ignoreIndex` and
    /// with optional label smoothing (PyTorch's CrossEntropyLoss), which an `evaluation` replay leaves out.
    /// Returns a scalar tensor.
    public func crossEntropy(_ logits: Tensor, targets: UnsafeMutablePointer<Int32>, ignoreIndex: Int32 = -100,
                             labelSmoothing: Float = 0) -> Tensor {
        let V = logits.shape[-1], N = logits.count / V
        let loss = tensor(Shape(1))
        let losses = scratch(count: N)
        let probs = scratch(count: N * V)
        record(inputs: [logits], forward: { [unowned self] in
            loss.data[0] = crossEntropyForward(losses: losses, probs: probs, logits: logits.data, targets: targets,
                                               N: N, V: V, ignoreIndex: ignoreIndex,
                                               labelSmoothing: evaluation ? 0 : labelSmoothing)
        }, backward: { [unowned self] in
            crossEntropyBackward(dlogits: logits.grad!, probs: probs, targets: targets, N: N, V: V, ignoreIndex: ignoreIndex,
                                 labelSmoothing: evaluation ? 0 : labelSmoothing, dloss: loss.grad![0])
        })
        return loss
    }

    /// Mean cross-entropy of `logits` (N, V) against soft targets (N, V), each row a distribution (mixup,
    /// cutmix, label smoothing): loss = -(1/N) Σ_n Σ_v t[n, v] log softmax(logits[n])[v] (timm's
    /// SoftTargetCrossEntropy). The targets get no gradient. Returns a scalar tensor.
    public func softTargetCrossEntropy(_ logits: Tensor, targets: Tensor) -> Tensor {
        let V = logits.shape[-1], N = logits.count / V
        precondition(targets.count == N * V, "softTargetCrossEntropy: logits \(logits.shape), targets \(targets.shape)")
        let loss = tensor(Shape(1))
        let probs = scratch(count: N * V)
        record(inputs: [logits], forward: {
            loss.data[0] = softTargetCrossEntropyForward(probs: probs, logits: logits.data, targets: targets.data, N: N, V: V)
        }, backward: {
            guard let dl = logits.grad else { return }
            softTargetCrossEntropyBackward(dlogits: dl, probs: probs, targets: targets.data, N: N, V: V,
                                           dloss: loss.grad![0])
        })
        return loss
    }

    /// Knowledge distillation's soft-target loss (Hinton et al. 2015) over the rows whose `rowMask` (N) is 1:
    /// τ² / n Σ KL(softmax(teacher/τ) || softmax(student/τ)) with n the number of those rows, over logits
    /// (N, V) (transformers' distiller.py `loss_ce`: `KLDivLoss(reduction="batchmean")` times τ²). The
    /// teacher's logits (from another tape, filled before this one's forward) and the mask get no gradient.
    /// Returns a scalar tensor.
    public func softKL(_ student: Tensor, teacher: Tensor, rowMask: Tensor, temperature: Float) -> Tensor {
        let V = student.shape[-1], N = student.count / V
        precondition(teacher.count == N * V && rowMask.count == N,
                     "softKL: student \(student.shape), teacher \(teacher.shape), mask \(rowMask.shape)")
        let loss = tensor(Shape(1))
        let studentProbs = scratch(count: N * V), teacherProbs = scratch(count: N * V)
        record(inputs: [student], forward: {
            loss.data[0] = softKLForward(studentProbs: studentProbs, teacherProbs: teacherProbs, student: student.data,
                                         teacher: teacher.data, rowMask: rowMask.data, N: N, V: V, temperature: temperature)
        }, backward: {
            guard let ds = student.grad else { return }
            softKLBackward(dstudent: ds, studentProbs: studentProbs, teacherProbs: teacherProbs, rowMask: rowMask.data,
                           N: N, V: V, temperature: temperature, dloss: loss.grad![0])
        })
        return loss
    }

    /// The mean of 1 - cos(student row, teacher row) over the rows (N, C) whose `rowMask` (N) is 1
    /// (PyTorch's `CosineEmbeddingLoss` with target 1, DistilBERT's hidden-state alignment `loss_cos`). The
    /// teacher's rows and the mask get no gradient. Returns a scalar tensor.
    public func cosineLoss(_ student: Tensor, teacher: Tensor, rowMask: Tensor) -> Tensor {
        let C = student.shape[-1], N = student.count / C
        precondition(teacher.count == N * C && rowMask.count == N,
                     "cosineLoss: student \(student.shape), teacher \(teacher.shape), mask \(rowMask.shape)")
        let loss = tensor(Shape(1))
        record(inputs: [student], forward: {
            loss.data[0] = cosineLossForward(student: student.data, teacher: teacher.data, rowMask: rowMask.data, N: N, C: C)
        }, backward: {
            guard let ds = student.grad else { return }
            cosineLossBackward(dstudent: ds, student: student.data, teacher: teacher.data, rowMask: rowMask.data,
                               N: N, C: C, dloss: loss.grad![0])
        })
        return loss
    }

    /// SimMIM's reconstruction loss (HF `ViTForMaskedImageModeling`): with the patch mask m (B, NP)
    /// upsampled to pixels, M (B, 1, H, W) = m repeated P x P,
    /// loss = Σ |prediction - target| M / (Σ M + 1e-5) / C over prediction and target (B, C, H, W).
    /// The target (the input pixels) gets no gradient. Returns a scalar tensor.
    public func maskedL1Loss(_ prediction: Tensor, target: Tensor, mask: Tensor, patch P: Int) -> Tensor {
        let B = prediction.shape[0], C = prediction.shape[1], H = prediction.shape[2], W = prediction.shape[3]
        precondition(target.shape == prediction.shape && H % P == 0 && W % P == 0 && mask.count == B * (H / P) * (W / P),
                     "maskedL1Loss: prediction \(prediction.shape), target \(target.shape), mask \(mask.shape), patch \(P)")
        let loss = tensor(Shape(1))
        let denominator = scratch(count: 1)
        record(inputs: [prediction], forward: {
            loss.data[0] = maskedL1Forward(denominator: denominator, prediction: prediction.data, target: target.data,
                                           mask: mask.data, B: B, C: C, H: H, W: W, P: P)
        }, backward: {
            guard let dp = prediction.grad else { return }
            maskedL1Backward(dprediction: dp, prediction: prediction.data, target: target.data, mask: mask.data,
                             denominator: denominator[0], dloss: loss.grad![0], B: B, C: C, H: H, W: W, P: P)
        })
        return loss
    }

    /// Σ w_i x_i over scalar tensors (DeiT's 0.5 cross-entropy + 0.5 distillation). Returns a scalar tensor.
    public func weightedSum(_ terms: [(Tensor, Float)]) -> Tensor {
        precondition(terms.allSatisfy { $0.0.count == 1 }, "weightedSum: terms must be scalars")
        let y = tensor(Shape(1))
        let x = terms.map { UnsafePointer($0.0.data) }, dx = terms.map(\.0.grad), w = terms.map(\.1)
        record(inputs: terms.map(\.0), forward: {
            weightedSumForward(out: y.data, inp: x, weights: w)
        }, backward: {
            weightedSumBackward(dinp: dx, dout: y.grad!, weights: w)
        })
        return y
    }
}
