import CArchive
import OCI

/// Builds small image layers (tar, gzip tar or zstd tar) in memory with libarchive.
///
/// The output is deterministic: the same entries give the same bytes (GNU tar headers,
/// mode 0644 for files and 0755 for directories, owner 0:0, mtime 0, no gzip timestamp),
/// so layer digests are stable. Parent directories are written as directory entries
/// before the first entry under them. Meant for test fixtures and synthetic images of
/// a few MB; the whole layer is held in memory.
public enum LayerArchive {
    /// One entry of a layer. Paths are relative to the image root; a leading `/` or `./` is dropped.
    public enum Entry: Sendable, Hashable {
        /// A regular file.
        case file(String, [UInt8])
        /// A directory.
        case directory(String)
        /// A symbolic link to `target`.
        case symlink(String, target: String)
        /// Removes `path` (and everything under it) of the layers below: an empty `<dir>/.wh.<name>`.
        case whiteout(String)
        /// Hides everything the layers below hold under `path`: the directory and an empty
        /// `<path>/.wh..wh..opq`.
        case opaqueDirectory(String)
    }

    /// A layer of regular files, in the given order.
    public static func build(
        files: [(path: String, contents: [UInt8])], compression: LayerCompression
    ) throws(LayerError) -> [UInt8] {
        try build(entries: files.map { .file($0.path, $0.contents) }, compression: compression)
    }

    /// A layer of `entries`, in the given order (a path given twice is written twice;
    /// readers take the last one).
    public static func build(entries: [Entry], compression: LayerCompression) throws(LayerError) -> [UInt8] {
        let writer = try Writer(compression: compression)
        for entry in entries {
            switch entry {
            case .file(let path, let contents):
                let path = try checked(path)
                try writer.ensureParents(of: path)
                try writer.write(path: path, type: fileTypeRegularFile, permissions: 0o644, contents: contents)
            case .directory(let path):
                let path = try checked(path)
                try writer.ensureParents(of: path)
                try writer.ensureDirectory(path)
            case .symlink(let path, let target):
                let path = try checked(path)
                try writer.ensureParents(of: path)
                try writer.write(path: path, type: fileTypeSymbolicLink, permissions: 0o777, linkTarget: target)
            case .whiteout(let path):
                let path = try checked(path)
                let (directory, name) = split(path)
                let marker = directory.isEmpty ? ".wh." + name : directory + "/.wh." + name
                try writer.ensureParents(of: marker)
                try writer.write(path: marker, type: fileTypeRegularFile, permissions: 0o644)
            case .opaqueDirectory(let path):
                let path = try checked(path)
                try writer.ensureParents(of: path)
                try writer.ensureDirectory(path)
                try writer.write(path: path + "/.wh..wh..opq", type: fileTypeRegularFile, permissions: 0o644)
            }
        }
        return try writer.finish()
    }

    private static func checked(_ path: String) throws(LayerError) -> String {
        let normalized = LayerFiles.normalize(path)
        guard !normalized.isEmpty, !normalized.split(separator: "/").contains("..") else {
            throw .invalidPath(path)
        }
        return normalized
    }

    private static func split(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return ("", path) }
        return (String(path[..<slash]), String(path[path.index(after: slash)...]))
    }
}

private let fileTypeRegularFile: UInt32 = 0o100000
private let fileTypeDirectory: UInt32 = 0o040000
private let fileTypeSymbolicLink: UInt32 = 0o120000

/// The growing output of a writer.
private final class OutputSink {
    var bytes: [UInt8] = []
}

private func writeCallback(
    _ archive: OpaquePointer?, _ clientData: UnsafeMutableRawPointer?, _ buffer: UnsafeRawPointer?, _ length: Int
) -> la_ssize_t {
    guard let clientData else { return -1 }
    let sink = Unmanaged<OutputSink>.fromOpaque(clientData).takeUnretainedValue()
    if length > 0, let buffer {
        sink.bytes.append(contentsOf: UnsafeRawBufferPointer(start: buffer, count: length))
    }
    return la_ssize_t(length)
}

/// One libarchive writer into an `OutputSink`.
private final class Writer {
    private let archive: OpaquePointer
    private let entry: OpaquePointer
    private let sink = OutputSink()
    private var directories: Set<String> = []
    private var closed = false

    init(compression: LayerCompression) throws(LayerError) {
        guard let archive = archive_write_new() else { throw .writeFailed("libarchive could not allocate a writer") }
        guard let entry = archive_entry_new() else {
            archive_write_free(archive)
            throw .writeFailed("libarchive could not allocate an entry")
        }
        self.archive = archive
        self.entry = entry

        var status = archive_write_set_format_gnutar(archive)
        switch compression {
        case .none:
            status = min(status, archive_write_add_filter_none(archive))
        case .gzip:
            status = min(status, archive_write_add_filter_gzip(archive))
            // No timestamp in the gzip header: the same input gives the same bytes.
            status = min(status, archive_write_set_filter_option(archive, "gzip", "timestamp", nil))
        case .zstd:
            status = min(status, archive_write_add_filter_zstd(archive))
        case .unknown:
            throw .unsupportedCompression(compression)
        }
        // No zero padding after the last block: padding after a gzip or zstd stream is
        // trailing garbage to other readers (zstd, Go's gzip); the tar's own end marker stays.
        status = min(status, archive_write_set_bytes_in_last_block(archive, 1))
        guard status >= ARCHIVE_WARN else { throw .writeFailed(message()) }
        let client = Unmanaged.passUnretained(sink).toOpaque()
        guard archive_write_open(archive, client, nil, writeCallback, nil) == ARCHIVE_OK else {
            throw .writeFailed(message())
        }
    }

    deinit {
        archive_entry_free(entry)
        archive_write_free(archive)  // closes the archive too when `finish` was not reached
    }

    func ensureParents(of path: String) throws(LayerError) {
        var components = path.split(separator: "/").dropLast()
        var parents: [String] = []
        while !components.isEmpty {
            let parent = components.joined(separator: "/")
            if directories.contains(parent) { break }
            parents.append(parent)
            components = components.dropLast()
        }
        for parent in parents.reversed() {
            try ensureDirectory(parent)
        }
    }

    func ensureDirectory(_ path: String) throws(LayerError) {
        guard directories.insert(path).inserted else { return }
        try write(path: path, type: fileTypeDirectory, permissions: 0o755)
    }

    func write(
        path: String, type: UInt32, permissions: UInt32, contents: [UInt8] = [], linkTarget: String? = nil
    ) throws(LayerError) {
        archive_entry_clear(entry)
        archive_entry_set_pathname(entry, path)
        archive_entry_set_filetype(entry, type)
        archive_entry_set_perm(entry, mode_t(permissions))
        archive_entry_set_uid(entry, 0)
        archive_entry_set_gid(entry, 0)
        archive_entry_set_mtime(entry, 0, 0)
        archive_entry_set_size(entry, la_int64_t(type == fileTypeRegularFile ? contents.count : 0))
        if let linkTarget { archive_entry_set_symlink(entry, linkTarget) }
        guard archive_write_header(archive, entry) >= ARCHIVE_WARN else {
            throw .writeFailed("\(path): \(message())")
        }
        guard type == fileTypeRegularFile, !contents.isEmpty else { return }
        let failed: Bool = contents.withUnsafeBytes { bytes in
            guard let base = bytes.baseAddress else { return false }
            var offset = 0
            while offset < bytes.count {
                let written = archive_write_data(archive, base + offset, bytes.count - offset)
                if written <= 0 { return true }
                offset += written
            }
            return false
        }
        if failed { throw .writeFailed("\(path): \(message())") }
    }

    func finish() throws(LayerError) -> [UInt8] {
        guard archive_write_close(archive) == ARCHIVE_OK else { throw .writeFailed(message()) }
        return sink.bytes
    }

    private func message() -> String {
        if let text = archive_error_string(archive) { return String(cString: text) }
        return "libarchive error \(archive_errno(archive))"
    }
}
