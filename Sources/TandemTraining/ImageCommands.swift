import Foundation
import TandemCollectives
import TandemData

/// `tandem prepare-images`: image sources to image shards, the shards dealt out to ranks.
public enum ImageCommands {
    /// Writes the shards of `input` into `out`: under mpirun ranks write alternate shards, every rank
    /// learns whether any failed, then rank 0 gathers the shard reports and writes the manifest, so the
    /// output is the same for any rank count. `size` is the side folder-tree images are resized and
    /// cropped to, `split` the CIFAR batches, `labels` and `classes` an IDX file's labels file and class
    /// names; `threads` decoding threads per rank (default: this node's cores over its ranks). Collective.
    public static func prepare(input: String, out: String, size: Int?, shardSize: Int, split: String, labels: String?,
                               classes: [String]?, threads: Int?, communicator comm: any Communicator) throws {
        let options = PrepareImagesOptions(size: size, shardSize: shardSize, split: split, labels: labels, classes: classes)
        let stderr = FileHandle.standardError
        let threads = threads ?? max(1, ProcessInfo.processInfo.activeProcessorCount / comm.localSize)
        let source = try openImageSource(input, options: options)
        var outcome = ""
        var json = ""
        // Rank 0 shows its own share's progress: images, pixel MB written, ETA by images.
        let progress = comm.rank == 0 ? PreparationProgress(label: "prepare-images" + (comm.size > 1 ? " (rank 0's share)" : ""),
                                                           unit: "images") : nil
        var last: PrepareImagesProgress?
        do {
            let reports = try writeImageShards(source: source, out: out, shardSize: options.shardSize, rank: comm.rank,
                                               ranks: comm.size, threads: threads, progress: { p in
                last = p
                progress?.update(items: p.done, bytes: p.bytes, totalItems: p.total)
            }, skipped: { line in
                progress?.abandon()
                stderr.write(Data("prepare-images: skipped \(line)\n".utf8))
            })
            if let p = last { progress?.finish(items: p.done, bytes: p.bytes, totalItems: p.total) }
            json = try ImageShardReport.encode(reports)
        } catch {
            progress?.abandon()
            outcome = "\(error)"
        }
        // Every rank learns whether any failed before rank 0 gathers the reports and writes the manifest.
        let failures = comm.allGather(outcome.isEmpty ? Int32(0) : Int32(1))
        if !outcome.isEmpty { throw ConfigError(outcome) }
        if let bad = failures.firstIndex(of: 1) { throw ConfigError("rank \(bad) failed to write its shards (see its message)") }
        var reports: [ImageShardReport] = []
        for q in 0..<comm.size {
            let theirs = comm.broadcast(q == comm.rank ? json : "", root: q)
            if comm.rank == 0 { reports += try ImageShardReport.decode(theirs) }
        }
        if comm.rank == 0 {
            let manifest = try ImageShardManifest.build(directory: out, source: source, reports: reports)
            guard manifest.count > 0 else { throw ConfigError("\(input): no image could be read") }
            try manifest.write(directory: out)
            let stats = zip(manifest.mean, manifest.std).map { String(format: "%.4f/%.4f", $0, $1) }.joined(separator: " ")
            print("prepare-images: \(manifest.count) images of \(manifest.height)x\(manifest.width)x\(manifest.channels) "
                  + "in \(manifest.shards.count) shards, \(manifest.classes.count) classes, \(manifest.skipped) skipped, "
                  + "mean/std \(stats), written to \(out)")
        }
        comm.barrier()
    }
}
