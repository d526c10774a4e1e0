import BoundedPool
import Bundle
import DKP
import Foundation
import OCI

extension BundlePuller {
    /// `resume: false` (`--no-pull-resume`) discards what earlier runs wrote: the journals, the
    /// partial files and the record of finished tars, so every byte is fetched again.
    ///
    /// A directory holding files of another pull (tars this plan does not write, or tars of
    /// its names finished by another plan) is refused, unless `replacing` (`--force`): then
    /// those files are removed once the new bundle is complete, never before.
    ///
    /// `gostsums` (`--gost-digest`) writes a `.gostsum` beside each file, from the same read
    /// that hashes it for `SHA256SUMS`.
    public func pull(_ plan: BundlePlan, into directory: String, chunkSize: Int64?, resume: Bool = true,
                     replacing: Bool = false, gostsums: Bool = false) async throws -> PullResult {
        // Opening a writer rewrites the journal for this plan: never do that for a plan made
        // while the run was being cancelled (an interrupted discovery may come back short).
        try Task.checkCancellation()
        let state = StateDirectory(bundle: directory)
        let otherPull = state.filesOfAnotherPull(plan, chunkSize: chunkSize)
        if !otherPull.isEmpty && !replacing {
            throw MirrorError.invalidInput("\(directory) holds a bundle of another pull (\(otherPull.prefix(4).joined(separator: ", "))"
                + "\(otherPull.count > 4 ? ", ..." : "")): mixing the two would leave its images beside this pull's; "
                + "pull into an empty directory, or pass --force to replace that bundle (its files are removed once the new one is complete)")
        }
        if !resume { try state.discardProgress(tars: plan.tarNames) }
        try state.create()
        let opened = try openTars(plan, state: state, directory: directory, chunkSize: chunkSize)
        let work = try Self.blobJobs(opened.pending)
        try Self.checkFreeSpace(directory: directory, needed: Self.bytesStillToWrite(opened.pending))
        releaseFreedMemory()
        let resumedBytes = try await transfer(work.jobs, of: plan, into: opened.pending)
        var files = opened.files
        for (tar, writer) in opened.pending {
            let written = try writer.commit()
            try state.markCompleted(tar: tar.name, fingerprint: tar.layout.fingerprint, chunkSize: chunkSize, files: written)
            files += written
            progress.note("\(tar.name): written")
        }
        files += try Self.writeLeftOut(plan, into: directory)
        let names = files.map { ($0 as NSString).lastPathComponent }
        if gostsums { progress.note("hashing SHA-256 and GOST R 34.11-2012 digests") }
        try Checksums.writeSHA256SUMS(directory: directory, files: names, gostsums: gostsums)
        if !otherPull.isEmpty {
            // The new bundle is complete and durable: only now does the old one go.
            for name in state.removeOtherPull(keeping: names + (gostsums ? names.map { $0 + ".gostsum" } : []), plan: plan) {
                progress.note("\(name): removed (of the bundle this pull replaces)")
            }
        }
        return result(of: plan, into: directory, files: names, blobs: work.blobs,
                      alreadyPresent: opened.alreadyPresent + work.alreadyPresent + resumedBytes)
    }

    /// A writer for each tar not finished by an earlier run; the finished ones' files.
    private func openTars(_ plan: BundlePlan, state: StateDirectory, directory: String, chunkSize: Int64?) throws
        -> (files: [String], alreadyPresent: Int64, pending: [(TarPlan, TarFileWriter)]) {
        var opened: (files: [String], alreadyPresent: Int64, pending: [(TarPlan, TarFileWriter)]) = ([], 0, [])
        for tar in plan.tars {
            if let done = state.completed(tar: tar.name, fingerprint: tar.layout.fingerprint, chunkSize: chunkSize) {
                opened.files += done
                opened.alreadyPresent += tar.layout.totalSize
                progress.note("\(tar.name): complete from an earlier run")
                continue
            }
            let writer = try TarFileWriter(finalPath: directory + "/" + tar.name, layout: tar.layout, chunkSize: chunkSize)
            opened.pending.append((tar, writer))
        }
        return opened
    }

    /// Writes the small entries of each open tar, and returns the blobs still to fetch, how many
    /// blobs the tars hold, and the bytes of those already written by an earlier run.
    private static func blobJobs(_ pending: [(TarPlan, TarFileWriter)]) throws -> (jobs: [BlobJob], blobs: Int, alreadyPresent: Int64) {
        var work: (jobs: [BlobJob], blobs: Int, alreadyPresent: Int64) = ([], 0, 0)
        for (tar, writer) in pending {
            try Self.writeSmallEntries(tar, to: writer)
            for (index, source) in tar.sources.enumerated() {
                guard case let .blob(repository, descriptor) = source else { continue }
                work.blobs += 1
                if writer.isComplete(index) {
                    work.alreadyPresent += descriptor.size
                } else {
                    work.jobs.append(BlobJob(writer: writer, entry: index, repository: repository, descriptor: descriptor))
                }
            }
        }
        return work
    }

    /// Fetches every job through the one pool and returns the bytes an earlier run had already
    /// written inside ranged blobs. Progress counts the whole plan; what is on disk counts as skipped.
    private func transfer(_ jobs: [BlobJob], of plan: BundlePlan, into pending: [(TarPlan, TarFileWriter)]) async throws -> Int64 {
        let tracker = ImageTracker(pending: pending.map { ($0.0, $0.1) })
        // Large blobs go in parts (each its own unit of the one pool), the rest whole; the
        // biggest first, so the long transfers start early.
        let jobs = jobs.sorted { $0.descriptor.size > $1.descriptor.size }
        var units: [TransferUnit] = []
        var resumedBytes: Int64 = 0
        for job in jobs {
            guard RangedBlob.applies(to: job, policy: ranged) else { units.append(.whole(job)); continue }
            let blob = RangedBlob(job: job, policy: ranged)
            resumedBytes += blob.alreadyOnDisk
            units += blob.parts.isEmpty ? [.part(blob, nil)] : blob.parts.indices.map { .part(blob, $0) }
        }
        progress.plan(blobs: jobs.count, bytes: jobs.reduce(0) { $0 + $1.descriptor.size } - resumedBytes, images: tracker.total)
        for image in tracker.alreadyComplete { progress.imageDone(plan.references[image].refName) }
        try await forEachConcurrently(units, limit: self.jobs) { unit in
            let finished: BlobJob?
            switch unit {
            case let .whole(job):
                try await job.fetchWhole(client: self.client, progress: self.progress)
                finished = job
            case let .part(blob, part):
                finished = try await blob.run(part: part, client: self.client, progress: self.progress) ? blob.job : nil
            }
            if let job = finished {
                for image in tracker.finished(tar: job.writer.finalPath, entry: job.entry) { self.progress.imageDone(plan.references[image].refName) }
            }
        }
        return resumedBytes
    }

    private func result(of plan: BundlePlan, into directory: String, files: [String], blobs: Int, alreadyPresent: Int64) -> PullResult {
        let snapshot = progress.snapshot
        let seconds = progress.elapsed.inSeconds
        var result = PullResult(bundleDirectory: directory, files: files,
                                images: plan.imageCount, blobs: blobs,
                                bytesTransferred: snapshot.transferredBytes, bytesAlreadyPresent: alreadyPresent,
                                seconds: seconds, bytesPerSecond: seconds > 0 ? Double(snapshot.transferredBytes) / seconds : 0,
                                peakResidentBytes: peakResidentBytes(),
                                secondsToFirstBlobByte: progress.firstByteAt.map { ($0 - ProcessClock.started).inSeconds })
        (result.leftOutBlobs, result.leftOutBytes) = (plan.leftOutBlobCount, plan.leftOutBytes)
        return result
    }

    /// The manifests, index.json and oci-layout of a tar, from the plan into it through one
    /// reused buffer, synced and journaled once.
    private static func writeSmallEntries(_ tar: TarPlan, to writer: TarFileWriter) throws {
        let small = tar.sources.indices.filter { index in
            if case .blob = tar.sources[index] { return false }
            return !writer.isComplete(index)
        }
        var scratch: [UInt8] = []
        try writer.writeEntries(small) { index, write in
            switch tar.sources[index] {
            case let .bytes(bytes): try write(bytes)
            case let .spooled(spool, extent): try spool.read(extent, pieceSize: 1 << 20, into: &scratch, write)
            case .blob: break // filtered out above
            }
        }
    }

    /// What the unfinished tars still have to write: every entry not yet complete (header, data,
    /// padding) and the end-of-archive blocks. Partial files are sparse, so this is what they
    /// will still take from the file system.
    static func bytesStillToWrite(_ pending: [(TarPlan, TarFileWriter)]) -> Int64 {
        pending.reduce(0) { total, item in
            let (tar, writer) = item
            let entries = tar.layout.entries.indices.filter { !writer.isComplete($0) }.reduce(Int64(0)) { total, index in
                let entry = tar.layout.entries[index]
                let onDisk = writer.syncedRanges(index).reduce(Int64(0)) { $0 + Int64($1.count) }
                return total + entry.endOffset - entry.headerOffset - onDisk
            }
            return total + entries + 2 * Int64(TarHeader.blockSize)
        }
    }

    /// Refuses, before any blob moves, a pull that cannot fit on the bundle's file system.
    static func checkFreeSpace(directory: String, needed: Int64) throws {
        var stats = statvfs()
        guard statvfs(directory, &stats) == 0 else { return }
        let available = Int64(stats.f_bavail) * Int64(stats.f_frsize)
        guard needed > available else { return }
        throw MirrorError.failed("not enough free space in \(directory): the pull still has to write \(formatBytes(needed)) (\(needed) bytes) and its file system has \(formatBytes(available)) (\(available) bytes) free; free some space or pull into a directory on a larger file system (nothing was downloaded)")
    }
}
