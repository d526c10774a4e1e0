import Bundle
import Foundation
import OCI
import Registry
import Streams
import Synchronization

/// How large blobs are fetched: in `Range` parts at once (through the pull's one pool), and
/// resumed inside the blob across runs from the journal.
public struct RangedDownloadPolicy: Sendable {
    /// Blobs larger than this are cut into parts of `partSize`.
    public var threshold: Int64 = 32 << 20
    public var partSize: Int64 = 16 << 20
    /// Blobs from this size on journal their progress (so a re-run fetches only the rest).
    public var resumableMinimum: Int64 = 4 << 20
    /// A part syncs and journals what it wrote every `journalEvery` bytes, or after
    /// `journalInterval` when bytes come slowly (a thin WAN): what a kill -9 can cost is about
    /// min(journalEvery, rate x interval) per part in flight.
    public var journalEvery: Int64 = 8 << 20
    public var journalInterval: Duration = .milliseconds(500)

    public init() {}

    /// One stream per blob, no journaled progress inside blobs (the old behaviour, for comparison).
    public static let wholeBlobs: RangedDownloadPolicy = {
        var policy = RangedDownloadPolicy()
        policy.threshold = .max
        policy.resumableMinimum = .max
        return policy
    }()
}

/// One large blob being written into its tar entry in parts, each part at its own offset. The
/// SHA-256 follows the contiguous written prefix: bytes written in order are hashed from the
/// buffer they arrived in; bytes that came out of order (a later part, or an earlier run's
/// journaled range) are read back from the partial file (the page cache, usually) once the
/// prefix reaches them. The entry is finished only after the whole blob hashes to its digest.
final class RangedBlob: Sendable {
    struct Segment {
        var range: Range<Int64>
        /// Bytes of the segment on disk from its start (all of it for a journaled range).
        var written: Int64
        var end: Int64 { range.lowerBound + written }
        var isFull: Bool { written == Int64(range.count) }
    }

    private struct State {
        var segments: [Segment]
        /// Bytes [0, hashed) are in the hasher.
        var hashed: Int64 = 0
        /// Whether some task is hashing now (only that task touches the hasher).
        var hashing = false
        var partsLeft: Int
        /// The registry ignored Range: one task fetches the blob as a single stream.
        var wholeStreamClaimed = false
    }

    /// The hasher is used only by the task that holds `State.hashing`.
    private final class Hasher: @unchecked Sendable { let sha = SHA256() }

    let job: BlobJob
    /// Indexes of the segments to download, one pool unit each.
    let parts: [Int]
    private let policy: RangedDownloadPolicy
    private let state: Mutex<State>
    private let hasher = Hasher()

    /// Bytes already on disk from an earlier run.
    let alreadyOnDisk: Int64

    init(job: BlobJob, policy: RangedDownloadPolicy) {
        self.job = job
        self.policy = policy
        let size = job.descriptor.size
        let synced = job.writer.syncedRanges(job.entry).filter { $0.upperBound <= size }
        var segments: [Segment] = []
        var parts: [Int] = []
        var position: Int64 = 0
        func addGap(upTo end: Int64) {
            let piece = size > policy.threshold ? policy.partSize : max(1, end - position)
            while position < end {
                let next = min(end, position + piece)
                parts.append(segments.count)
                segments.append(Segment(range: position..<next, written: 0))
                position = next
            }
        }
        for range in synced where range.upperBound > position {
            addGap(upTo: max(position, range.lowerBound))
            let start = max(position, range.lowerBound)
            segments.append(Segment(range: start..<range.upperBound, written: range.upperBound - start))
            position = range.upperBound
        }
        addGap(upTo: size)
        self.parts = parts
        self.alreadyOnDisk = synced.reduce(0) { $0 + Int64($1.count) }
        self.state = Mutex(State(segments: segments, partsLeft: max(1, parts.count)))
    }

    /// Whether a blob goes through this (large enough, or resumable from an earlier run).
    static func applies(to job: BlobJob, policy: RangedDownloadPolicy) -> Bool {
        job.descriptor.size >= policy.resumableMinimum || !job.writer.syncedRanges(job.entry).isEmpty
    }

    /// Runs part `part` (an index into `parts`; nil when nothing is left to fetch), and, when
    /// it is the last, verifies and finishes the entry. Returns whether it finished the entry.
    func run(part: Int?, client: RegistryClient, progress: TransferProgress) async throws -> Bool {
        if let part {
            do {
                try await fetch(segment: parts[part], client: client, progress: progress)
            } catch is RangeNotSupported {
                // The registry ignores Range: one task fetches the whole blob as one verified stream.
                if state.withLock({ state in defer { state.wholeStreamClaimed = true }; return !state.wholeStreamClaimed }) {
                    try await job.fetchWhole(client: client, progress: progress)
                }
            }
        }
        let last = state.withLock { state -> Bool in
            state.partsLeft -= 1
            return state.partsLeft == 0
        }
        guard last else { return false }
        if state.withLock({ $0.wholeStreamClaimed }) { return true }
        try await finish()
        progress.blobDone(digest: job.descriptor.digest.string, bytes: job.descriptor.size, transferred: true)
        return true
    }

    private func fetch(segment index: Int, client: RegistryClient, progress: TransferProgress) async throws {
        let range = state.withLock { $0.segments[index].range }
        var offset = range.lowerBound
        var unjournaled: Int64 = 0
        let clock = ContinuousClock()
        var lastRecord = clock.now
        do {
            for try await buffer in client.blob(repository: job.repository, descriptor: job.descriptor, range: range,
                                                onBytes: { progress.addBytes($0) }) {
                let start = offset
                try buffer.withUnsafeReadableBytes { raw in
                    try job.writer.writeData(job.entry, at: start, raw)
                    offset += Int64(raw.count)
                    try advanceHash(segment: index, wrote: start..<offset, from: raw)
                }
                unjournaled += Int64(buffer.readableBytes)
                if unjournaled >= policy.journalEvery || clock.now - lastRecord >= policy.journalInterval {
                    try job.writer.recordProgress(job.entry, range.lowerBound..<offset)
                    unjournaled = 0
                    lastRecord = clock.now
                }
            }
        } catch {
            // Keep what is on disk for the next run (Ctrl-C, a full disk, a registry gone).
            if offset > range.lowerBound { try? job.writer.recordProgress(job.entry, range.lowerBound..<offset) }
            throw error
        }
    }

    /// Records `wrote` (just written from `bytes`) and, unless another task is hashing, hashes
    /// the contiguous prefix as far as it now reaches.
    private func advanceHash(segment index: Int, wrote: Range<Int64>, from bytes: UnsafeRawBufferPointer) throws {
        var take = state.withLock { state -> Range<Int64>? in
            state.segments[index].written += Int64(wrote.count)
            return Self.claimHashRange(&state)
        }
        while let range = take {
            if range.upperBound == wrote.upperBound, range.lowerBound >= wrote.lowerBound {
                // The usual case: the bytes just written continue the prefix; hash them as they are.
                hasher.sha.update(UnsafeRawBufferPointer(rebasing: bytes[Int(range.lowerBound - wrote.lowerBound)...]))
            } else if range.upperBound == wrote.upperBound, range.lowerBound < wrote.lowerBound {
                try hashFromDisk(range.lowerBound..<wrote.lowerBound)
                hasher.sha.update(bytes)
            } else {
                try hashFromDisk(range)
            }
            take = state.withLock { state -> Range<Int64>? in
                state.hashed = range.upperBound
                state.hashing = false
                return Self.claimHashRange(&state)
            }
        }
    }

    /// The bytes after the hashed prefix that are on disk without a gap, claimed for hashing
    /// (nil when there are none, or another task is hashing).
    private static func claimHashRange(_ state: inout State) -> Range<Int64>? {
        guard !state.hashing else { return nil }
        var end = state.hashed
        for segment in state.segments where segment.range.upperBound > end {
            guard segment.range.lowerBound <= end else { break }
            end = max(end, segment.end)
            if !segment.isFull { break }
        }
        guard end > state.hashed else { return nil }
        state.hashing = true
        return state.hashed..<end
    }

    private func hashFromDisk(_ range: Range<Int64>) throws {
        var buffer = [UInt8](repeating: 0, count: Int(min(Int64(1 << 20), max(1, Int64(range.count)))))
        var position = range.lowerBound
        while position < range.upperBound {
            let count = Int(min(Int64(buffer.count), range.upperBound - position))
            try buffer.withUnsafeMutableBytes { raw in
                let piece = UnsafeMutableRawBufferPointer(rebasing: raw[0..<count])
                try job.writer.readData(job.entry, at: position, into: piece)
                hasher.sha.update(UnsafeRawBufferPointer(piece))
            }
            position += Int64(count)
        }
    }

    /// Every part is in: hash what is left, check the digest, finish the entry.
    private func finish() async throws {
        while true {
            let (take, busy) = state.withLock { state -> (Range<Int64>?, Bool) in
                let take = Self.claimHashRange(&state)
                return (take, take == nil && state.hashing)
            }
            if let take {
                try hashFromDisk(take)
                state.withLock { state in
                    state.hashed = take.upperBound
                    state.hashing = false
                }
                continue
            }
            if busy { try await Task.sleep(for: .milliseconds(1)); continue }
            break
        }
        let hashed = state.withLock { $0.hashed }
        let what = "blob \(job.descriptor.digest) of \(job.repository)"
        guard hashed == job.descriptor.size else {
            try? job.writer.forgetProgress(job.entry)
            throw RegistryError.sizeMismatch(what: what, expected: job.descriptor.size, actual: hashed)
        }
        let actual = hasher.sha.finalize()
        guard actual == job.descriptor.digest else {
            // The bytes on disk are wrong: the next run must fetch the blob again, not trust them.
            try? job.writer.forgetProgress(job.entry)
            throw RegistryError.digestMismatch(what: what, expected: job.descriptor.digest, actual: actual)
        }
        try job.writer.finishEntry(job.entry)
    }
}
