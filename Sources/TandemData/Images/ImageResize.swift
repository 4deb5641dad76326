/// Pillow's resampling (`Image.resize`, libImaging/Resample.c), reimplemented: a separable convolution,
/// horizontal pass then vertical, each output pixel a normalised weighted sum of the input pixels under a
/// filter whose support is stretched by the scale factor when downsampling (so downsampling averages, it
/// does not alias), weights rounded to 22-bit fixed point and the intermediate image rounded to u8.
public enum PillowResample {
    /// Fractional bits of the fixed-point weights (Pillow: 32 - 8 - 2).
    static let precisionBits = 22

    /// The triangle filter of `Image.BILINEAR`, support 1.
    @inline(__always) static func bilinear(_ x: Double) -> Double {
        let x = abs(x)
        return x < 1 ? 1 - x : 0
    }

    /// For each of `outSize` outputs over input `0..<inSize`: the first input index and the fixed-point
    /// weights of the inputs it reads.
    static func coefficients(inSize: Int, outSize: Int) -> [(first: Int, weights: [Int32])] {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1)
        let support = 1.0 * filterScale
        let inverseScale = 1 / filterScale
        var out: [(Int, [Int32])] = []
        out.reserveCapacity(outSize)
        for x in 0..<outSize {
            let center = (Double(x) + 0.5) * scale
            let first = max(Int(center - support + 0.5), 0)
            let last = min(Int(center + support + 0.5), inSize)
            var weights = (first..<last).map { bilinear((Double($0) - center + 0.5) * inverseScale) }
            let total = weights.reduce(0, +)
            if total != 0 { weights = weights.map { $0 / total } }
            let one = Double(1 << precisionBits)
            out.append((first, weights.map { Int32($0 < 0 ? $0 * one - 0.5 : $0 * one + 0.5) }))
        }
        return out
    }

    @inline(__always) static func clip8(_ v: Int) -> UInt8 {
        let shifted = v >> precisionBits
        return shifted < 0 ? 0 : shifted > 255 ? 255 : UInt8(shifted)
    }

    /// Resizes `height` x `width` x `channels` u8 HWC pixels to `outHeight` x `outWidth` with Pillow's
    /// BILINEAR filter (antialiased when downsampling), bit-exact with `Image.resize(..., BILINEAR)`.
    public static func resizeBilinear(_ pixels: [UInt8], width: Int, height: Int, channels: Int,
                                      outWidth: Int, outHeight: Int) -> [UInt8] {
        precondition(pixels.count == width * height * channels && outWidth > 0 && outHeight > 0)
        var current = pixels
        let half = 1 << (precisionBits - 1)
        let C = channels
        if outWidth != width {
            let coeffs = coefficients(inSize: width, outSize: outWidth)
            var next = [UInt8](repeating: 0, count: outWidth * height * C)
            var acc = [Int](repeating: 0, count: C)
            current.withUnsafeBufferPointer { src in
                next.withUnsafeMutableBufferPointer { dst in
                    acc.withUnsafeMutableBufferPointer { acc in
                        for y in 0..<height {
                            let row = src.baseAddress! + y * width * C            // (W, C)
                            let out = dst.baseAddress! + y * outWidth * C          // (outW, C)
                            for x in 0..<outWidth {
                                let (first, weights) = coeffs[x]
                                for c in 0..<C { acc[c] = half }
                                weights.withUnsafeBufferPointer { k in
                                    var p = row + first * C
                                    for j in 0..<k.count {
                                        let kj = Int(k[j])
                                        for c in 0..<C { acc[c] += Int(p[c]) * kj }
                                        p += C
                                    }
                                }
                                for c in 0..<C { out[x * C + c] = clip8(acc[c]) }
                            }
                        }
                    }
                }
            }
            current = next
        }
        if outHeight != height {
            let coeffs = coefficients(inSize: height, outSize: outHeight)
            let rowBytes = outWidth * C
            var next = [UInt8](repeating: 0, count: outHeight * rowBytes)
            var acc = [Int](repeating: 0, count: rowBytes)
            current.withUnsafeBufferPointer { src in
                next.withUnsafeMutableBufferPointer { dst in
                    acc.withUnsafeMutableBufferPointer { acc in
                        for y in 0..<outHeight {
                            let (first, weights) = coeffs[y]
                            for i in 0..<rowBytes { acc[i] = half }
                            for (j, k) in weights.enumerated() {
                                let row = src.baseAddress! + (first + j) * rowBytes
                                let kj = Int(k)
                                for i in 0..<rowBytes { acc[i] += Int(row[i]) * kj }
                            }
                            let out = dst.baseAddress! + y * rowBytes
                            for i in 0..<rowBytes { out[i] = clip8(acc[i]) }
                        }
                    }
                }
            }
            current = next
        }
        return current
    }

    /// torchvision's `Resize(size)` then `CenterCrop(size)` on a PIL image: the shorter side becomes `size`
    /// (the longer `Int(size * long / short)`) with BILINEAR, then the centred `size` x `size` square is cut
    /// out (offsets `round((side - size) / 2)`, ties to even as Python's round). Writes size x size x channels.
    public static func resizeShorterSideAndCenterCrop(_ pixels: [UInt8], width: Int, height: Int, channels: Int,
                                                      size: Int, into out: UnsafeMutablePointer<UInt8>) {
        let (newWidth, newHeight) = width <= height
            ? (size, Int(Double(size) * Double(height) / Double(width)))
            : (Int(Double(size) * Double(width) / Double(height)), size)
        let resized = resizeBilinear(pixels, width: width, height: height, channels: channels, outWidth: newWidth, outHeight: newHeight)
        let top = Int((Double(newHeight - size) / 2).rounded(.toNearestOrEven))
        let left = Int((Double(newWidth - size) / 2).rounded(.toNearestOrEven))
        resized.withUnsafeBufferPointer { r in
            for y in 0..<size {
                (out + y * size * channels).update(from: r.baseAddress! + ((top + y) * newWidth + left) * channels, count: size * channels)
            }
        }
    }
}
