import TandemKernels
import TandemTestSupport

import XCTest

/// Base class of the kernel tests: frees every `Buffer` and `IntBuffer` allocated during a test when it ends.
class KernelTestCase: XCTestCase {
    override func tearDown() {
        TestMemory.releaseAll()
        super.tearDown()
    }
}

/// Test allocations live until the end of the test, not until their last use: kernels get raw pointers
/// (`Buffer(x).c`), and ARC may release an object right after its last use, before the kernel runs.
enum TestMemory {
    static var live: [UnsafeMutableRawPointer] = []

    static func allocate<T>(_ type: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        let p = UnsafeMutablePointer<T>.allocate(capacity: max(1, count))
        live.append(UnsafeMutableRawPointer(p))
        return p
    }

    static func releaseAll() {
        for p in live { p.deallocate() }
        live = []
    }
}

/// A Float buffer for calling kernels from tests without nested `withUnsafe...` closures; its memory is
/// freed when the test ends (see `TestMemory`).
final class Buffer {
    let count: Int
    let p: UnsafeMutablePointer<Float>

    init(_ values: [Float]) {
        count = values.count
        p = TestMemory.allocate(Float.self, count: values.count)
        p.initialize(from: values, count: values.count)
    }

    convenience init(zeros count: Int) { self.init([Float](repeating: 0, count: count)) }

    /// Standard normal values times `scale`, from `seed`.
    convenience init(random count: Int, seed: UInt64, scale: Float = 1) {
        self.init(GradCheck.random(count: count, seed: seed, scale: scale))
    }

    var c: UnsafePointer<Float> { UnsafePointer(p) }
    var array: [Float] { Array(UnsafeBufferPointer(start: p, count: count)) }
}

/// An Int32 buffer (token ids, targets), freed when the test ends.
final class IntBuffer {
    let p: UnsafeMutablePointer<Int32>

    init(_ values: [Int32]) {
        p = TestMemory.allocate(Int32.self, count: values.count)
        p.initialize(from: values, count: values.count)
    }

    var c: UnsafePointer<Int32> { UnsafePointer(p) }
}
