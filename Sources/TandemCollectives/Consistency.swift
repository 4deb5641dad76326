// MARK: - Start-up and replica checks

extension Communicator {
    /// Start-up check: every rank compares its config hash, parameter count and Tandem version with rank
    /// 0's. Collective. Throws the same `CollectivesError` on every rank when any rank differs, naming
    /// each such rank and what differs; the caller prints it on rank 0 and exits non-zero on all ranks.
    public func verifyConsistency(configHash: UInt64, parameterCount: Int, version: String) throws {
        let mine = RankIdentity(config: configHash, parameters: Int64(parameterCount), version: FNV1a64.hash(version))
        let all = allGather(mine)
        let rootVersion = broadcast(version, root: 0)
        var differences: [String] = []
        for (q, other) in all.enumerated() where other != all[0] {
            var what: [String] = []
            if other.config != all[0].config {
                what.append("config hash \(hex(other.config)) != \(hex(all[0].config))")
            }
            if other.parameters != all[0].parameters {
                what.append("parameter count \(other.parameters) != \(all[0].parameters)")
            }
            if other.version != all[0].version { what.append("Tandem version differs from \(rootVersion)") }
            differences.append("rank \(q): " + what.joined(separator: ", "))
        }
        guard differences.isEmpty else {
            throw CollectivesError("start-up check failed, ranks differ from rank 0: "
                                   + differences.joined(separator: "; "))
        }
    }

    /// Copies rank 0's parameters (the whole value buffer of the arena) to every rank. Collective.
    public func broadcastParameters(arena: ParameterArena) {
        broadcast(arena.values, root: 0)
    }

    /// Compares a checksum of every rank's parameters (`FNV1a64.wordwise`) with rank 0's. Collective. Throws the same error on
    /// every rank when they diverged, naming the step and the ranks that differ from rank 0.
    public func checkReplicasAgree(arena: ParameterArena, step: Int) throws {
        let sums = allGather(FNV1a64.wordwise(UnsafeRawBufferPointer(arena.values)))
        let differing = sums.indices.filter { sums[$0] != sums[0] }
        guard differing.isEmpty else {
            throw CollectivesError("replicas diverged at step \(step): parameters of rank(s) "
                                   + differing.map(String.init).joined(separator: ", ")
                                   + " differ from rank 0's (checksums "
                                   + differing.map { "\($0): \(hex(sums[$0]))" }.joined(separator: ", ")
                                   + " vs 0: \(hex(sums[0])))")
        }
    }
}

/// What the start-up check compares across ranks.
private struct RankIdentity: Equatable {
    var config: UInt64
    var parameters: Int64
    var version: UInt64
}

private func hex(_ x: UInt64) -> String { "0x" + String(x, radix: 16) }
