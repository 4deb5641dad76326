import TandemKernels
#if canImport(Glibc)
import Glibc
#endif

/// A tape over coarse kernels, in micrograd's spirit: every op records one closure that computes its
/// output and one that accumulates into its inputs' gradients; `backward()` replays the second kind in
/// reverse.
///
/// The graph of a training step has the same shape every step, so the tape is recorded once, when the
/// model is applied to the tape's input tensors (which allocates every activation and records the ops
/// without running them), and then replayed: the caller fills the inputs, `forward()` runs the recorded
/// forward closures in order, `backward()` the backward ones in reverse. Nothing is allocated after recording, so steady-state training does
/// no heap allocation (llm.c's fixed activation buffers, reached through a tape).
///
/// Parameter gradients live in the `ParameterArena`; the tape knows, for every parameter, the last
/// backward op that writes its gradient and calls `onGradientFinal` right after that op, which is when
/// a gradient bucket may start its all-reduce.
public final class Tape {
    /// Activation values.
    public let values: ActivationArena
    /// Activation gradients of a tape recorded op by op: each is zeroed at the start of every backward
    /// pass or stored by its first writer (`gradientWrite`). A graph recorded by `recordGraph` keeps its
    /// activation gradients in one planned block instead (`gradientBytes`).
    public let grads: ActivationArena
    /// Whether dropout is active; read by dropout ops at replay time.
    public var training = true
    /// Whether the replay measures held-out data: losses then drop their training-only terms (label
    /// smoothing), so a held-out loss is the negative log-likelihood whose exponential is the perplexity
    /// (fairseq's `nll_loss`). Read at replay time; `Trainer.evaluate` sets it with `training` false.
    public var evaluation = false
    /// The number random ops (dropout) key their draws on: the caller sets it to the global micro-step
    /// before `forward()`, so a step can be replayed exactly from its number after a resume.
    public var step: UInt64 = 0
    /// The generator random ops draw from; each op gets its own stream.
    public var rng: Philox
    /// The arithmetic of the matrix products (Linear, attention) of the ops recorded from now on: each op
    /// reads it when it is recorded and passes it to its kernels, so set it before recording (the trainer
    /// sets it from `train.precision`). Setting `.bf16` on a CPU without AVX512_BF16 stops the process with
    /// a message: check `MatmulPrecision.bf16Supported` first.
    public var precision: MatmulPrecision = .fp32 {
        didSet {
            precondition(precision == .fp32 || MatmulPrecision.bf16Supported,
                         "bf16 matrix products need a CPU with AVX512_BF16 (and AVX-512 F/BW/VL); this one has none")
        }
    }
    /// Whether tensors recorded from now on get gradient buffers. A tape that only runs forward (a
    /// distillation teacher, decoding, transcription, tokenizing) sets it false before recording and then
    /// holds no gradient memory; its ops record no gradient work, and `backward` must not be called.
    public var recordsGradients = true
    /// Fills the planned gradient block (`recordGraph`) with NaN before every backward pass: a gradient read
    /// before its planned life starts then makes the parameters' gradients NaN instead of quietly wrong.
    /// A check of the plan (`TANDEM_CHECK_GRADIENT_PLAN=1` in the trainer), not for training.
    public var poisonsGradientMemory = false
    /// Called with each parameter as soon as its gradient is final in a backward pass.
    public var onGradientFinal: ((Parameter) -> Void)?

    private var forwards: [() -> Void] = []
    private var backwards: [() -> Void] = []
    /// Per op, the name `opProfile` groups it under.
    private var opNames: [String] = []
    /// Whether `forward()` and `backward()` time every op (`opProfile`); off by default, and then they
    /// read no clock.
    public var profiling = false
    /// Per op, the seconds its forward and backward closures took while `profiling`, summed over replays;
    /// the zeroing of activation gradients counts under the op it precedes.
    private var opSeconds: [(forward: Double, backward: Double)] = []
    private var profiledPasses = 0
    /// Parameters whose gradient is final after backward op i, flattened: `finalStart[i]..<finalStart[i+1]`.
    private var finalParameters: [Parameter] = []
    private var finalStart: [Int] = [0]
    private var firstUse: [ObjectIdentifier: Int] = [:]
    private var pendingParameters: [(Parameter, Int)] = []
    private var gradientBuffers: [(UnsafeMutablePointer<Float>, Int)] = []
    private var streams: UInt64 = 0
    public private(set) var isSealed = false

    /// Skippable regions (`skippable`): the ops start..<end and the gradient buffers gradientStart..<gradientEnd
    /// recorded inside, and the condition read at the start of every `forward()`.
    var skipRegions: [(start: Int, end: Int, gradientStart: Int, gradientEnd: Int, skip: () -> Bool)] = []
    /// Whether each region is skipped in the current replay (set by `forward()`, read by `backward()`).
    var regionSkipped: [Bool] = []
    /// Per op, the region it belongs to, or -1 (set by `seal`).
    private var opRegion: [Int] = []
    /// Whether a region is being recorded (regions do not nest).
    var recordingSkippable = false

    public init(rng: Philox = Philox(seed: 0), minimumBlockBytes: Int = 16 << 20) {
        self.rng = rng
        values = ActivationArena(minimumBlockBytes: minimumBlockBytes)
        grads = ActivationArena(minimumBlockBytes: minimumBlockBytes)
    }

    deinit {
        if let block = plannedBlock { munmap(block.base, block.bytes) }
        if let workspaceMemory { AlignedMemory.deallocate(workspaceMemory) }
    }

    /// Memory every op may use while one of its closures runs, and which holds nothing between them (a
    /// convolution's permuted weight and its gradient, which backward permutes again): one block as large
    /// as the largest request (`reserveWorkspace`), allocated by `seal` and kept across `reset()`. Kept by
    /// each op instead, as `scratch` is, wav2vec 2.0's eight convolutions held 71 MB where the largest needs 38.
    private var workspaceMemory: UnsafeMutablePointer<Float>?
    private var workspaceCapacity = 0
    private var workspaceRequest = 0
    /// Bytes of the workspace.
    public var workspaceBytes: Int { workspaceCapacity * MemoryLayout<Float>.stride }

    /// Asks for `count` Floats of workspace for an op being recorded; its closures read `workspace`.
    public func reserveWorkspace(count: Int) {
        precondition(!isSealed, "the tape is sealed")
        workspaceRequest = max(workspaceRequest, count, 1)
    }

    /// The workspace (`reserveWorkspace`), for a closure to use while it runs: valid once sealed.
    public var workspace: UnsafeMutablePointer<Float> {
        precondition(isSealed && workspaceCapacity > 0, "the tape's workspace is used before seal, or was never reserved")
        return workspaceMemory!
    }

    /// Per op, in recording order: the activation gradients its backward writes (its `inputs`' grad
    /// buffers) and, for those it may store rather than accumulate, the flag `seal` sets.
    private var opGradients: [[(buffer: UnsafeMutablePointer<Float>, count: Int, write: GradientWrite?)]] = []
    /// The activation gradient buffers `backward` zeroes: those no op stores on its first write.
    private var zeroedBuffers: [(UnsafeMutablePointer<Float>, Int)] = []
    /// How many activation gradient buffers are stored by their first writer, so never zeroed (set by `seal`).
    public private(set) var storedGradientCount = 0

    /// Where activation gradients come from while recording: the `grads` arena (op by op recording), or
    /// `recordGraph`'s two passes: addresses in a reserved range nothing touches (the dry pass, which only
    /// learns the graph), then offsets into the planned block.
    private enum GradientMemory {
        case arena
        case dry(base: UnsafeMutableRawPointer, used: Int)
        case planned(plan: GradientPlan, next: Int)
    }
    private var gradientMemory = GradientMemory.arena
    /// Per activation gradient buffer, the number of ops recorded before it was allocated: no op recorded
    /// earlier can read or write it.
    private var gradientAllocatedAt: [Int] = []
    /// The planned block `recordGraph` places activation gradients in (kept across `reset()`, grown when a
    /// larger graph needs more).
    private var plannedBlock: (base: UnsafeMutableRawPointer, bytes: Int)?
    /// For a planned graph: per op, the activation gradients to zero just before its backward runs (their
    /// first writer adds), since memory they share is in use by other gradients until then.
    private var zeroBefore: [[(UnsafeMutablePointer<Float>, Int)]] = []
    private var plan: GradientPlan?
    /// Plans of graphs recorded with a key (`recordGraph(key:)`), at most 256.
    private var plans: [AnyHashable: GradientPlan] = [:]
    /// Bytes of activation gradient memory: the planned block of a graph recorded by `recordGraph`, or
    /// every buffer's own bytes of one recorded op by op.
    public var gradientBytes: Int { plan?.bytes ?? grads.bytesInUse }
    /// The bytes the same activation gradients take when each has its own memory (as op by op recording gives).
    public private(set) var unsharedGradientBytes = 0

    // MARK: - Recording

    /// A new activation of `shape`, with a gradient buffer when `requiresGrad`.
    public func tensor(_ shape: Shape, requiresGrad: Bool = true) -> Tensor {
        tensor(shape, requiresGrad: requiresGrad, data: nil)
    }

    /// A new activation on `data` when given (another tensor's values, which it then overwrites: see
    /// `dropout(_:p:consumingInput:)`), else on memory of its own.
    func tensor(_ shape: Shape, requiresGrad: Bool = true, data shared: UnsafeMutablePointer<Float>?) -> Tensor {
        precondition(!isSealed, "the tape is sealed: record the whole graph before replaying it")
        let data = shared ?? values.allocate(Float.self, count: shape.count)
        var grad: UnsafeMutablePointer<Float>? = nil
        if requiresGrad && recordsGradients {
            grad = allocateGradient(count: shape.count)
            gradientBuffers.append((grad!, shape.count))
            gradientAllocatedAt.append(forwards.count)
            unsharedGradientBytes += GradientPlan.bytes(count: shape.count)
        }
        return Tensor(shape: shape, data: data, grad: grad)
    }

    private func allocateGradient(count: Int) -> UnsafeMutablePointer<Float> {
        switch gradientMemory {
        case .arena:
            return grads.allocate(Float.self, count: count)
        case .dry(let base, let used):
            gradientMemory = .dry(base: base, used: used + GradientPlan.bytes(count: count))
            return (base + used).assumingMemoryBound(to: Float.self)
        case .planned(let plan, let next):
            precondition(next < plan.offsets.count && plan.counts[next] == count,
                         "recordGraph: the second recording allocated a different activation gradient (#\(next), \(count) floats) than the first; the graph must not depend on anything but the tape")
            gradientMemory = .planned(plan: plan, next: next + 1)
            return (plannedBlock!.base + plan.offsets[next]).assumingMemoryBound(to: Float.self)
        }
    }

    /// An input the caller fills before each `forward()`; it needs no gradient.
    public func input(_ shape: Shape) -> Tensor { tensor(shape, requiresGrad: false) }

    /// Integer inputs (token ids, labels) the caller fills before each `forward()`.
    public func intInput(count: Int) -> UnsafeMutablePointer<Int32> {
        precondition(!isSealed, "the tape is sealed")
        return values.allocate(Int32.self, count: count)
    }

    /// Scratch memory an op keeps between its forward and backward (e.g. LayerNorm's mean and rstd).
    public func scratch(count: Int) -> UnsafeMutablePointer<Float> {
        precondition(!isSealed, "the tape is sealed")
        return values.allocate(Float.self, count: count)
    }

    /// Ops recorded so far, and activation gradient buffers allocated so far (`skippable` marks its region by them).
    var opCount: Int { forwards.count }
    var gradientBufferCount: Int { gradientBuffers.count }

    /// A fresh stream number for an op that draws random numbers.
    public func newStream() -> UInt64 { streams += 1; return streams }

    /// A flag for an op's backward that may store `x`'s gradient instead of adding to it: pass it in the
    /// op's `storing` and read `stores` at replay. `seal` sets it when that op is the first in backward
    /// order to write x's gradient (the last consumer of x in forward order), x's gradient is the tape's
    /// own buffer (not a parameter's) and the op lists x only once; the buffer then needs no zeroing.
    /// An op that stores must write every element of x's gradient.
    public func gradientWrite(_ x: Tensor) -> GradientWrite {
        GradientWrite(buffer: x.grad)
    }

    /// Records an op's two closures for replay (nothing runs yet). `parameters` are those whose
    /// gradients `backward` accumulates into; `inputs` every tensor whose gradient it writes (it adds to
    /// them, except where a flag in `storing` says it may store). Every activation gradient an op's
    /// backward touches must be among its `inputs`: `seal` decides from them which buffers need zeroing.
    /// `name` labels the op in `opProfile` (by default the recording function's name, e.g. `linear`).
    public func record(parameters: [Parameter] = [], inputs: [Tensor], storing: [GradientWrite] = [],
                       name: String = #function, forward: @escaping () -> Void, backward: @escaping () -> Void) {
        precondition(!isSealed, "the tape is sealed")
        let index = forwards.count
        forwards.append(forward)
        backwards.append(backward)
        opNames.append(name.prefix { $0 != "(" }.description)
        var gradients: [(buffer: UnsafeMutablePointer<Float>, count: Int, write: GradientWrite?)] = []
        for x in inputs {
            guard let g = x.grad else { continue }
            gradients.append((g, x.count, storing.first { $0.buffer == g }))
        }
        opGradients.append(gradients)
        for p in parameters where firstUse[ObjectIdentifier(p)] == nil {
            firstUse[ObjectIdentifier(p)] = index
            pendingParameters.append((p, index))
        }
    }

    /// Forgets the recorded graph so that another one can be recorded on the same memory: the activation
    /// arenas rewind (their blocks are kept, so a graph no larger than the biggest recorded so far
    /// allocates nothing), the ops, parameter bookkeeping and stream numbers start again; `training`,
    /// `step`, `rng`, `precision` and `onGradientFinal` stay. Tensors of the old graph must not be used
    /// afterwards. For tasks whose graph depends on the batch (a seq2seq batch's lengths).
    public func reset() {
        values.rewind()
        grads.rewind()
        forwards = []
        backwards = []
        opNames = []
        opSeconds = []
        profiledPasses = 0
        finalParameters = []
        finalStart = [0]
        firstUse = [:]
        pendingParameters = []
        gradientBuffers = []
        gradientAllocatedAt = []
        unsharedGradientBytes = 0
        gradientMemory = .arena
        plan = nil
        zeroBefore = []
        streams = 0
        opGradients = []
        zeroedBuffers = []
        storedGradientCount = 0
        skipRegions = []
        regionSkipped = []
        workspaceRequest = 0
        opRegion = []
        isSealed = false
    }

    /// Ends recording: from now on only `forward()` and `backward()` may run.
    public func seal() {
        guard !isSealed else { return }
        var byOp = [[Parameter]](repeating: [], count: forwards.count)
        for (p, i) in pendingParameters { byOp[i].append(p) }
        finalParameters = []
        finalStart = [0]
        for ps in byOp { finalParameters += ps; finalStart.append(finalParameters.count) }
        pendingParameters = []
        opRegion = [Int](repeating: -1, count: forwards.count)
        for (r, region) in skipRegions.enumerated() {
            for i in region.start..<region.end { opRegion[i] = r }
        }
        regionSkipped = [Bool](repeating: false, count: skipRegions.count)
        planGradientWrites()
        if workspaceRequest > workspaceCapacity {
            if let workspaceMemory { AlignedMemory.deallocate(workspaceMemory) }
            workspaceMemory = AlignedMemory.allocate(Float.self, count: workspaceRequest)
            workspaceCapacity = workspaceRequest
        }
        isSealed = true
    }

    /// Decides, for every activation gradient buffer, whether its first writer in backward order stores
    /// (then the buffer is never zeroed) or it must be zeroed before backward, as every buffer used to be.
    private func planGradientWrites() {
        if let plan {
            // The decisions were made on the dry recording, whose buffers had addresses of their own; here
            // buffers share memory, so they are applied by op and input position, which both passes share.
            for (i, gradients) in opGradients.enumerated() {
                for (j, entry) in gradients.enumerated() where plan.stores[i].contains(j) { entry.write!.stores = true }
            }
            zeroBefore = [[(UnsafeMutablePointer<Float>, Int)]](repeating: [], count: forwards.count)
            zeroedBuffers = []
            for (k, first) in plan.firstWriter.enumerated() where !plan.stored[k] {
                if let first { zeroBefore[first].append(gradientBuffers[k]) } else { zeroedBuffers.append(gradientBuffers[k]) }
            }
            storedGradientCount = plan.stored.filter { $0 }.count
            return
        }
        var firstWriter: [UnsafeMutablePointer<Float>: Int] = [:]
        for (i, gradients) in opGradients.enumerated() {
            for (g, _, _) in gradients { firstWriter[g] = i }  // the last consumer runs first in backward
        }
        let own = Set(gradientBuffers.map(\.0))  // parameters' gradients always accumulate
        // An op of a skippable region may store only into buffers allocated inside that region: when the
        // region is skipped its ops do not run, and a buffer from outside must not keep stale values.
        let regionBuffers = skipRegions.map { Set(gradientBuffers[$0.gradientStart..<$0.gradientEnd].map(\.0)) }
        var stored = Set<UnsafeMutablePointer<Float>>()
        for (g, i) in firstWriter where own.contains(g) {
            if opRegion[i] >= 0 && !regionBuffers[opRegion[i]].contains(g) { continue }
            let writes = opGradients[i].filter { $0.buffer == g }
            guard writes.count == 1, let flag = writes[0].write else { continue }
            flag.stores = true
            stored.insert(g)
        }
        zeroedBuffers = gradientBuffers.filter { !stored.contains($0.0) }
        storedGradientCount = stored.count
    }

    // MARK: - Recording with planned gradient memory

    /// Records the graph `body` builds on this (empty) tape and seals it, with the activation gradients
    /// placed so that gradients never live at the same time share memory.
    ///
    /// In backward, an activation's gradient is live from its first writer (the last op, in recording
    /// order, that lists the tensor among its `inputs`; zeroed just before it unless that op stores) down to
    /// the op that made the tensor, which reads it; no op recorded before the tensor was allocated can touch
    /// it. So `body` runs twice: first with gradient addresses that nothing may touch, to learn each
    /// gradient's writers, then with every gradient at its planned offset in one block, sized for the most
    /// bytes live at once (`gradientBytes`). Values are untouched: each activation keeps its own memory.
    /// `body` must record the same graph both times (it may read only what it read the first time); a
    /// second recording that allocates differently stops the process. Gradients that no op writes (the
    /// loss's) are zeroed at the start of backward and live throughout, as are the inputs' gradients a
    /// caller reads after `backward`: those were allocated before any op.
    ///
    /// With a `key` (the shape a task's graph depends on, for tasks that re-record per batch), the plan is
    /// kept and a later recording under the same key skips the dry pass.
    public func recordGraph<T>(key: AnyHashable? = nil, _ body: () -> T) -> T {
        precondition(!isSealed && forwards.isEmpty && gradientBuffers.isEmpty, "recordGraph: the tape must be empty (reset() it first)")
        let plan: GradientPlan
        if let key, let cached = plans[key] {
            plan = cached
        } else {
            let reservation = 1 << 40
            guard let dry = mmap(nil, reservation, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
                  dry != MAP_FAILED else { fatalError("recordGraph: cannot reserve address space for the dry recording") }
            gradientMemory = .dry(base: dry, used: 0)
            _ = body()
            plan = makeGradientPlan()
            munmap(dry, reservation)
            if let key {
                if plans.count >= 256 { plans = [:] }
                plans[key] = plan
            }
        }
        reset()
        if plannedBlock == nil || plannedBlock!.bytes < plan.bytes {
            if let block = plannedBlock { munmap(block.base, block.bytes) }
            let bytes = AlignedMemory.pageBytes(plan.bytes)
            plannedBlock = (UnsafeMutableRawPointer(AlignedMemory.allocatePages(UInt8.self, count: bytes)), bytes)
        }
        gradientMemory = .planned(plan: plan, next: 0)
        let result = body()
        guard case .planned(_, let next) = gradientMemory, next == plan.offsets.count else {
            preconditionFailure("recordGraph: the second recording allocated fewer activation gradients than the first")
        }
        self.plan = plan
        seal()
        return result
    }

    /// The plan of a dry recording: each gradient buffer's first writer and lifetime, which first writes
    /// store, and the offsets `GradientPlan.place` gives.
    private func makeGradientPlan() -> GradientPlan {
        let n = gradientBuffers.count, ops = forwards.count
        // Dry addresses increase with allocation order and never overlap, so a pointer (a view's may point
        // inside a buffer) finds its buffer by binary search.
        let starts = gradientBuffers.map { UInt(bitPattern: $0.0) }
        func buffer(_ p: UnsafeMutablePointer<Float>) -> Int? {
            let a = UInt(bitPattern: p)
            var lo = 0, hi = n
            while lo < hi { let mid = (lo + hi) / 2; if starts[mid] <= a { lo = mid + 1 } else { hi = mid } }
            let k = lo - 1
            guard k >= 0, a < starts[k] + UInt(max(1, gradientBuffers[k].1) * 4) else { return nil }  // a parameter's
            return k
        }
        var firstWriter = [Int?](repeating: nil, count: n)
        for (i, gradients) in opGradients.enumerated() {
            for entry in gradients { if let k = buffer(entry.buffer) { firstWriter[k] = i } }
        }
        var region = [Int](repeating: -1, count: ops)
        for (r, skipRegion) in skipRegions.enumerated() { for i in skipRegion.start..<skipRegion.end { region[i] = r } }
        var stores = [Set<Int>](repeating: [], count: ops)
        var stored = [Bool](repeating: false, count: n)
        for k in 0..<n {
            guard let i = firstWriter[k] else { continue }
            // As in op-by-op recording: inside a skippable region only the region's own buffers may be stored.
            if region[i] >= 0 && !(skipRegions[region[i]].gradientStart..<skipRegions[region[i]].gradientEnd).contains(k) { continue }
            let writes = opGradients[i].enumerated().filter { buffer($0.element.buffer) == k }
            // The op must be the only write of its step to the buffer and cover all of it.
            guard writes.count == 1, let (j, entry) = writes.first, entry.write != nil,
                  entry.buffer == gradientBuffers[k].0, entry.count == gradientBuffers[k].1 else { continue }
            stores[i].insert(j)
            stored[k] = true
        }
        let lifetimes = (0..<n).map { k -> ClosedRange<Int> in
            let start = gradientAllocatedAt[k], end = firstWriter[k] ?? ops
            precondition(end >= start, "recordGraph: op \(end) writes a gradient allocated after it")
            return start...end
        }
        let counts = gradientBuffers.map(\.1)
        let (offsets, bytes) = GradientPlan.place(bytes: counts.map(GradientPlan.bytes(count:)), lifetimes: lifetimes)
        return GradientPlan(counts: counts, offsets: offsets, bytes: bytes, firstWriter: firstWriter, stored: stored, stores: stores)
    }

    // MARK: - Replay

    /// Runs every recorded forward closure in order, except those of the skippable regions whose
    /// condition holds now (each condition is read once here; `backward()` skips the same regions).
    public func forward() {
        seal()
        if profiling {
            if opSeconds.count != forwards.count { opSeconds = Array(repeating: (0, 0), count: forwards.count) }
            profiledPasses += 1
        }
        guard !skipRegions.isEmpty || profiling else {
            for f in forwards { f() }
            return
        }
        for r in skipRegions.indices { regionSkipped[r] = skipRegions[r].skip() }
        for i in forwards.indices {
            let r = opRegion[i]
            if r >= 0 && regionSkipped[r] { continue }
            if profiling {
                let start = monotonicSeconds()
                forwards[i]()
                opSeconds[i].forward += monotonicSeconds() - start
            } else {
                forwards[i]()
            }
        }
    }

    /// Where the profiled replays' time went, by op name: the seconds per forward pass in each name's
    /// forward and backward closures (summed over its ops, averaged over the passes since profiling
    /// started), and how many ops have that name; largest total first.
    public func opProfile() -> [(name: String, ops: Int, forward: Double, backward: Double)] {
        guard profiledPasses > 0, opSeconds.count == opNames.count else { return [] }
        var byName: [String: (ops: Int, forward: Double, backward: Double)] = [:]
        for (i, name) in opNames.enumerated() {
            var entry = byName[name] ?? (0, 0, 0)
            entry.ops += 1
            entry.forward += opSeconds[i].forward / Double(profiledPasses)
            entry.backward += opSeconds[i].backward / Double(profiledPasses)
            byName[name] = entry
        }
        return byName.map { (name: $0.key, ops: $0.value.ops, forward: $0.value.forward, backward: $0.value.backward) }
            .sorted { $0.forward + $0.backward != $1.forward + $1.backward ? $0.forward + $0.backward > $1.forward + $1.backward : $0.name < $1.name }
    }

    /// Starts the profile again (the next `forward()` is its first pass).
    public func resetProfile() {
        opSeconds = []
        profiledPasses = 0
    }

    /// Zeroes the activation gradients whose first writer adds (those whose first writer stores need
    /// none), sets d(loss)/d(loss) = `seed` and runs every backward closure in
    /// reverse, calling `onGradientFinal` for each parameter right after its last contribution. A seed
    /// other than 1 scales every gradient (e.g. 1/micro-batches under gradient accumulation).
    public func backward(from loss: Tensor, seed: Float = 1) {
        seal()
        if poisonsGradientMemory, let block = plannedBlock {
            block.base.bindMemory(to: Float.self, capacity: block.bytes / 4).update(repeating: .nan, count: block.bytes / 4)
        }
        for (g, n) in zeroedBuffers { g.update(repeating: 0, count: n) }
        guard let dloss = loss.grad else { preconditionFailure("the loss does not require a gradient") }
        dloss.update(repeating: seed, count: loss.count)
        var i = backwards.count - 1
        let planned = !zeroBefore.isEmpty
        let timing = profiling && opSeconds.count == backwards.count
        while i >= 0 {
            let start = timing ? monotonicSeconds() : 0
            // A planned gradient is zeroed when its life starts (even where its first writer is skipped:
            // later writers add to it).
            if planned { for (g, n) in zeroBefore[i] { g.update(repeating: 0, count: n) } }
            let r = opRegion[i]
            // A skipped region's parameters get no gradient, but their buckets still learn they are final.
            if r < 0 || !regionSkipped[r] { backwards[i]() }
            if timing { opSeconds[i].backward += monotonicSeconds() - start }
            if let hook = onGradientFinal {
                for j in finalStart[i]..<finalStart[i + 1] { hook(finalParameters[j]) }
            }
            i -= 1
        }
    }
}

/// Whether one op's backward may store an input's gradient instead of adding to it (`Tape.gradientWrite`).
public final class GradientWrite {
    let buffer: UnsafeMutablePointer<Float>?
    /// Set when the tape is sealed; false until then and wherever the op must add.
    public fileprivate(set) var stores = false
    /// Whether the op adds to the gradient (the kernels' `accumulate` argument).
    public var accumulates: Bool { !stores }

    init(buffer: UnsafeMutablePointer<Float>?) { self.buffer = buffer }
}
