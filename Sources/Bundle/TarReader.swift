#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CArchive

/// Reads tars with libarchive: one file, or an ordered list of chunk files that concatenated
/// form the tar (read in sequence, never joined on disk). Entries arrive in tar order with
/// their data in blocks, so verify and push can stream a bundle without unpacking it.
/// Truncated input and input that is not a tar are errors naming the file.
public struct TarReader {
    /// One entry as the tar describes it.
    public struct Entry: Sendable, Equatable {
        /// Path inside the tar (GNU long names and PAX paths resolved).
        public let name: String
        /// Data size in bytes.
        public let size: Int64
        /// Whether it is a regular file (bundles hold nothing else; older tars may hold
        /// directory entries).
        public let isRegularFile: Bool
        /// Offset in the (concatenated) tar of the entry's first header block.
        public let headerOffset: Int64
        /// Offset in the (concatenated) tar of the entry's first data byte: where a reader can
        /// fetch the data directly later.
        public let dataOffset: Int64
    }

    /// The data of the current entry; valid only inside the `forEachEntry` body that got it.
    /// Reading is optional: unread data is skipped (without reading it from disk).
    public struct EntryData {
        fileprivate let session: ReadSession
        fileprivate let serial: Int

        /// Delivers the entry's data in blocks, in order (at most 1 MiB each, valid only during
        /// the call). Can be called once per entry.
        public func read(_ block: (UnsafeRawBufferPointer) throws -> Void) throws {
            try session.readData(serial: serial, block)
        }

        /// The whole data of a small entry (index.json, a manifest); throws when it is larger
        /// than `limit` bytes, so a bad tar cannot exhaust memory.
        public func readAll(limit: Int = 64 << 20) throws -> [UInt8] {
            var bytes = [UInt8]()
            // At its size at once: grown by doubling, an 8 MB index.json took 11 MB.
            if serial == session.serial, session.entrySize > 0, session.entrySize <= Int64(limit) {
                bytes.reserveCapacity(Int(session.entrySize))
            }
            try session.readData(serial: serial, limit: limit) { bytes += $0 }
            return bytes
        }
    }

    /// Names and sizes of the regular-file entries in tar order (data is skipped, not read).
    public static func entries(files: [String]) throws -> [(name: String, size: Int64)] {
        var result = [(name: String, size: Int64)]()
        try forEachEntry(files: files) { entry, _ in
            if entry.isRegularFile { result.append((entry.name, entry.size)) }
        }
        return result
    }

    /// Calls `body` for every entry in tar order with the entry and a handle to its data.
    /// Errors thrown by `body` end the iteration and are rethrown unchanged.
    public static func forEachEntry(
        files: [String], _ body: (Entry, EntryData) throws -> Void
    ) throws {
        let session = try ReadSession(files: files)
        try session.run(body)
    }
}

/// The state behind one read: the chained input files and the libarchive handle.
fileprivate final class ReadSession {
    let files: [String]
    let sizes: [Int64]
    var current = 0
    var descriptor: Int32 = -1
    var position: Int64 = 0          // in the current file
    let buffer: UnsafeMutableRawBufferPointer
    var inputError: BundleError?
    var serial = 0
    var dataRead = false
    var entrySize: Int64 = 0
    var entryName = ""
    let archive: OpaquePointer

    static let bufferSize = 1 << 20
    static let headerReadSize = 4 << 10
    /// How much the next read asks for (small after a skip, growing while data is read).
    private var readSize = ReadSession.bufferSize

    init(files: [String]) throws(BundleError) {
        guard let first = files.first else {
            throw .corrupt(file: "(no files)", detail: "no tar file given")
        }
        var sizes = [Int64]()
        for path in files {
            var info = stat()
            guard stat(path, &info) == 0 else {
                let code = errno
                if code == ENOENT && (files.count > 1 || path.hasSuffix(".chunk")) { throw .missingChunk(file: path) }
                throw .io(path: path, operation: "open", errno: code)
            }
            sizes.append(Int64(info.st_size))
        }
        if sizes.reduce(0, +) == 0 {
            throw .corrupt(file: first, detail: "the file is empty, not a tar archive")
        }
        guard let archive = archive_read_new() else {
            throw .io(path: first, operation: "start reading", errno: ENOMEM)
        }
        self.files = files
        self.sizes = sizes
        self.archive = archive
        self.buffer = .allocate(byteCount: Self.bufferSize, alignment: 4096)
        archive_read_support_format_tar(archive)
        archive_read_set_read_callback(archive, readCallback)
        archive_read_set_skip_callback(archive, skipCallback)
        archive_read_set_callback_data(archive, Unmanaged.passUnretained(self).toOpaque())
        guard archive_read_open1(archive) == ARCHIVE_OK else {
            throw failure(defaultDetail: "cannot open the archive")
        }
    }

    deinit {
        archive_read_free(archive)
        if descriptor >= 0 { close(descriptor) }
        buffer.deallocate()
    }

    /// The file the reader was in when something went wrong.
    var currentFile: String { files[min(current, files.count - 1)] }

    /// An error for the last libarchive failure: the input's own error when the read
    /// callback failed, else libarchive's message.
    func failure(defaultDetail: String) -> BundleError {
        if let inputError { return inputError }
        let message = archive_error_string(archive).map { String(cString: $0) } ?? defaultDetail
        if message.contains("Unrecognized archive format") || serial == 0 {
            return .corrupt(file: files[0], detail: "not a tar archive (\(message))")
        }
        return .corrupt(file: currentFile, detail: message)
    }

    func run(_ body: (TarReader.Entry, TarReader.EntryData) throws -> Void) throws {
        var entry: OpaquePointer?
        while true {
            // Everything before the next header: used to check the end-of-archive marker.
            let before = archive_filter_bytes(archive, 0)
            let status = archive_read_next_header(archive, &entry)
            if status == ARCHIVE_EOF {
                // A tar ends with two zero blocks; input that stops at an entry boundary
                // without them lost its tail (a missing last chunk, a cut copy).
                let after = archive_filter_bytes(archive, 0)
                if after - before < 2 * Int64(TarHeader.blockSize) {
                    throw BundleError.corrupt(
                        file: currentFile,
                        detail: "the archive ends without its end-of-archive blocks: it is truncated")
                }
                return
            }
            guard status == ARCHIVE_OK || status == ARCHIVE_WARN, let entry else {
                throw failure(defaultDetail: "cannot read the next header")
            }
            let name = archive_entry_pathname(entry).map { String(cString: $0) }
                ?? archive_entry_pathname_utf8(entry).map { String(cString: $0) } ?? ""
            let size = archive_entry_size_is_set(entry) != 0 ? archive_entry_size(entry) : 0
            let info = TarReader.Entry(
                name: name,
                size: size,
                isRegularFile: archive_entry_filetype(entry) == 0o100000,
                headerOffset: archive_read_header_position(archive),
                dataOffset: archive_filter_bytes(archive, 0))
            serial += 1
            dataRead = false
            entrySize = size
            entryName = name
            let data = TarReader.EntryData(session: self, serial: serial)
            try body(info, data)
            serial += 1  // the handle of this entry is dead from here on
            // Skip what the body left unread now, so the position measured before the next
            // header is the end of this entry.
            let skipped = archive_read_data_skip(archive)
            guard skipped == ARCHIVE_OK || skipped == ARCHIVE_WARN || skipped == ARCHIVE_EOF else {
                throw failure(defaultDetail: "cannot skip the data of '\(name)'")
            }
        }
    }

    func readData(serial: Int, limit: Int = .max, _ block: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard serial == self.serial else {
            throw BundleError.corrupt(file: currentFile, detail: "entry data read after its turn (a bug in the caller)")
        }
        guard !dataRead else {
            throw BundleError.corrupt(file: currentFile, detail: "entry '\(entryName)' read twice (a bug in the caller)")
        }
        dataRead = true
        if entrySize > Int64(limit) {
            throw BundleError.corrupt(
                file: currentFile, detail: "entry '\(entryName)' has \(entrySize) bytes, more than the \(limit) expected")
        }
        var delivered: Int64 = 0
        while true {
            var pointer: UnsafeRawPointer?
            var length = 0
            var offset: la_int64_t = 0
            let status = archive_read_data_block(archive, &pointer, &length, &offset)
            if status == ARCHIVE_EOF { break }
            guard status == ARCHIVE_OK || status == ARCHIVE_WARN else {
                throw failure(defaultDetail: "cannot read the data of '\(entryName)'")
            }
            // Sparse entries leave holes between blocks: they read as zeros.
            if offset > delivered { try deliverZeros(offset - delivered, block); delivered = offset }
            if let pointer, length > 0 {
                try block(UnsafeRawBufferPointer(start: pointer, count: length))
                delivered += Int64(length)
            }
        }
        if delivered < entrySize { try deliverZeros(entrySize - delivered, block) }
    }

    private func deliverZeros(_ count: Int64, _ block: (UnsafeRawBufferPointer) throws -> Void) throws {
        let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer { zeros.deallocate() }
        zeros.initializeMemory(as: UInt8.self, repeating: 0)
        var left = count
        while left > 0 {
            let piece = Int(min(left, Int64(zeros.count)))
            try block(UnsafeRawBufferPointer(rebasing: zeros[0..<piece]))
            left -= Int64(piece)
        }
    }

    // MARK: - input callbacks

    /// Next bytes of the chained files into the 1 MiB buffer; 0 at the end of the last file.
    func readInput(_ out: UnsafeMutablePointer<UnsafeRawPointer?>?) -> Int {
        while current < files.count {
            if position >= sizes[current] {
                advance()
                continue
            }
            if descriptor < 0 {
                descriptor = open(files[current], O_RDONLY | O_CLOEXEC)
                if descriptor < 0 {
                    inputError = errno == ENOENT && files.count > 1
                        ? .missingChunk(file: files[current])
                        : .io(path: files[current], operation: "open", errno: errno)
                    return -1
                }
            }
            // Right after a skip only the next header is needed: read little, so indexing a
            // bundle of many blobs touches headers, not data. Sequential reads grow back to 1 MiB.
            let want = Int(min(Int64(readSize), sizes[current] - position))
            readSize = min(buffer.count, readSize * 4)
            let n = pread(descriptor, buffer.baseAddress, want, off_t(position))
            if n < 0 {
                if errno == EINTR { continue }
                inputError = .io(path: files[current], operation: "read", errno: errno)
                return -1
            }
            if n == 0 {
                inputError = .corrupt(file: files[current], detail: "the file got shorter while it was read")
                return -1
            }
            position += Int64(n)
            out?.pointee = UnsafeRawPointer(buffer.baseAddress)
            return n
        }
        return 0
    }

    /// Skips up to `request` bytes without reading them, across file boundaries.
    func skipInput(_ request: Int64) -> Int64 {
        readSize = Self.headerReadSize
        var skipped: Int64 = 0
        while skipped < request && current < files.count {
            let step = min(request - skipped, sizes[current] - position)
            position += step
            skipped += step
            if position >= sizes[current] { advance() }
        }
        return skipped
    }

    private func advance() {
        if descriptor >= 0 { close(descriptor) }
        descriptor = -1
        position = 0
        current += 1
    }
}

private func readCallback(
    _ archive: OpaquePointer?, _ context: UnsafeMutableRawPointer?, _ out: UnsafeMutablePointer<UnsafeRawPointer?>?
) -> la_ssize_t {
    guard let context else { return -1 }
    return la_ssize_t(Unmanaged<ReadSession>.fromOpaque(context).takeUnretainedValue().readInput(out))
}

private func skipCallback(
    _ archive: OpaquePointer?, _ context: UnsafeMutableRawPointer?, _ request: la_int64_t
) -> la_int64_t {
    guard let context else { return 0 }
    return Unmanaged<ReadSession>.fromOpaque(context).takeUnretainedValue().skipInput(request)
}
