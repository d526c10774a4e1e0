import CArchive
import Foundation

private let fileTypeMask: UInt32 = 0o170000
private let fileTypeRegular: UInt32 = 0o100000
private let fileTypeSymlink: UInt32 = 0o120000
private let whiteoutPrefix = ".wh."
private let opaqueMarker = ".wh..wh..opq"

/// The synchronous reading of one layer, run on the dedicated thread.
struct LayerReader {
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
        archive_read_support_filter_xz(archive)
        archive_read_support_format_tar(archive)
        archive_read_support_format_empty(archive)

        // zstd is decoded by the source (Streams' ZstdDecoder), gzip and xz by libarchive's filters.
        let source = LayerReadSource(handoff: handoff)
        let client = Unmanaged.passUnretained(source).toOpaque()
        return try withExtendedLifetime(source) {
            do {
                guard archive_read_open(archive, client, nil, layerReadCallback, nil) == ARCHIVE_OK else {
                    throw LayerError.malformedLayer(Self.message(archive))
                }
                try readEntries(archive)
                return result()
            } catch {
                // libarchive only saw a failed read: the decoder's error says what is wrong.
                if let failure = source.zstdFailure { throw LayerError.malformedLayer(failure.description) }
                throw error
            }
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
