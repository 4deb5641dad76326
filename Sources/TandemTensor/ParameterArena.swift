/// How a parameter's values start before training (or before a checkpoint overwrites them).
public enum ParameterInit: Sendable, Equatable {
    case zeros
    case ones
    /// Normal(0, std) truncated to ±2 std, as BERT's and ViT's `initializer_range`.
    case truncatedNormal(std: Float)
    /// Normal(0, std).
    case normal(std: Float)
    /// Uniform(-bound, bound), as PyTorch's default Linear/Conv init with bound 1/sqrt(fan_in).
    case uniform(bound: Float)
}

/// A named slice of the parameter arena. Offsets are in Float elements; the gradient of the parameter
/// lives at the same offset of the gradient buffer.
public final class Parameter: CustomStringConvertible {
    /// The registration name, e.g. `encoder.layer.0.attention.self.query.weight`.
    public let name: String
    public let shape: Shape
    public let offset: Int
    public let initializer: ParameterInit
    /// False for LayerNorm weights and biases: the optimizers' weight decay skips them (BERT, AdamW paper).
    public let decays: Bool
    /// Position in registration order.
    public let index: Int
    unowned let arena: ParameterArena

    init(name: String, shape: Shape, offset: Int, initializer: ParameterInit, decays: Bool, index: Int,
         arena: ParameterArena) {
        self.name = name; self.shape = shape; self.offset = offset
        self.initializer = initializer; self.decays = decays; self.index = index; self.arena = arena
    }

    public var count: Int { shape.count }
    /// The parameter's values (row-major, `shape`).
    public var value: UnsafeMutablePointer<Float> { arena.values.baseAddress! + offset }
    /// The parameter's gradient, same layout as `value`.
    public var grad: UnsafeMutablePointer<Float> { arena.grads.baseAddress! + offset }
    public var values: UnsafeMutableBufferPointer<Float> { .init(start: value, count: count) }
    public var grads: UnsafeMutableBufferPointer<Float> { .init(start: grad, count: count) }
    public var description: String { "\(name) \(shape)" }
}

/// All parameters of a model in one contiguous Float32 buffer and all gradients in a second one with the
/// same offsets, in registration order (llm.c's `params_memory` / `grads_memory`). The optimizer,
/// gradient buckets and checkpoints work on slices of these two buffers.
///
/// Registration happens while the model is built; the buffers grow by doubling until `seal()` fixes the
/// size, after which no parameter can be added and `values`/`grads` never move again.
public final class ParameterArena {
    public private(set) var parameters: [Parameter] = []
    private var byName: [String: Parameter] = [:]
    public private(set) var count = 0
    public private(set) var isSealed = false
    public private(set) var values: UnsafeMutableBufferPointer<Float>
    public private(set) var grads: UnsafeMutableBufferPointer<Float>
    /// True once sealed: `values` and `grads` then each sit in page-aligned mappings of their own
    /// (`AlignedMemory.allocatePages`), which other ranks of a node can share in place whatever their size.
    public var buffersOwnPages: Bool { isSealed }

    public init() {
        values = .init(start: AlignedMemory.allocate(Float.self, count: 0), count: 0)
        grads = .init(start: AlignedMemory.allocate(Float.self, count: 0), count: 0)
    }

    deinit {
        if isSealed {
            AlignedMemory.deallocatePages(values.baseAddress!, count: values.count)
            AlignedMemory.deallocatePages(grads.baseAddress!, count: grads.count)
        } else {
            AlignedMemory.deallocate(values.baseAddress!)
            AlignedMemory.deallocate(grads.baseAddress!)
        }
    }

    /// Registers a parameter at the end of the arena and initialises it from `rng` (stream = its index).
    /// Offsets are padded to 16 floats (64 bytes) so every parameter starts on a cache line.
    @discardableResult
    public func register(_ name: String, _ shape: Shape, initializer: ParameterInit, decays: Bool = true,
                         rng: Philox = Philox(seed: 0)) -> Parameter {
        precondition(!isSealed, "parameter \(name) registered after the arena was sealed")
        precondition(byName[name] == nil, "parameter \(name) registered twice")
        let offset = (count + 15) / 16 * 16
        let p = Parameter(name: name, shape: shape, offset: offset, initializer: initializer, decays: decays,
                          index: parameters.count, arena: self)
        reserve(offset + shape.count)
        count = offset + shape.count
        parameters.append(p)
        byName[name] = p
        initialize(p, rng: rng)
        return p
    }

    /// Fixes the size: from now on the buffers never move. The final buffers are page mappings of their
    /// own (see `buffersOwnPages`).
    public func seal() {
        guard !isSealed else { return }
        for keyPath in [\ParameterArena.values, \ParameterArena.grads] {
            let old = self[keyPath: keyPath]
            let new = AlignedMemory.allocatePages(Float.self, count: count)
            new.update(from: old.baseAddress!, count: count)
            AlignedMemory.deallocate(old.baseAddress!)
            self[keyPath: keyPath] = .init(start: new, count: count)
        }
        isSealed = true
    }

    public subscript(name: String) -> Parameter? { byName[name] }

    /// Number of trainable scalars (padding excluded).
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }

    public func zeroGrads() {
        grads.baseAddress!.update(repeating: 0, count: grads.count)
    }

    /// Re-draws every parameter from its initializer with the given generator.
    public func reinitialize(rng: Philox) {
        for p in parameters { initialize(p, rng: rng) }
    }

    private func initialize(_ p: Parameter, rng: Philox) {
        let out = p.values
        let stream = UInt64(p.index)
        switch p.initializer {
        case .zeros: out.update(repeating: 0)
        case .ones: out.update(repeating: 1)
        case .normal(let std):
            for i in 0..<out.count { out[i] = std * rng.normal(stream: stream, step: 0, index: UInt64(i)) }
        case .truncatedNormal(let std):
            for i in 0..<out.count {
                var k: UInt64 = 0
                var z = rng.normal(stream: stream, step: k, index: UInt64(i))
                while abs(z) > 2 { k += 1; z = rng.normal(stream: stream, step: k, index: UInt64(i)) }
                out[i] = std * z
            }
        case .uniform(let bound):
            for i in 0..<out.count {
                out[i] = bound * (2 * rng.uniform(stream: stream, step: 0, index: UInt64(i)) - 1)
            }
        }
    }

    private func reserve(_ needed: Int) {
        guard needed > values.count else { return }
        let capacity = max(needed, values.count * 2, 1024)
        for keyPath in [\ParameterArena.values, \ParameterArena.grads] {
            let old = self[keyPath: keyPath]
            let new = AlignedMemory.allocate(Float.self, count: capacity)
            new.update(from: old.baseAddress!, count: min(count, capacity))
            AlignedMemory.deallocate(old.baseAddress!)
            self[keyPath: keyPath] = .init(start: new, count: capacity)
        }
    }
}
