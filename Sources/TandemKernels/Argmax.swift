/// The index of the largest of `x[0..<n]`, the first one on ties (as `torch.argmax` on CPU); NaNs are
/// never chosen over a number before them. Evaluation's top-1 and DeiT's hard teacher labels.
public func argmax(_ x: UnsafePointer<Float>, _ n: Int) -> Int {
    var best = 0
    for i in 1..<max(n, 1) where x[i] > x[best] { best = i }
    return best
}
