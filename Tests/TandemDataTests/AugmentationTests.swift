import XCTest
import TandemTestSupport
@testable import TandemData

final class AugmentationTests: XCTestCase {
    /// A fixed HWC test image: value (y*53 + x*29 + c*71 + (x*y % 7)*13) % 256.
    private func pattern(height H: Int, width W: Int, channels C: Int) -> [UInt8] {
        var pixels = [UInt8](repeating: 0, count: H * W * C)
        for y in 0..<H { for x in 0..<W { for c in 0..<C {
            pixels[(y * W + x) * C + c] = UInt8((y * 53 + x * 29 + c * 71 + (x * y) % 7 * 13) % 256)
        } } }
        return pixels
    }

    private func identity(_ C: Int) -> ([Float], [Float]) { ([Float](repeating: 0, count: C), [Float](repeating: 1, count: C)) }

    // MARK: - Determinism

    func testTrainViewIsAPureFunctionOfSeedEpochAndSample() {
        let H = 40, W = 36, C = 3, S = 32
        let pixels = pattern(height: H, width: W, channels: C)
        let options = AugmentationOptions(outputSize: S, mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.3])
        let a = ImageAugmenter(options: options, inputHeight: H, inputWidth: W, channels: C, seed: 7)
        let b = ImageAugmenter(options: options, inputHeight: H, inputWidth: W, channels: C, seed: 7)
        func view(_ aug: ImageAugmenter, _ epoch: Int, _ sample: Int) -> [Float] {
            var out = [Float](repeating: .nan, count: C * S * S)
            aug.train(pixels, epoch: epoch, sample: sample, into: &out)
            return out
        }
        let first = view(a, 3, 11)
        for s in 0..<5 { _ = view(a, 1, s) }   // other calls in between must not matter
        XCTAssertEqual(first, view(a, 3, 11))
        XCTAssertEqual(first, view(b, 3, 11))
        XCTAssertNotEqual(first, view(a, 4, 11))
        XCTAssertNotEqual(first, view(a, 3, 12))
        let other = ImageAugmenter(options: options, inputHeight: H, inputWidth: W, channels: C, seed: 8)
        XCTAssertNotEqual(first, view(other, 3, 11))
        XCTAssertTrue(first.allSatisfy { $0.isFinite })
    }

    // MARK: - Eval and resampling

    func testEvalAtIdentitySizeIsPlainNormalisation() {
        let H = 5, W = 5, C = 3
        let pixels = pattern(height: H, width: W, channels: C)
        let mean: [Float] = [0.4914, 0.4822, 0.4465], std: [Float] = [0.2470, 0.2435, 0.2616]
        let aug = ImageAugmenter(options: AugmentationOptions(outputSize: 5, mean: mean, std: std),
                                 inputHeight: H, inputWidth: W, channels: C, seed: 0)
        var out = [Float](repeating: .nan, count: C * H * W)
        aug.eval(pixels, into: &out)
        for c in 0..<C { for y in 0..<H { for x in 0..<W {
            XCTAssertEqual(out[(c * H + y) * W + x], (Float(pixels[(y * W + x) * C + c]) / 255 - mean[c]) / std[c])
        } } }
        // The resampling path at scale 1 has weights exactly 1 and 0; its fused normalisation
        // v * (1 / (255 std)) - mean / std differs from the formula by rounding only.
        var viaResample = [Float](repeating: .nan, count: C * H * W)
        aug.render(pixels, box: (0, 0, H, W), flip: false, into: &viaResample)
        assertClose(viaResample, out, atol: 1e-6, rtol: 1e-6)
    }

    func testDownscaleTwoToOneUsesThePillowTriangleOfHalfWidthTwo() {
        // 4x4 -> 2x2: output 0 is centred at 1.0 with weights tri((x + 0.5 - 1) / 2) = 3/4, 3/4, 1/4 on
        // x = 0, 1, 2 (normalised 3/7, 3/7, 1/7); not a 2x2 box average. torch's antialias=True agrees:
        // interpolate(arange(16).view(1,1,4,4), (2,2), bilinear, antialias=True) = [[3.5714, 5.1429], [9.8571, 11.4286]].
        let pixels = (0..<16).map { UInt8($0) }
        let (mean, std) = identity(1)
        let aug = ImageAugmenter(options: AugmentationOptions(outputSize: 2, mean: mean, std: std),
                                 inputHeight: 4, inputWidth: 4, channels: 1, seed: 0)
        var out = [Float](repeating: .nan, count: 4)
        aug.eval(pixels, into: &out)
        let w0: [Float] = [3.0 / 7, 3.0 / 7, 1.0 / 7, 0], w1: [Float] = [0, 1.0 / 7, 3.0 / 7, 3.0 / 7]
        let ws = [w0, w1]
        for oy in 0..<2 { for ox in 0..<2 {
            var expected: Float = 0
            for y in 0..<4 { for x in 0..<4 { expected += ws[oy][y] * ws[ox][x] * Float(4 * y + x) } }
            XCTAssertEqual(out[oy * 2 + ox] * 255, expected, accuracy: 1e-4)
        } }
        assertClose(out.map { $0 * 255 }, [3.5714, 5.1429, 9.8571, 11.4286], atol: 1e-3, rtol: 0)
    }

    func testUpscalingAConstantImageStaysConstant() {
        let C = 3, S = 13
        let pixels = [UInt8](repeating: 200, count: 3 * 5 * C)
        let (mean, std) = identity(C)
        let aug = ImageAugmenter(options: AugmentationOptions(outputSize: S, mean: mean, std: std),
                                 inputHeight: 3, inputWidth: 5, channels: C, seed: 0)
        var out = [Float](repeating: .nan, count: C * S * S)
        aug.eval(pixels, into: &out)
        for v in out { XCTAssertEqual(v * 255, 200, accuracy: 1e-3) }
        aug.train(pixels, epoch: 0, sample: 0, into: &out)
        for v in out { XCTAssertEqual(v * 255, 200, accuracy: 1e-3) }
    }

    /// Expected outputs from PyTorch 2.15: `F.interpolate(crop, size=(S, S), mode="bilinear",
    /// antialias=True, align_corners=False)` on the float CHW crop of `pattern(9, 7, 3)`.
    /// Measured max |difference| of ours against torch in float64: 2.8e-5 pixel units on these cases (and
    /// below 4.2e-5 on random 64x48x3 crops to 23, 50 and 37); the literals are rounded to 4 decimals.
    func testResampleMatchesTorchAntialiasedBilinear() {
        let H = 9, W = 7, C = 3
        let pixels = pattern(height: H, width: W, channels: C)
        let (mean, std) = identity(C)
        let cases: [(box: (Int, Int, Int, Int), S: Int, expected: [Float])] = [
            ((0, 0, 9, 7), 4, [64.7469, 112.3029, 140.1954, 90.2585, 146.7514, 93.1971, 102.9492, 105.1579, 94.9744, 119.9122, 171.5239, 192.4378, 149.1102, 180.6172, 147.6731, 113.7238, 133.3088, 156.6789, 127.5200, 153.5959, 139.5540, 107.2527, 123.9980, 165.7514, 130.5923, 129.4722, 82.4302, 87.7166, 172.3932, 111.4754, 79.7017, 128.2993, 177.1415, 129.6674, 99.3383, 129.5102, 124.6260, 149.5307, 178.5141, 127.6318, 150.1544, 173.2488, 142.1912, 101.9268, 61.9293, 93.2411, 131.6846, 108.7415]),
            ((1, 2, 3, 4), 5, [137.0000, 166.4000, 200.0000, 156.8000, 7.0000, 168.6000, 129.9600, 170.0000, 163.9600, 17.8000, 216.0000, 75.3000, 125.0000, 174.7000, 34.0000, 109.8000, 43.8600, 80.0000, 116.1400, 50.2000, 39.0000, 22.9000, 50.0000, 77.1000, 61.0000, 208.0000, 237.4000, 143.0000, 48.6000, 78.0000, 137.2000, 170.2400, 113.0000, 55.7600, 88.8000, 31.0000, 69.5000, 68.0000, 66.5000, 105.0000, 78.4000, 84.1400, 99.8000, 115.4600, 121.2000, 110.0000, 93.9000, 121.0000, 148.1000, 132.0000, 23.0000, 52.4000, 86.0000, 119.6000, 149.0000, 54.6000, 87.6400, 107.2000, 126.7600, 159.8000, 102.0000, 140.5000, 139.0000, 137.5000, 176.0000, 149.4000, 155.1400, 170.8000, 186.4600, 192.2000, 181.0000, 164.9000, 192.0000, 219.1000, 203.0000]),
            ((2, 1, 6, 3), 4, [185.7500, 163.1719, 99.2812, 15.3750, 107.6667, 65.2361, 53.9028, 77.4444, 117.6667, 121.3472, 129.5556, 139.5556, 153.3750, 168.4531, 186.5469, 201.6250, 160.7500, 98.1719, 70.2812, 86.3750, 93.3333, 104.2361, 124.9028, 148.4445, 188.6667, 139.0139, 115.2222, 125.2222, 224.3750, 179.4531, 101.5469, 16.6250, 71.7500, 109.1719, 141.2812, 157.3750, 164.3333, 175.2361, 195.9028, 219.4445, 174.3333, 178.0139, 186.2222, 196.2222, 39.3750, 54.4531, 72.5469, 87.6250]),
        ]
        for (box, S, expected) in cases {
            let aug = ImageAugmenter(options: AugmentationOptions(outputSize: S, mean: mean, std: std),
                                     inputHeight: H, inputWidth: W, channels: C, seed: 0)
            var out = [Float](repeating: .nan, count: C * S * S)
            aug.render(pixels, box: box, flip: false, into: &out)
            assertClose(out.map { $0 * 255 }, expected, atol: 2e-3, rtol: 0, "box \(box) -> \(S)")
            if box == (0, 0, 9, 7) {
                var viaEval = [Float](repeating: .nan, count: C * S * S)
                aug.eval(pixels, into: &viaEval)
                XCTAssertEqual(viaEval, out)
            }
        }
    }

    // MARK: - Crop and flip draws

    func testCropBoxesStayInsideTheImageAndFollowTheRequestedDistributions() {
        let H = 1000, W = 1000, n = 20_000
        let (mean, std) = identity(1)
        // Every first attempt fits (largest side sqrt(0.5 * 1.25) * 1000 < 1000): the draws are the raw distributions.
        let options = AugmentationOptions(outputSize: 8, scaleMin: 0.1, scaleMax: 0.5, ratioMin: 0.8, ratioMax: 1.25, mean: mean, std: std)
        let aug = ImageAugmenter(options: options, inputHeight: H, inputWidth: W, channels: 1, seed: 3)
        var areaSum = 0.0, below02 = 0, logRatioSum = 0.0, wide = 0, topSum = 0.0
        for s in 0..<n {
            let box = aug.cropBox(epoch: 2, sample: s)
            XCTAssertTrue(box.top >= 0 && box.left >= 0 && box.top + box.height <= H && box.left + box.width <= W)
            let area = Double(box.height * box.width) / Double(H * W)
            let ratio = Double(box.width) / Double(box.height)
            // w and h are rounded: allow half a pixel either way.
            let slack = 1 / Double(min(box.height, box.width))
            XCTAssertTrue(area > 0.1 * (1 - slack) && area < 0.5 * (1 + slack), "area \(area)")
            XCTAssertTrue(ratio > 0.8 * (1 - slack) && ratio < 1.25 * (1 + slack), "ratio \(ratio)")
            areaSum += area
            if area < 0.2 { below02 += 1 }
            logRatioSum += log(ratio)
            if ratio > 1 { wide += 1 }
            topSum += Double(box.top) / Double(H - box.height)
        }
        XCTAssertEqual(areaSum / Double(n), 0.3, accuracy: 0.005)
        XCTAssertEqual(Double(below02) / Double(n), 0.25, accuracy: 0.015)
        XCTAssertEqual(logRatioSum / Double(n), 0, accuracy: 0.005)
        XCTAssertEqual(Double(wide) / Double(n), 0.5, accuracy: 0.015)
        XCTAssertEqual(topSum / Double(n), 0.5, accuracy: 0.01)

        // Small images with the default ranges: always inside, area and ratio in range up to rounding.
        let small = ImageAugmenter(options: AugmentationOptions(outputSize: 32, mean: [0, 0, 0], std: [1, 1, 1]),
                                   inputHeight: 32, inputWidth: 32, channels: 3, seed: 3)
        for s in 0..<5000 {
            let box = small.cropBox(epoch: 0, sample: s)
            XCTAssertTrue(box.top >= 0 && box.left >= 0 && box.height > 0 && box.width > 0
                          && box.top + box.height <= 32 && box.left + box.width <= 32)
        }
    }

    func testCropFallsBackToTheCentreCropClampedToTheRatioRange() {
        // A 10 x 40 image (ratio 4) with scale 1 never fits a crop of ratio <= 4/3: torchvision's fallback
        // keeps the full height and w = round(10 * 4/3) = 13, centred.
        let aug = ImageAugmenter(options: AugmentationOptions(outputSize: 8, scaleMin: 1, scaleMax: 1, mean: [0], std: [1]),
                                 inputHeight: 10, inputWidth: 40, channels: 1, seed: 1)
        for s in 0..<20 {
            let box = aug.cropBox(epoch: 0, sample: s)
            XCTAssertTrue(box == (0, 13, 10, 13), "\(box)")
        }
    }

    func testHorizontalFlipHappensHalfTheTimeAndMirrorsTheView() {
        let (mean, std) = identity(3)
        let aug = ImageAugmenter(options: AugmentationOptions(outputSize: 6, mean: mean, std: std),
                                 inputHeight: 9, inputWidth: 7, channels: 3, seed: 5)
        var flips = 0
        let n = 20_000
        for s in 0..<n where aug.flips(epoch: 1, sample: s) { flips += 1 }
        XCTAssertEqual(Double(flips) / Double(n), 0.5, accuracy: 0.015)

        let pixels = pattern(height: 9, width: 7, channels: 3)
        var plain = [Float](repeating: .nan, count: 3 * 36), mirrored = plain
        aug.render(pixels, box: (1, 1, 7, 5), flip: false, into: &plain)
        aug.render(pixels, box: (1, 1, 7, 5), flip: true, into: &mirrored)
        for c in 0..<3 { for y in 0..<6 { for x in 0..<6 {
            XCTAssertEqual(mirrored[(c * 6 + y) * 6 + x], plain[(c * 6 + y) * 6 + 5 - x])
        } } }

        // With flipping off, no view is mirrored: train equals render of the drawn box.
        let still = ImageAugmenter(options: AugmentationOptions(outputSize: 6, horizontalFlip: false, mean: mean, std: std),
                                   inputHeight: 9, inputWidth: 7, channels: 3, seed: 5)
        for s in 0..<8 {
            var a = [Float](repeating: .nan, count: 3 * 36), b = a
            still.train(pixels, epoch: 0, sample: s, into: &a)
            still.render(pixels, box: still.cropBox(epoch: 0, sample: s), flip: false, into: &b)
            XCTAssertEqual(a, b)
        }
    }

    func testTrainWithoutCropIsTheEvalViewOrItsMirror() {
        let (mean, std) = identity(3)
        let aug = ImageAugmenter(options: AugmentationOptions(outputSize: 5, randomResizedCrop: false, mean: mean, std: std),
                                 inputHeight: 9, inputWidth: 7, channels: 3, seed: 2)
        let pixels = pattern(height: 9, width: 7, channels: 3)
        var evalView = [Float](repeating: .nan, count: 3 * 25)
        aug.eval(pixels, into: &evalView)
        var seen = Set<Bool>()
        for s in 0..<16 {
            var view = [Float](repeating: .nan, count: 3 * 25)
            aug.train(pixels, epoch: 0, sample: s, into: &view)
            let flip = aug.flips(epoch: 0, sample: s)
            seen.insert(flip)
            for c in 0..<3 { for y in 0..<5 { for x in 0..<5 {
                XCTAssertEqual(view[(c * 5 + y) * 5 + x], evalView[(c * 5 + y) * 5 + (flip ? 4 - x : x)])
            } } }
        }
        XCTAssertEqual(seen, [false, true])
    }

    // MARK: - Mixing

    func testBetaAndGammaMoments() {
        let rng = Philox(seed: 11)
        let n = 20_000
        for alpha in [0.8, 1.0, 0.2] {
            var sum = 0.0, sq = 0.0
            for i in 0..<n {
                let x = BatchMixer.beta(alpha, rng: rng, stream: BatchMixer.mixStream, step: 0, index: UInt64(i) << 32)
                XCTAssertTrue(x >= 0 && x <= 1)
                sum += x; sq += x * x
            }
            let mean = sum / Double(n), variance = sq / Double(n) - mean * mean
            XCTAssertEqual(mean, 0.5, accuracy: 0.012, "Beta(\(alpha)) mean")
            XCTAssertEqual(variance, 1 / (4 * (2 * alpha + 1)), accuracy: 0.004, "Beta(\(alpha)) variance")
        }
        for alpha in [0.5, 3.0] {
            var sum = 0.0, sq = 0.0
            for i in 0..<n {
                let x = BatchMixer.gamma(alpha, rng: rng, stream: 99, step: 1, index: UInt64(i) << 32)
                sum += x; sq += x * x
            }
            let mean = sum / Double(n), variance = sq / Double(n) - mean * mean
            XCTAssertEqual(mean, alpha, accuracy: 0.05 * alpha, "Gamma(\(alpha)) mean")
            XCTAssertEqual(variance, alpha, accuracy: 0.08 * alpha, "Gamma(\(alpha)) variance")
        }
    }

    /// A (B, C, S, S) batch where every pixel of sample b is b + 1, labels b % K.
    private func constantBatch(B: Int, C: Int, S: Int) -> [Float] {
        (0..<B * C * S * S).map { Float($0 / (C * S * S) + 1) }
    }

    func testMixupMixesEachSampleWithItsReverseAndTargetsFollowTheFormula() {
        let B = 5, C = 2, S = 4, K = 7, eps: Float = 0.1
        let mixer = BatchMixer(options: MixingOptions(mixupAlpha: 0.8, labelSmoothing: eps), classes: K, channels: C, size: S, seed: 3)
        let labels: [Int32] = [0, 3, 6, 3, 1]
        var pixels = constantBatch(B: B, C: C, S: S)
        let original = pixels
        var targets = [Float](repeating: .nan, count: B * K)
        mixer.mix(pixels: &pixels, labels: labels, batch: B, epoch: 2, batchIndex: 9, targets: &targets)
        let lam = mixer.draw(epoch: 2, batchIndex: 9).lambda
        XCTAssertNil(mixer.draw(epoch: 2, batchIndex: 9).box)
        XCTAssertTrue(lam > 0 && lam < 1)
        let sample = C * S * S
        for b in 0..<B {
            for i in 0..<sample {
                let expected = lam * original[b * sample + i] + (1 - lam) * original[(B - 1 - b) * sample + i]
                XCTAssertEqual(pixels[b * sample + i], expected, accuracy: 1e-5)
            }
            let row = targets[b * K..<(b + 1) * K]
            XCTAssertEqual(row.reduce(0, +), 1, accuracy: 1e-5)
            for k in 0..<K {
                func smoothed(_ y: Int32) -> Float { k == Int(y) ? 1 - eps + eps / Float(K) : eps / Float(K) }
                XCTAssertEqual(targets[b * K + k], lam * smoothed(labels[b]) + (1 - lam) * smoothed(labels[B - 1 - b]), accuracy: 1e-6)
            }
        }
        // Same (seed, epoch, batch index): same result; another batch index: another lambda.
        var again = original, targets2 = targets
        mixer.mix(pixels: &again, labels: labels, batch: B, epoch: 2, batchIndex: 9, targets: &targets2)
        XCTAssertEqual(again, pixels)
        XCTAssertEqual(targets2, targets)
        XCTAssertNotEqual(mixer.draw(epoch: 2, batchIndex: 10).lambda, lam)
    }

    func testCutmixLambdaEqualsThePastedArea() {
        let B = 4, C = 3, S = 16, K = 10
        let mixer = BatchMixer(options: MixingOptions(cutmixAlpha: 1), classes: K, channels: C, size: S, seed: 4)
        let labels: [Int32] = [1, 2, 3, 4]
        var boxes = 0
        for batchIndex in 0..<50 {
            var pixels = constantBatch(B: B, C: C, S: S)
            var targets = [Float](repeating: .nan, count: B * K)
            mixer.mix(pixels: &pixels, labels: labels, batch: B, epoch: 0, batchIndex: batchIndex, targets: &targets)
            let draw = mixer.draw(epoch: 0, batchIndex: batchIndex)
            XCTAssertNotNil(draw.box)
            for b in 0..<B {
                let own = Float(b + 1), partner = Float(B - b)
                let plane = pixels[b * C * S * S..<(b + 1) * C * S * S]
                let pasted = plane.filter { $0 == partner }.count
                XCTAssertEqual(pasted + plane.filter { $0 == own }.count, C * S * S)
                let lam = Float(1) - Float(pasted) / Float(C * S * S)
                XCTAssertEqual(draw.lambda, lam, accuracy: 1e-6)
                XCTAssertEqual(targets[b * K + Int(labels[b])], lam, accuracy: 1e-6)
                XCTAssertEqual(targets[b * K + Int(labels[B - 1 - b])], 1 - lam, accuracy: 1e-6)
            }
            if draw.lambda < 1 { boxes += 1 }
        }
        XCTAssertGreaterThan(boxes, 40)
    }

    func testSwitchProbabilityChoosesCutmixAboutThatOften() {
        let mixer = BatchMixer(options: MixingOptions(mixupAlpha: 0.8, cutmixAlpha: 1, switchProbability: 0.3),
                               classes: 2, channels: 1, size: 8, seed: 5)
        let n = 4000
        let cutmix = (0..<n).filter { mixer.draw(epoch: 1, batchIndex: $0).box != nil }.count
        XCTAssertEqual(Double(cutmix) / Double(n), 0.3, accuracy: 0.03)
    }

    func testLabelSmoothingAloneWritesSmoothedOneHotsAndLeavesPixels() {
        let B = 3, K = 5, eps: Float = 0.2
        let options = MixingOptions(labelSmoothing: eps)
        XCTAssertFalse(options.isActive)
        let mixer = BatchMixer(options: options, classes: K, channels: 1, size: 2, seed: 0)
        var pixels = constantBatch(B: B, C: 1, S: 2)
        let original = pixels
        var targets = [Float](repeating: .nan, count: B * K)
        mixer.mix(pixels: &pixels, labels: [4, 0, 2], batch: B, epoch: 0, batchIndex: 0, targets: &targets)
        XCTAssertEqual(pixels, original)
        let on = 1 - eps + eps / Float(K), off = eps / Float(K)
        let expected: [Float] = [off, off, off, off, on, on, off, off, off, off, off, off, on, off, off]
        assertClose(targets, expected, atol: 1e-6, rtol: 0)
    }
}
