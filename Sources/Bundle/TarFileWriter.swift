#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Writes a tar whose layout is planned up front, entry by entry in any order and from many
/// tasks at once, each byte written once at its final offset (no temp tree, no packing pass).
///
/// Progress is recorded in a journal, `<finalPath>.journal`, beside the `.partial` files:
/// the first line identifies the plan (`<layout fingerprint> chunk-size=<N|none>`), every
/// further line is `N` (entry N's header, data and padding are on disk), `N:S-E` (bytes
/// [S, E) of entry N's data are on disk: progress inside a large blob) or `-N` (forget the
/// ranges of entry N: its bytes did not verify). Bytes are synced before their line is
/// written. A new writer for the same plan resumes: the journaled entries are `completed`, the
/// journaled ranges `syncedRanges`, and neither is fetched again. Any other plan starts from
/// scratch. Nothing carries the final name until `commit`.
public final class TarFileWriter: Sendable {
    public let layout: TarLayout
    public let finalPath: String
    public let journalPath: String
    private let file: ChunkedFileWriter
    private let journal: Int32
    private let state: Mutex<State>

    private struct State {
        var completed: Set<Int>
        /// Synced data ranges of entries not yet complete.
        var ranges: [Int: [Range<Int64>]]
        var committed = false
    }

    /// Opens (or resumes) the partial files of a tar at `finalPath`, cut into chunk files of
    /// `chunkSize` bytes when given.
    public init(finalPath: String, layout: TarLayout, chunkSize: Int64?) throws(BundleError) {
        let journalPath = finalPath + ".journal"
        let key = "\(layout.fingerprint) chunk-size=\(chunkSize.map(String.init) ?? "none")"
        let previous = Self.readJournal(journalPath, key: key, entryCount: layout.entries.count)

        // Decide what survives before touching any file, and record exactly that first: a
        // crash after partial files were recreated must never leave a journal that claims
        // entries in them.
        var kept = Set<Int>()
        var keptRanges: [Int: [Range<Int64>]] = [:]
        if let previous {
            ChunkedFileWriter.undoHalfCommit(finalPath: finalPath, totalSize: layout.totalSize, chunkSize: chunkSize)
            let files = ChunkedFileWriter.plannedFiles(finalPath: finalPath, totalSize: layout.totalSize, chunkSize: chunkSize)
            let intact = files.map { TarIO.fileSize($0.partial) == $0.size }
            kept = previous.completed.filter { Self.entry(layout.entries[$0], liesIn: intact, chunkSize: chunkSize) }
            keptRanges = previous.ranges.filter { !kept.contains($0.key) && Self.entry(layout.entries[$0.key], liesIn: intact, chunkSize: chunkSize) }
        }
        try Self.writeJournal(journalPath, key: key, completed: kept, ranges: keptRanges)

        let file = try ChunkedFileWriter(
            finalPath: finalPath, totalSize: layout.totalSize, chunkSize: chunkSize, resume: previous != nil)
        // A file that changed between the check above and opening it: forget its entries too.
        let stillKept = kept.filter { Self.entry(layout.entries[$0], liesIn: file.reopened, chunkSize: chunkSize) }
        let stillKeptRanges = keptRanges.filter { Self.entry(layout.entries[$0.key], liesIn: file.reopened, chunkSize: chunkSize) }
        if stillKept != kept || stillKeptRanges.count != keptRanges.count {
            kept = stillKept
            keptRanges = stillKeptRanges
            try Self.writeJournal(journalPath, key: key, completed: kept, ranges: keptRanges)
        }

        let fd = open(journalPath, O_WRONLY | O_APPEND | O_CLOEXEC)
        guard fd >= 0 else { throw .io(path: journalPath, operation: "open the journal", errno: errno) }
        self.layout = layout
        self.finalPath = finalPath
        self.journalPath = journalPath
        self.file = file
        self.journal = fd
        self.state = Mutex(State(completed: kept, ranges: keptRanges))
    }

    deinit { close(journal) }

    /// Indexes of the entries that are complete: those journaled by an earlier run plus those
    /// finished since.
    public var completed: Set<Int> { state.withLock { $0.completed } }

    /// Whether entry `entry` is complete (and need not be downloaded again).
    public func isComplete(_ entry: Int) -> Bool { state.withLock { $0.completed.contains(entry) } }

    /// The files being written (`.partial`), in order.
    public var partialPaths: [String] { file.partialPaths }
    /// The files as they are named after `commit`, in order.
    public var finalPaths: [String] { file.finalPaths }

    /// Writes a small entry in one go (header, data, padding), syncs it and journals it.
    public func writeEntry(_ entry: Int, bytes: [UInt8]) throws {
        let item = try place(entry, bytes: bytes)
        try markComplete(entry, item)
    }

    /// Writes many small entries (manifests, index.json), each taking its bytes from `bytes`
    /// only when it is written, then syncs the file once and journals them all in one append:
    /// 20,000 manifests synced one by one cost two `fdatasync` each.
    public func writeEntries(_ entries: [Int], bytes: (Int) throws -> [UInt8]) throws {
        try writeEntries(entries) { entry, write in try write(try bytes(entry)) }
    }

    /// The same, each entry's data handed over in pieces (`write` called in order, any number
    /// of times, the sizes adding up to the entry's): a large one (index.json) is never whole
    /// in memory.
    public func writeEntries(_ entries: [Int], pieces: (Int, _ write: ([UInt8]) throws -> Void) throws -> Void) throws {
        guard !entries.isEmpty else { return }
        for entry in entries { try place(entry, pieces: pieces) }
        try file.sync()
        let fresh = state.withLock { state in entries.filter { !state.completed.contains($0) } }
        var text = ""
        for entry in fresh { text += "\(entry)\n" }
        try appendJournal(Array(text.utf8))
        state.withLock { state in for entry in fresh { state.completed.insert(entry) } }
    }

    /// Header, data and padding of a small entry at its place; not synced, not journaled.
    @discardableResult
    private func place(_ entry: Int, bytes: [UInt8]) throws -> TarLayout.Entry {
        try place(entry) { _, write in try write(bytes) }
    }

    /// Header, data (from `pieces`) and padding of an entry at its place; not synced, not
    /// journaled. Up to 64 KiB, header and data are adjacent: one buffer, one positioned write
    /// (two at a chunk edge); a larger entry is written piece by piece at its offsets.
    @discardableResult
    private func place(_ entry: Int, pieces: (Int, ([UInt8]) throws -> Void) throws -> Void) throws -> TarLayout.Entry {
        let item = try self.entry(entry)
        try ensureWritable()
        let together = item.size <= 64 * 1024
        var block = TarHeader.encode(name: item.name, size: item.size)
        if !together {
            try TarIO.withBytes(block) { raw throws(BundleError) in try file.write(raw, at: item.headerOffset) }
        }
        var written: Int64 = 0
        try pieces(entry) { piece in
            guard written + Int64(piece.count) <= item.size else {
                throw BundleError.entrySizeMismatch(file: finalPath, entry: item.name, expected: item.size, actual: written + Int64(piece.count))
            }
            if together {
                block += piece
            } else {
                try TarIO.withBytes(piece) { raw throws(BundleError) in try file.write(raw, at: item.dataOffset + written) }
            }
            written += Int64(piece.count)
        }
        guard written == item.size else {
            throw BundleError.entrySizeMismatch(file: finalPath, entry: item.name, expected: item.size, actual: written)
        }
        let padding = [UInt8](repeating: 0, count: Int(TarHeader.paddedSize(item.size) - item.size))
        if together {
            block += padding
            try TarIO.withBytes(block) { raw throws(BundleError) in try file.write(raw, at: item.headerOffset) }
        } else {
            try TarIO.withBytes(padding) { raw throws(BundleError) in try file.write(raw, at: item.dataOffset + item.size) }
        }
        return item
    }

    // MARK: large entries written in ranges (parallel parts, resume inside a blob)

    /// The data ranges of `entry` already on disk (journaled by this or an earlier run), merged
    /// and in order; empty for a complete entry.
    public func syncedRanges(_ entry: Int) -> [Range<Int64>] {
        state.withLock { $0.completed.contains(entry) ? [] : ($0.ranges[entry] ?? []) }
    }

    /// Writes `bytes` at `offset` within `entry`'s data; throws, writing nothing, past its end.
    public func writeData(_ entry: Int, at offset: Int64, _ bytes: UnsafeRawBufferPointer) throws(BundleError) {
        let item = try self.entry(entry)
        try ensureWritable()
        guard offset >= 0, offset + Int64(bytes.count) <= item.size else {
            throw .entryOverflow(file: finalPath, entry: item.name, size: item.size, attempted: offset + Int64(bytes.count))
        }
        try file.write(bytes, at: item.dataOffset + offset)
    }

    /// Reads `buffer.count` bytes of `entry`'s data at `offset` back from the partial file.
    public func readData(_ entry: Int, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws(BundleError) {
        let item = try self.entry(entry)
        guard offset >= 0, offset + Int64(buffer.count) <= item.size else {
            throw .outOfRange(file: finalPath, offset: offset, length: Int64(buffer.count), size: item.size)
        }
        try file.read(into: buffer, at: item.dataOffset + offset)
    }

    /// Makes `range` of `entry`'s data durable, then journals it: a re-run will not fetch it again.
    public func recordProgress(_ entry: Int, _ range: Range<Int64>) throws(BundleError) {
        let item = try self.entry(entry)
        guard !range.isEmpty, range.lowerBound >= 0, range.upperBound <= item.size else { return }
        try file.sync(offset: item.dataOffset + range.lowerBound, length: Int64(range.count))
        try appendJournalLine("\(entry):\(range.lowerBound)-\(range.upperBound)")
        state.withLock { $0.ranges[entry] = Self.merged(($0.ranges[entry] ?? []) + [range]) }
    }

    /// Forgets `entry`'s journaled ranges (its bytes did not verify): a re-run fetches it whole.
    public func forgetProgress(_ entry: Int) throws(BundleError) {
        guard state.withLock({ $0.ranges.removeValue(forKey: entry) }) != nil else { return }
        try appendJournalLine("-\(entry)")
    }

    /// Completes an entry whose data was written with `writeData` (and verified by the caller):
    /// writes its header and padding, syncs it and journals it.
    public func finishEntry(_ entry: Int) throws(BundleError) {
        let item = try self.entry(entry)
        try ensureWritable()
        try finishStreamed(entry, item)
        state.withLock { _ = $0.ranges.removeValue(forKey: entry) }
    }

    /// Ranges sorted and joined where they touch or overlap.
    static func merged(_ ranges: [Range<Int64>]) -> [Range<Int64>] {
        var result: [Range<Int64>] = []
        for range in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) where !range.isEmpty {
            if let last = result.last, range.lowerBound <= last.upperBound {
                result[result.count - 1] = last.lowerBound..<max(last.upperBound, range.upperBound)
            } else {
                result.append(range)
            }
        }
        return result
    }

    /// A stream to write a large entry piece by piece as it downloads.
    public func entryStream(_ entry: Int) -> EntryStream { EntryStream(writer: self, entry: entry) }

    /// Finishes the tar: requires every entry complete, writes the end-of-archive blocks,
    /// syncs, renames the partial files to their final names and removes the journal.
    /// Returns the final paths in order.
    @discardableResult
    public func commit() throws(BundleError) -> [String] {
        if state.withLock({ $0.committed }) { return file.finalPaths }
        let missing: [Int] = state.withLock { state in
            layout.entries.indices.filter { !state.completed.contains($0) }
        }
        if let first = missing.first {
            throw .incomplete(file: finalPath, missing: missing.count, firstMissing: layout.entries[first].name)
        }
        let end = 2 * Int64(TarHeader.blockSize)
        try file.writeZeros(at: layout.totalSize - end, length: end)
        let paths = try file.commit()
        state.withLock { $0.committed = true }
        if unlink(journalPath) != 0 && errno != ENOENT {
            throw .io(path: journalPath, operation: "remove the journal", errno: errno)
        }
        try TarIO.syncDirectory(of: journalPath)
        return paths
    }

    // MARK: - for EntryStream

    func entry(_ index: Int) throws(BundleError) -> TarLayout.Entry {
        guard layout.entries.indices.contains(index) else {
            throw .invalidEntryIndex(file: finalPath, index: index, count: layout.entries.count)
        }
        return layout.entries[index]
    }

    func writeData(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(BundleError) {
        try file.write(bytes, at: offset)
    }

    /// Writes the header and padding of a streamed entry, then makes it durable and journals it.
    func finishStreamed(_ index: Int, _ item: TarLayout.Entry) throws(BundleError) {
        let header = TarHeader.encode(name: item.name, size: item.size)
        try TarIO.withBytes(header) { raw throws(BundleError) in try file.write(raw, at: item.headerOffset) }
        try file.writeZeros(at: item.dataOffset + item.size, length: TarHeader.paddedSize(item.size) - item.size)
        try markComplete(index, item)
    }

    /// Syncs the entry's bytes, then appends its index to the journal and syncs that: the
    /// journal never claims bytes that are not on disk.
    private func markComplete(_ index: Int, _ item: TarLayout.Entry) throws(BundleError) {
        try file.sync(offset: item.headerOffset, length: item.endOffset - item.headerOffset)
        if state.withLock({ $0.completed.contains(index) }) { return }
        try appendJournalLine("\(index)")
        state.withLock { _ = $0.completed.insert(index) }
    }

    /// Appends one line to the journal and syncs it.
    private func appendJournalLine(_ text: String) throws(BundleError) {
        // One short O_APPEND write per line: concurrent appends do not interleave.
        try appendJournal(Array("\(text)\n".utf8))
    }

    /// Appends whole lines to the journal in one O_APPEND write (a regular file takes it
    /// whole, so lines of concurrent appends do not interleave), then syncs it.
    private func appendJournal(_ line: [UInt8]) throws(BundleError) {
        var written = 0
        while written < line.count {
            let n = line.withUnsafeBytes { write(journal, $0.baseAddress! + written, line.count - written) }
            if n < 0 {
                if errno == EINTR { continue }
                throw BundleError.write(path: journalPath, operation: "append to the journal", errno: errno)
            }
            written += n
        }
        #if canImport(Glibc)
        let synced = fdatasync(journal)
        #else
        let synced = fsync(journal)
        #endif
        if synced != 0 { throw BundleError.write(path: journalPath, operation: "fdatasync the journal", errno: errno) }
    }

    func ensureWritable() throws(BundleError) {
        if state.withLock({ $0.committed }) { throw .alreadyCommitted(file: finalPath) }
    }

    // MARK: - journal

    /// The completed entries recorded for plan `key`, or nil when there is no journal or it
    /// belongs to another plan (or cannot be trusted). A torn last line is ignored.
    private static func readJournal(_ path: String, key: String, entryCount: Int)
        -> (completed: Set<Int>, ranges: [Int: [Range<Int64>]])? {
        guard let bytes = TarIO.readSmallFile(path) else { return nil }
        var lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        // Everything after the last newline was being written when the run stopped.
        lines.removeLast()
        guard let first = lines.first, String(decoding: first, as: UTF8.self) == key else { return nil }
        var completed = Set<Int>()
        var ranges: [Int: [Range<Int64>]] = [:]
        for line in lines.dropFirst() {
            let text = String(decoding: line, as: UTF8.self)
            if text.hasPrefix("-") {
                guard let index = Int(text.dropFirst()), (0..<entryCount).contains(index) else { return nil }
                ranges[index] = nil
            } else if let colon = text.firstIndex(of: ":") {
                let bounds = text[text.index(after: colon)...].split(separator: "-")
                guard let index = Int(text[..<colon]), (0..<entryCount).contains(index), bounds.count == 2,
                      let lower = Int64(bounds[0]), let upper = Int64(bounds[1]), 0 <= lower, lower < upper else { return nil }
                ranges[index, default: []].append(lower..<upper)
            } else {
                guard let index = Int(text), (0..<entryCount).contains(index) else { return nil }
                completed.insert(index)
            }
        }
        return (completed, ranges.filter { !completed.contains($0.key) }.mapValues(merged))
    }

    /// Replaces the journal atomically with `key`, `completed` and `ranges`.
    private static func writeJournal(_ path: String, key: String, completed: Set<Int>,
                                     ranges: [Int: [Range<Int64>]]) throws(BundleError) {
        var text = key + "\n"
        for index in completed.sorted() { text += "\(index)\n" }
        for (index, list) in ranges.sorted(by: { $0.key < $1.key }) {
            for range in list { text += "\(index):\(range.lowerBound)-\(range.upperBound)\n" }
        }
        try AtomicFile.write(path, Array(text.utf8))
    }

    /// Whether all bytes of `entry` lie in files marked intact.
    private static func entry(_ entry: TarLayout.Entry, liesIn intact: [Bool], chunkSize: Int64?) -> Bool {
        guard let chunkSize else { return intact.first ?? false }
        let first = Int(entry.headerOffset / chunkSize)
        let last = Int((entry.endOffset - 1) / chunkSize)
        return (first...last).allSatisfy { $0 < intact.count && intact[$0] }
    }
}
