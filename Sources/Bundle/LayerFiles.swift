import CArchive
import Foundation
import OCI

/// Errors of reading files out of image layers and of building layers.
public enum LayerError: Error, CustomStringConvertible, Sendable, Equatable {
    /// libarchive could not read the layer: not a tar, a corrupt or truncated gzip/zstd
    /// stream, a truncated tar. Carries libarchive's message.
    case malformedLayer(String)
    /// A wanted file is larger than the limit given to the reader.
    case fileTooLarge(path: String, size: Int64, limit: Int)
    /// A wanted path is a hard link whose target was not captured earlier in the layer.
    case unresolvedHardLink(path: String, target: String)
    /// A path given to the layer builder is empty or climbs out of the root (`..`).
    case invalidPath(String)
    /// The layer builder was asked for a compression it cannot write.
    case unsupportedCompression(LayerCompression)
    /// libarchive failed while writing a layer.
    case writeFailed(String)

    public var description: String {
        switch self {
        case .malformedLayer(let message):
            return "malformed image layer: \(message)"
        case .fileTooLarge(let path, let size, let limit):
            return "file \(path) in the image layer is \(size) bytes, more than the limit of \(limit) bytes"
        case .unresolvedHardLink(let path, let target):
            return "file \(path) in the image layer is a hard link to \(target), which was not read"
        case .invalidPath(let path):
            return "invalid path in a layer: \"\(path)\""
        case .unsupportedCompression(let compression):
            return "cannot write a layer with compression \(compression.rawValue)"
        case .writeFailed(let message):
            return "writing a layer failed: \(message)"
        }
    }
}

/// What one layer holds of a set of wanted paths.
public struct LayerScan: Sendable, Equatable {
    /// Wanted paths that are regular files in this layer, with their contents
    /// (for a path present several times, the last entry).
    public var files: [String: [UInt8]]
    /// Wanted paths this layer removes from the layers below it: by a whiteout of the
    /// path or of one of its parent directories (`dir/.wh.name`), or by an opaque
    /// directory above it (`dir/.wh..wh..opq`) when this layer does not hold the path itself,
    /// or by a regular file in this layer where one of its parent directories would be.
    public var deleted: Set<String>
    /// Wanted paths present in this layer as something other than a regular file
    /// (directory, symbolic link, device...): they hide the layers below but have no
    /// contents to return.
    public var shadowed: Set<String>
    /// The targets of the wanted paths that are symbolic links in this layer (also in `shadowed`).
    public var symlinks: [String: String]

    public init(
        files: [String: [UInt8]] = [:], deleted: Set<String> = [], shadowed: Set<String> = [],
        symlinks: [String: String] = [:]
    ) {
        self.files = files
        self.deleted = deleted
        self.shadowed = shadowed
        self.symlinks = symlinks
    }

    /// Whether this layer decides `path` for every layer below it (found, deleted or shadowed).
    public func resolves(_ path: String) -> Bool {
        files[path] != nil || deleted.contains(path) || shadowed.contains(path)
    }
}

/// Reads chosen files out of image layers (tar, gzip tar or zstd tar) as they stream in,
/// without holding a layer in memory.
public enum LayerFiles {
    /// Bytes handed from the async producer to libarchive at most at once (chunks).
    static let queueCapacity = 3

    /// `path` without a leading `/` or `./`, without `.` components, empty components or a trailing `/`.
    public static func normalize(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: true)
            .filter { $0 != "." }
            .joined(separator: "/")
    }

    /// Reads the `wanted` paths out of one layer.
    ///
    /// The layer's bytes are pulled from `layer` by a task and decoded by libarchive on a
    /// dedicated thread; at most a few chunks are buffered between them. Paths in the
    /// result are normalized (see `normalize`). With `stopWhenFound`, reading stops as
    /// soon as every wanted path has been seen once (a later duplicate entry of the same
    /// path in this layer would then be missed); otherwise the whole layer is read.
    ///
    /// Errors: a `LayerError` for a malformed layer or a too large wanted file; an error
    /// thrown by `layer` is rethrown as it is.
    public static func scan<Bytes: AsyncSequence & Sendable>(
        layer: Bytes, wanted: Set<String>, maxFileSize: Int = 16 << 20, stopWhenFound: Bool = false
    ) async throws -> LayerScan where Bytes.Element == [UInt8] {
        let wantedPaths = Set(wanted.map(normalize).filter { !$0.isEmpty })
        let handoff = ChunkHandoff(capacity: queueCapacity)

        return try await withThrowingTaskGroup(of: LayerScan?.self) { group in
            group.addTask {
                await produce(layer, into: handoff)
                return nil
            }
            group.addTask {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<LayerScan, Error>) in
                    let thread = Thread {
                        let result: Result<LayerScan, Error>
                        do {
                            var reader = LayerReader(
                                wanted: wantedPaths, maxFileSize: maxFileSize, stopWhenFound: stopWhenFound)
                            result = .success(try reader.read(from: handoff))
                        } catch {
                            result = .failure(handoff.producerError ?? error)
                        }
                        handoff.closeConsumer()
                        continuation.resume(with: result)
                    }
                    thread.name = "layer-scan"
                    thread.stackSize = 2 << 20
                    thread.start()
                }
            }
            var scan: LayerScan?
            while let next = try await group.next() {
                if let next {
                    scan = next
                    group.cancelAll()  // the producer: nothing more is read
                }
            }
            guard let scan else {
                // The reader always returns a scan or throws.
                throw LayerError.malformedLayer("the layer reader ended without a result")
            }
            return scan
        }
    }

    /// Reads the `wanted` paths out of an image whose layers are opened by `openLayer`
    /// (`openLayer(i)` opens layer `i` counting from the bottom, 0 is the base layer).
    ///
    /// Layers are visited from the top (`layerCount - 1`) downwards, and no further layer is
    /// opened once every wanted path is decided: found as a file (the highest layer's file
    /// wins), removed by a whiteout, or hidden by a non-file entry (directory, symbolic link).
    /// Paths found nowhere, deleted or not regular files are absent from the result. Result
    /// keys are normalized paths (see `normalize`). `stopWhenFound` is passed to `scan` for
    /// each layer.
    public static func readFiles<S: AsyncSequence & Sendable>(
        _ wanted: Set<String>, layerCount: Int, maxFileSize: Int = 16 << 20, stopWhenFound: Bool = false,
        openLayer: @Sendable (Int) async throws -> S
    ) async throws -> [String: [UInt8]] where S.Element == [UInt8] {
        var remaining = Set(wanted.map(normalize).filter { !$0.isEmpty })
        var found: [String: [UInt8]] = [:]
        var index = layerCount - 1
        while index >= 0, !remaining.isEmpty {
            try Task.checkCancellation()
            let bytes = try await openLayer(index)
            let layer = try await scan(
                layer: bytes, wanted: remaining, maxFileSize: maxFileSize, stopWhenFound: stopWhenFound)
            for path in remaining where layer.resolves(path) {
                if let contents = layer.files[path] { found[path] = contents }
                remaining.remove(path)
            }
            index -= 1
        }
        return found
    }

    /// Feeds `layer` into `handoff` until it ends, fails, the reader stops or the task is cancelled.
    private static func produce<Bytes: AsyncSequence & Sendable>(
        _ layer: Bytes, into handoff: ChunkHandoff
    ) async where Bytes.Element == [UInt8] {
        do {
            for try await chunk in layer {
                if chunk.isEmpty { continue }
                guard try await handoff.put(chunk) else { return }
            }
            try Task.checkCancellation()
            handoff.finish(error: nil)
        } catch {
            handoff.finish(error: error)
        }
    }
}

// MARK: - The handoff between the async producer and the libarchive thread

/// A bounded queue of chunks: the producer side is async (it suspends, never blocks, when the
/// queue is full); the consumer side is a plain thread that blocks on a condition variable.
final class ChunkHandoff: @unchecked Sendable {
    enum Take {
        case chunk([UInt8])
        case end
        case failed
    }

    private let condition = NSCondition()
    private let capacity: Int
    private var queue: [[UInt8]] = []
    private var producerDone = false
    private var storedError: (any Error)?
    private var consumerClosed = false
    private var producerCancelled = false
    private var spaceWaiter: CheckedContinuation<Void, Never>?

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    /// The error the producer ended with, if any.
    var producerError: (any Error)? {
        condition.lock()
        defer { condition.unlock() }
        return storedError
    }

    /// Queues `chunk`, waiting for room. False when the consumer has stopped reading.
    func put(_ chunk: [UInt8]) async throws -> Bool {
        while true {
            if let accepted = offer(chunk) { return accepted }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    waitForRoom(continuation)
                }
            } onCancel: {
                cancelProducer()
            }
            try Task.checkCancellation()
        }
    }

    /// Queues `chunk` if there is room: true when queued, false when the consumer is gone,
    /// nil when the queue is full.
    private func offer(_ chunk: [UInt8]) -> Bool? {
        condition.lock()
        defer { condition.unlock() }
        if consumerClosed { return false }
        guard queue.count < capacity else { return nil }
        queue.append(chunk)
        condition.signal()
        return true
    }

    private func waitForRoom(_ continuation: CheckedContinuation<Void, Never>) {
        condition.lock()
        if consumerClosed || producerCancelled || queue.count < capacity {
            condition.unlock()
            continuation.resume()
            return
        }
        spaceWaiter = continuation
        condition.unlock()
    }

    private func cancelProducer() {
        condition.lock()
        producerCancelled = true
        let waiter = spaceWaiter
        spaceWaiter = nil
        condition.unlock()
        waiter?.resume()
    }

    /// Marks the end of the bytes; `error` non-nil when the producer failed.
    func finish(error: (any Error)?) {
        condition.lock()
        producerDone = true
        if storedError == nil { storedError = error }
        condition.broadcast()
        condition.unlock()
    }

    /// The next chunk, blocking the calling thread until one is there or the bytes end.
    func take() -> Take {
        condition.lock()
        while queue.isEmpty && !producerDone {
            condition.wait()
        }
        if !queue.isEmpty {
            let chunk = queue.removeFirst()
            let waiter = spaceWaiter
            spaceWaiter = nil
            condition.unlock()
            waiter?.resume()
            return .chunk(chunk)
        }
        let failed = storedError != nil
        condition.unlock()
        return failed ? .failed : .end
    }

    /// The consumer stops reading: queued chunks are dropped and the producer told to stop.
    func closeConsumer() {
        condition.lock()
        consumerClosed = true
        queue.removeAll()
        let waiter = spaceWaiter
        spaceWaiter = nil
        condition.unlock()
        waiter?.resume()
    }
}

// MARK: - The libarchive side

/// libarchive's view of the handoff: the read callback copies each chunk into a buffer
/// owned here, which stays valid until the next callback as libarchive requires.
private final class ReadSource {
    let handoff: ChunkHandoff
    private var buffer: UnsafeMutableRawPointer?
    private var bufferSize = 0

    init(handoff: ChunkHandoff) {
        self.handoff = handoff
    }

    deinit {
        buffer?.deallocate()
    }

    /// Returns the byte count placed at `*out`, 0 at the end, -1 on failure.
    func read(_ out: UnsafeMutablePointer<UnsafeRawPointer?>?) -> Int {
        switch handoff.take() {
        case .end:
            return 0
        case .failed:
            return -1
        case .chunk(let chunk):
            if chunk.count > bufferSize {
                buffer?.deallocate()
                buffer = .allocate(byteCount: chunk.count, alignment: 16)
                bufferSize = chunk.count
            }
            guard let buffer else { return -1 }
            chunk.withUnsafeBytes { bytes in
                if let base = bytes.baseAddress {
                    buffer.copyMemory(from: base, byteCount: bytes.count)
                }
            }
            out?.pointee = UnsafeRawPointer(buffer)
            return chunk.count
        }
    }
}

private func readCallback(
    _ archive: OpaquePointer?, _ clientData: UnsafeMutableRawPointer?, _ out: UnsafeMutablePointer<UnsafeRawPointer?>?
) -> la_ssize_t {
    guard let clientData else { return -1 }
    let source = Unmanaged<ReadSource>.fromOpaque(clientData).takeUnretainedValue()
    return la_ssize_t(source.read(out))
}

private let fileTypeMask: UInt32 = 0o170000
private let fileTypeRegular: UInt32 = 0o100000
private let fileTypeSymlink: UInt32 = 0o120000
private let whiteoutPrefix = ".wh."
private let opaqueMarker = ".wh..wh..opq"

/// The synchronous reading of one layer, run on the dedicated thread.
private struct LayerReader {
    let wanted: Set<String>
    /// Every parent directory of a wanted path, to each the wanted paths under it.
    let wantedUnder: [String: [String]]
    let maxFileSize: Int
    let stopWhenFound: Bool

    var files: [String: [UInt8]] = [:]
    var shadowed: Set<String> = []
    var symlinks: [String: String] = [:]
    var whiteouts: Set<String> = []
    var opaqueDirectories: Set<String> = []
    /// Wanted paths one of whose parent directories is a regular file in this layer.
    var replacedParents: Set<String> = []
    var seen: Set<String> = []

    init(wanted: Set<String>, maxFileSize: Int, stopWhenFound: Bool) {
        self.wanted = wanted
        self.maxFileSize = maxFileSize
        self.stopWhenFound = stopWhenFound
        var under: [String: [String]] = [:]
        for path in wanted {
            var components = path.split(separator: "/").dropLast()
            while !components.isEmpty {
                under[components.joined(separator: "/"), default: []].append(path)
                components = components.dropLast()
            }
            under["", default: []].append(path)  // the root, for an opaque marker at the top
        }
        self.wantedUnder = under
    }

    mutating func read(from handoff: ChunkHandoff) throws -> LayerScan {
        guard let archive = archive_read_new() else {
            throw LayerError.malformedLayer("libarchive could not allocate a reader")
        }
        defer { archive_read_free(archive) }
        archive_read_support_filter_gzip(archive)
        archive_read_support_filter_zstd(archive)
        archive_read_support_filter_xz(archive)
        archive_read_support_format_tar(archive)
        archive_read_support_format_empty(archive)

        let source = ReadSource(handoff: handoff)
        let client = Unmanaged.passUnretained(source).toOpaque()
        return try withExtendedLifetime(source) {
            guard archive_read_open(archive, client, nil, readCallback, nil) == ARCHIVE_OK else {
                throw LayerError.malformedLayer(Self.message(archive))
            }
            try readEntries(archive)
            return result()
        }
    }

    private mutating func readEntries(_ archive: OpaquePointer) throws {
        var entry: OpaquePointer?
        while true {
            if stopWhenFound, seen.count == wanted.count { return }
            let status = archive_read_next_header(archive, &entry)
            if status == ARCHIVE_EOF { return }
            guard status >= ARCHIVE_WARN, let entry else {
                throw LayerError.malformedLayer(Self.message(archive))
            }
            guard let raw = Self.pathname(entry) else { continue }
            let path = LayerFiles.normalize(raw)
            if path.isEmpty { continue }

            let (directory, name) = Self.split(path)
            if name.hasPrefix(whiteoutPrefix) {
                if name == opaqueMarker {
                    opaqueDirectories.insert(directory)
                } else {
                    let target = directory.isEmpty
                        ? String(name.dropFirst(whiteoutPrefix.count))
                        : directory + "/" + name.dropFirst(whiteoutPrefix.count)
                    whiteouts.insert(target)
                    if wanted.contains(target) { seen.insert(target) }
                    for path in wantedUnder[target] ?? [] { seen.insert(path) }
                }
                continue
            }
            if wanted.contains(path) {
                seen.insert(path)
                try capture(archive, entry, path: path)
            } else if let below = wantedUnder[path],
                archive_entry_filetype(entry) & fileTypeMask == fileTypeRegular
            {
                // A regular file where a wanted path expects a directory: the wanted paths cannot exist.
                for path in below {
                    files[path] = nil
                    symlinks[path] = nil
                    shadowed.remove(path)
                    replacedParents.insert(path)
                    seen.insert(path)
                }
            }
        }
    }

    private mutating func capture(_ archive: OpaquePointer, _ entry: OpaquePointer, path: String) throws {
        let type = archive_entry_filetype(entry) & fileTypeMask
        let hardlink = archive_entry_hardlink(entry).map { LayerFiles.normalize(String(cString: $0)) }
        let size: Int64 = archive_entry_size_is_set(entry) != 0 ? Int64(archive_entry_size(entry)) : -1

        if type == fileTypeRegular || hardlink != nil {
            if let hardlink, size <= 0 {
                // A hard link without data of its own: the contents of an earlier entry.
                guard let contents = files[hardlink] else {
                    throw LayerError.unresolvedHardLink(path: path, target: hardlink)
                }
                store(path, contents)
                return
            }
            if size > Int64(maxFileSize) {
                throw LayerError.fileTooLarge(path: path, size: size, limit: maxFileSize)
            }
            store(path, try readData(archive, path: path, expected: size))
            return
        }
        files[path] = nil
        symlinks[path] = nil
        shadowed.insert(path)
        if type == fileTypeSymlink, let target = archive_entry_symlink(entry) {
            symlinks[path] = String(cString: target)
        }
    }

    private mutating func store(_ path: String, _ contents: [UInt8]) {
        files[path] = contents
        shadowed.remove(path)
        symlinks[path] = nil
    }

    private func readData(_ archive: OpaquePointer, path: String, expected: Int64) throws -> [UInt8] {
        var contents: [UInt8] = []
        if expected > 0 { contents.reserveCapacity(Int(expected)) }
        let blockSize = 64 << 10
        var block = [UInt8](repeating: 0, count: blockSize)
        while true {
            let count = block.withUnsafeMutableBytes { archive_read_data(archive, $0.baseAddress, blockSize) }
            if count == 0 { break }
            guard count > 0 else {
                throw LayerError.malformedLayer("\(path): \(Self.message(archive))")
            }
            if contents.count + count > maxFileSize {
                throw LayerError.fileTooLarge(path: path, size: Int64(contents.count + count), limit: maxFileSize)
            }
            contents.append(contentsOf: block[0..<count])
        }
        return contents
    }

    private func result() -> LayerScan {
        var deleted = replacedParents
        for target in whiteouts {
            if wanted.contains(target) { deleted.insert(target) }
            for path in wantedUnder[target] ?? [] { deleted.insert(path) }
        }
        for directory in opaqueDirectories {
            for path in wantedUnder[directory] ?? [] { deleted.insert(path) }
        }
        // Whiteouts apply to the layers below only: what this layer holds stays.
        deleted.subtract(files.keys)
        deleted.subtract(shadowed)
        return LayerScan(files: files, deleted: deleted, shadowed: shadowed, symlinks: symlinks)
    }

    private static func split(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return ("", path) }
        return (String(path[..<slash]), String(path[path.index(after: slash)...]))
    }

    private static func pathname(_ entry: OpaquePointer) -> String? {
        if let utf8 = archive_entry_pathname_utf8(entry) { return String(cString: utf8) }
        if let raw = archive_entry_pathname(entry) { return String(cString: raw) }
        return nil
    }

    static func message(_ archive: OpaquePointer) -> String {
        if let text = archive_error_string(archive) { return String(cString: text) }
        return "libarchive error \(archive_errno(archive))"
    }
}
