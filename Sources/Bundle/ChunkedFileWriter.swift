#if canImport(Glibc)
import Glibc
import CWriteback
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Random-access writes into a logical byte range [0, totalSize) stored as one file or as
/// chunk files of `chunkSize` bytes (`NAME.0000.chunk`, `NAME.0001.chunk`, ...; concatenated
/// they are the whole). Files are created at their final size (sparse) under `.partial`
/// names, so concurrent tasks can `pwrite` disjoint ranges in any order, and a killed run
/// never leaves a file that looks complete; `commit` renames them to their final names.
public final class ChunkedFileWriter: Sendable {
    /// Logical size in bytes.
    public let totalSize: Int64
    /// Bytes per chunk file, or nil for one file.
    public let chunkSize: Int64?
    /// The files under their final names, in order.
    public let finalPaths: [String]
    /// The files while being written (`<final>.partial`), in order.
    public let partialPaths: [String]
    /// Per file: true when an existing partial file of the right size was reopened (its
    /// content is kept), false when it was created empty.
    public let reopened: [Bool]

    private let basePath: String
    private let descriptors: [Int32]
    private let sizes: [Int64]
    private let committed = Atomic<Bool>(false)

    /// The final name of chunk `index` of `finalPath`: `finalPath.0000.chunk` and so on (with
    /// `digits`, as wide as a chunk set numbered otherwise).
    public static func chunkPath(_ finalPath: String, index: Int, digits: Int = 4) -> String {
        let number = String(index)
        return finalPath + "." + String(repeating: "0", count: max(0, digits - number.count)) + number + ".chunk"
    }

    /// The files a writer with these parameters uses: final and partial names and sizes.
    public static func plannedFiles(finalPath: String, totalSize: Int64, chunkSize: Int64?)
        -> [(final: String, partial: String, size: Int64)]
    {
        guard let chunkSize, chunkSize > 0 else { return [(finalPath, finalPath + ".partial", totalSize)] }
        let count = max(1, (totalSize + chunkSize - 1) / chunkSize)
        return (0..<count).map { i in
            let path = chunkPath(finalPath, index: Int(i))
            return (path, path + ".partial", min(chunkSize, totalSize - i * chunkSize))
        }
    }

    /// Opens the partial files for writing. Without `resume` every file is created empty
    /// (truncating leftovers); with it, a partial file that exists with exactly the expected
    /// size is reopened as it is (see `reopened`), any other is recreated.
    public init(finalPath: String, totalSize: Int64, chunkSize: Int64?, resume: Bool) throws(BundleError) {
        guard totalSize >= 0 else {
            throw .outOfRange(file: finalPath, offset: 0, length: totalSize, size: totalSize)
        }
        if let chunkSize, chunkSize <= 0 {
            throw .outOfRange(file: finalPath, offset: 0, length: chunkSize, size: totalSize)
        }
        let planned = Self.plannedFiles(finalPath: finalPath, totalSize: totalSize, chunkSize: chunkSize)
        let finals = planned.map(\.final)
        let partials = planned.map(\.partial)
        let sizes = planned.map(\.size)

        var descriptors = [Int32]()
        var reopened = [Bool]()
        func closeAll() { for fd in descriptors { close(fd) } }
        for file in planned {
            let (path, size) = (file.partial, file.size)
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else {
                let code = errno
                closeAll()
                throw BundleError.write(path: path, operation: "create", errno: code)
            }
            descriptors.append(fd)
            var info = stat()
            guard fstat(fd, &info) == 0 else {
                let code = errno
                closeAll()
                throw .io(path: path, operation: "stat", errno: code)
            }
            if resume && Int64(info.st_size) == size {
                reopened.append(true)
                continue
            }
            // Drop old content, then extend: the file reads as zeros and takes no space yet.
            guard ftruncate(fd, 0) == 0, ftruncate(fd, off_t(size)) == 0 else {
                let code = errno
                closeAll()
                throw BundleError.write(path: path, operation: "size", errno: code)
            }
            reopened.append(false)
        }
        self.basePath = finalPath
        self.totalSize = totalSize
        self.chunkSize = chunkSize
        self.finalPaths = finals
        self.partialPaths = partials
        self.reopened = reopened
        self.descriptors = descriptors
        self.sizes = sizes
        // (From here on a throw releases self, and deinit closes the descriptors.)
        // Partial files of other chunk counts (an older plan) would only confuse.
        try Self.removeStrayChunks(
            finalPath: finalPath, keeping: Set(partials.map { TarIO.splitPath($0).name }), suffix: ".partial")
        if chunkSize != nil && unlink(finalPath + ".partial") != 0 && errno != ENOENT {
            throw .io(path: finalPath + ".partial", operation: "remove the stale partial file", errno: errno)
        }
        // The new names must survive a crash before anything (a journal) refers to them.
        try TarIO.syncDirectory(of: finalPath)
    }

    deinit {
        for fd in descriptors { close(fd) }
    }

    /// Writes `bytes` at logical `offset`, splitting across chunk files as needed. Safe to
    /// call concurrently for disjoint ranges: each piece is one positioned write.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(BundleError) {
        let length = Int64(bytes.count)
        guard offset >= 0, length <= totalSize - offset else {
            throw .outOfRange(file: partialPaths[0], offset: offset, length: length, size: totalSize)
        }
        guard !committed.load(ordering: .acquiring) else { throw .alreadyCommitted(file: finalPaths[0]) }
        guard let base = bytes.baseAddress, length > 0 else { return }
        var done: Int64 = 0
        while done < length {
            let position = offset + done
            let (file, within) = locate(position)
            let piece = min(length - done, sizes[file] - within)
            try writeFully(file: file, base + Int(done), count: Int(piece), at: within)
            done += piece
        }
    }

    /// Reads `buffer.count` bytes at logical `offset` back (from the page cache, usually): how a
    /// blob written out of order is hashed once the bytes before it are in.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws(BundleError) {
        let length = Int64(buffer.count)
        guard offset >= 0, length <= totalSize - offset else {
            throw .outOfRange(file: partialPaths[0], offset: offset, length: length, size: totalSize)
        }
        guard let base = buffer.baseAddress else { return }
        var done: Int64 = 0
        while done < length {
            let (file, within) = locate(offset + done)
            let piece = min(length - done, sizes[file] - within)
            let n = pread(descriptors[file], base + Int(done), Int(piece), off_t(within))
            if n < 0 {
                if errno == EINTR { continue }
                throw BundleError.io(path: partialPaths[file], operation: "read back", errno: errno)
            }
            if n == 0 { throw BundleError.io(path: partialPaths[file], operation: "read back", errno: EIO) }
            done += Int64(n)
        }
    }

    /// Writes zeros over [offset, offset+length): used for tar padding and end blocks so that
    /// a reused partial file cannot keep stale bytes there.
    public func writeZeros(at offset: Int64, length: Int64) throws(BundleError) {
        var done: Int64 = 0
        while done < length {
            let piece = min(length - done, Int64(Self.zeros.count))
            try TarIO.withBytes(Self.zeros) { zeros throws(BundleError) in
                try write(UnsafeRawBufferPointer(rebasing: zeros[0..<Int(piece)]), at: offset + done)
            }
            done += piece
        }
    }

    private static let zeros = [UInt8](repeating: 0, count: 64 * 1024)

    /// Makes the bytes of [offset, offset+length) durable: `fdatasync` of each file the range
    /// touches. Callers record progress only after this returns.
    public func sync(offset: Int64, length: Int64) throws(BundleError) {
        guard length > 0 else { return }
        let first = locate(offset).file
        let last = locate(min(totalSize - 1, offset + length - 1)).file
        for file in first...last {
            try dataSync(file)
        }
    }

    /// `fsync` of every file.
    public func sync() throws(BundleError) {
        for (fd, path) in zip(descriptors, partialPaths) {
            if fsync(fd) != 0 { throw BundleError.write(path: path, operation: "fsync", errno: errno) }
        }
    }

    /// Makes every file durable and gives it its final name, then makes the names durable.
    /// Stale chunk files of an older bundle with the same name (more chunks, or chunked vs.
    /// not) are removed first, so the directory never mixes two versions.
    /// Returns the final paths in order.
    @discardableResult
    public func commit() throws(BundleError) -> [String] {
        if committed.load(ordering: .acquiring) { return finalPaths }
        try sync()
        let base = basePath
        try Self.removeStrayChunks(finalPath: base, keeping: Set(finalPaths.map { TarIO.splitPath($0).name }), suffix: "")
        if chunkSize != nil, unlink(base) != 0, errno != ENOENT {
            throw .io(path: base, operation: "remove the stale unchunked file", errno: errno)
        }
        for (partial, final) in zip(partialPaths, finalPaths) {
            guard rename(partial, final) == 0 else {
                throw .io(path: partial, operation: "rename to \(final)", errno: errno)
            }
        }
        try TarIO.syncDirectory(of: finalPaths[0])
        committed.store(true, ordering: .releasing)
        return finalPaths
    }

    /// A run killed inside `commit` leaves some chunks renamed to their final names and the
    /// rest still partial. When that run's journal is being resumed, those final files (synced
    /// before the rename, and of this very plan) go back to their partial names so their
    /// entries are kept instead of downloaded again.
    public static func undoHalfCommit(finalPath: String, totalSize: Int64, chunkSize: Int64?) {
        var info = stat()
        for file in plannedFiles(finalPath: finalPath, totalSize: totalSize, chunkSize: chunkSize)
        where stat(file.partial, &info) != 0 && errno == ENOENT && stat(file.final, &info) == 0 && Int64(info.st_size) == file.size {
            _ = rename(file.final, file.partial)
        }
    }

    /// Which file holds logical `offset`, and where in it.
    private func locate(_ offset: Int64) -> (file: Int, within: Int64) {
        guard let chunkSize else { return (0, offset) }
        let file = min(Int(offset / chunkSize), sizes.count - 1)
        return (file, offset - Int64(file) * chunkSize)
    }

    private func writeFully(file: Int, _ base: UnsafeRawPointer, count: Int, at offset: Int64) throws(BundleError) {
        var written = 0
        while written < count {
            let n = pwrite(descriptors[file], base + written, count - written, off_t(offset) + off_t(written))
            if n < 0 {
                if errno == EINTR { continue }
                throw BundleError.write(path: partialPaths[file], operation: "write", errno: errno)
            }
            if n == 0 { throw BundleError.write(path: partialPaths[file], operation: "write", errno: EIO) }
            written += n
        }
        startWriteback(file: file, offset: offset, count: count)
    }

    /// Asks the kernel to start writing to disk, without waiting, the whole `writebackBlock`s
    /// this write completes (a stream writes forward, so the blocks it leaves behind are done).
    /// Every byte is made durable (fdatasync) before the journal records it; started early, the
    /// disk writes overlap the download instead of all landing in that fdatasync at a blob's
    /// end. Only whole blocks: a page written back half full is written again once filled
    /// (per write, that cost the bench 7% more disk writes).
    private func startWriteback(file: Int, offset: Int64, count: Int) {
        #if os(Linux)
        let block = Self.writebackBlock
        let from = offset / block * block
        let to = (offset + Int64(count)) / block * block
        if to > from { _ = sync_file_range(descriptors[file], from, to - from, dkp_sync_file_range_write) }
        #endif
    }

    static let writebackBlock: Int64 = 1 << 20

    private func dataSync(_ file: Int) throws(BundleError) {
        #if canImport(Glibc)
        let result = fdatasync(descriptors[file])
        #else
        let result = fsync(descriptors[file])
        #endif
        if result != 0 { throw BundleError.write(path: partialPaths[file], operation: "fdatasync", errno: errno) }
    }

    /// Removes `NAME.<digits>.chunk<suffix>` files beside `finalPath` whose file names are not
    /// in `keeping`.
    static func removeStrayChunks(finalPath: String, keeping: Set<String>, suffix: String) throws(BundleError) {
        let (directory, base) = TarIO.splitPath(finalPath)
        guard let dir = opendir(directory) else {
            throw .io(path: directory, operation: "list", errno: errno)
        }
        defer { closedir(dir) }
        let prefix = base + "."
        let tail = ".chunk" + suffix
        var stray = [String]()
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: MemoryLayout.size(ofValue: entry.pointee.d_name)) {
                    String(cString: $0)
                }
            }
            guard name.hasPrefix(prefix), name.hasSuffix(tail) else { continue }
            let middle = name.dropFirst(prefix.count).dropLast(tail.count)
            guard middle.count >= 4, middle.allSatisfy({ $0.isASCII && $0.isNumber }) else { continue }
            if !keeping.contains(name) { stray.append(TarIO.joinPath(directory, name)) }
        }
        for path in stray where unlink(path) != 0 && errno != ENOENT {
            throw .io(path: path, operation: "remove the stale chunk", errno: errno)
        }
    }
}
