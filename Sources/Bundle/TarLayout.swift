import Streams

/// The complete byte layout of a tar, computed before any data exists: where each entry's
/// header and data go. Every size is known from descriptors before downloading, so blobs
/// can be downloaded concurrently straight to their final offsets (see `TarFileWriter`).
public struct TarLayout: Sendable {
    /// One regular file of the tar.
    public struct Entry: Sendable, Equatable {
        /// Path inside the tar.
        public let name: String
        /// Data size in bytes.
        public let size: Int64
        /// Offset of the first header block (the GNU long-name entry when there is one).
        public let headerOffset: Int64
        /// Offset of the first data byte.
        public let dataOffset: Int64

        /// Offset just past the entry's padded data: where the next entry's header starts.
        public var endOffset: Int64 { dataOffset + TarHeader.paddedSize(size) }
    }

    /// Entries in tar order.
    public let entries: [Entry]
    /// Bytes of the whole tar, including the two zero blocks that end it; no record padding
    /// after them (Go's archive/tar writes none).
    public let totalSize: Int64
    private let positions: [String: Int]
    private let contentTag: String

    /// Lays out `entries` in the given order. Rejects empty, absolute, `..`-containing,
    /// `.`-containing, empty-component and trailing-slash names, NUL bytes, negative sizes and
    /// duplicates, all of which would be unsafe or ambiguous to extract.
    /// `contentTag` stands for content that names and sizes do not capture (the bytes of
    /// small entries such as index.json); it goes into the fingerprint.
    public init(entries: [(name: String, size: Int64)], contentTag: String = "") throws(BundleError) {
        var laidOut = [Entry]()
        laidOut.reserveCapacity(entries.count)
        var positions = [String: Int](minimumCapacity: entries.count)
        var offset: Int64 = 0
        for (index, item) in entries.enumerated() {
            try Self.validate(name: item.name)
            guard item.size >= 0 else {
                throw .invalidEntryName(name: item.name, reason: "negative size \(item.size)")
            }
            guard positions.updateValue(index, forKey: item.name) == nil else {
                throw .duplicateEntry(name: item.name)
            }
            let dataOffset = offset + TarHeader.headerSize(name: item.name)
            let entry = Entry(name: item.name, size: item.size, headerOffset: offset, dataOffset: dataOffset)
            laidOut.append(entry)
            offset = entry.endOffset
        }
        self.entries = laidOut
        self.positions = positions
        self.contentTag = contentTag
        self.totalSize = offset + 2 * Int64(TarHeader.blockSize)
    }

    /// SHA-256 hex of the names and sizes in order: the same plan gives the same fingerprint,
    /// so an interrupted run can tell whether its partial files still fit.
    public var fingerprint: String {
        let hasher = SHA256()
        hasher.update(Array("\(contentTag)\n".utf8))
        for entry in entries {
            hasher.update(Array(entry.name.utf8))
            hasher.update(Array("\u{0}\(entry.size)\n".utf8))
        }
        return hasher.finalize().hex
    }

    /// Position of the entry called `name`, if any.
    public func index(of name: String) -> Int? { positions[name] }

    /// Throws unless `name` is a clean relative path.
    public static func validate(name: String) throws(BundleError) {
        if name.isEmpty { throw .invalidEntryName(name: name, reason: "the name is empty") }
        if name.utf8.contains(0) { throw .invalidEntryName(name: name, reason: "the name contains a NUL byte") }
        if name.hasPrefix("/") { throw .invalidEntryName(name: name, reason: "absolute paths are not allowed") }
        if name.hasSuffix("/") {
            throw .invalidEntryName(name: name, reason: "a trailing '/' would make it a directory")
        }
        for component in name.split(separator: "/", omittingEmptySubsequences: false) {
            switch component {
            case "..": throw .invalidEntryName(name: name, reason: "'..' would escape the extraction directory")
            case ".": throw .invalidEntryName(name: name, reason: "'.' components are not allowed")
            case "": throw .invalidEntryName(name: name, reason: "empty path components ('//') are not allowed")
            default: continue
            }
        }
    }
}
