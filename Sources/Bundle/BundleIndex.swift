#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import OCI

/// A bundle directory as `push` and `verify` read it: its tars found and indexed once
/// (headers only, plus the few bytes of every `index.json` and `oci-layout`), every OCI
/// image layout in them with its registry path, and where each blob's bytes lie in the tar
/// files, so blobs are read straight out of the tars (across chunk boundaries) without
/// unpacking anything.
///
/// Reads every generation of the format (dkp-source-and-bundle.md §2): `platform.tar`,
/// `module-<name>.tar`, `security.tar`, `installer.tar` with the nested tree; older
/// `module-<name>.tar` with the module layout at the tar root (relocated under
/// `modules/<name>/`); older `security.tar` with `trivy-db/` etc. at the root (relocated
/// under `security/`); the oldest single tar of any name with the whole tree; names with a
/// leading `./`. Chunked tars (`NAME.tar.0000.chunk`, ...) are read as one tar.
///
/// Duplicate entries in a tar: the later one wins, as extracting the tar (what d8 push does)
/// would leave it; they are listed in `duplicateEntries`. Entry names that are absolute or
/// contain `..` make the tar refused.
///
/// A layout path held by several tars (`packages/<p>/version` is in `package-<p>.tar` and in
/// `package-versions.tar`) is one layout: its descriptors are united by digest and ref name
/// (tars in name order, each in its index.json order), and each blob is read from the first
/// tar that holds it (`blobCopies` lists every copy, for verify).
public struct BundleIndex: Sendable {
    /// One tar of the bundle: a single file, or the chunk files that concatenated form it.
    public struct Tar: Sendable, Equatable {
        /// The tar's name in the bundle: `platform.tar`, also for a chunked tar.
        public let name: String
        /// Absolute paths of the tar file, or of its chunk files in order.
        public let files: [String]
        /// Size of each file in `files`, as found when the bundle was opened.
        public let fileSizes: [Int64]

        /// Bytes of the whole tar.
        public var size: Int64 { fileSizes.reduce(0, +) }
        /// Whether the tar is stored as chunk files.
        public var isChunked: Bool { files.first?.hasSuffix(".chunk") ?? false }
    }

    /// One OCI image layout of the bundle (a directory of a tar that holds `index.json`), united
    /// over every tar that holds the same registry path.
    public struct Layout: Sendable, Equatable {
        /// One tar's copy of the layout.
        public struct Part: Sendable, Equatable {
            public let tar: String
            /// The directory inside that tar, as stored there.
            public let directory: String
            /// That tar's descriptors, in its index.json order (the file's bytes are not kept:
            /// 8 MB at 20,000 references).
            public let descriptors: [Descriptor]

            public init(tar: String, directory: String, descriptors: [Descriptor]) {
                self.tar = tar
                self.directory = directory
                self.descriptors = descriptors
            }
        }

        /// Name of the (first, in name order) tar that holds it (`platform.tar`).
        public let tar: String
        /// The registry path below the edition root, after relocating older generations:
        /// "" (the root), "install", "release-channel", "modules/console",
        /// "modules/console/release", "security/trivy-db", ...
        public let path: String
        /// The directory inside the first tar, as stored there (without a leading "./"): differs
        /// from `path` for older module and security tars.
        public let directory: String
        /// The descriptors of every part, united by digest + ref name: the first tar's in its
        /// index.json order, then what each further tar adds. Annotations kept
        /// (`org.opencontainers.image.ref.name`, `io.deckhouse.image.short_tag`).
        public let descriptors: [Descriptor]
        /// Every tar's copy, in tar name order (one for most layouts).
        public let parts: [Part]

        /// Names of the tars that hold the layout, in name order.
        public var tars: [String] { parts.map(\.tar) }

        public init(tar: String, path: String, directory: String, descriptors: [Descriptor]) {
            self.init(path: path, parts: [Part(tar: tar, directory: directory, descriptors: descriptors)])
        }

        /// A layout made of `parts` (at least one), descriptors united.
        public init(path: String, parts: [Part]) {
            let first = parts.first ?? Part(tar: "", directory: path, descriptors: [])
            self.tar = first.tar
            self.path = path
            self.directory = first.directory
            self.parts = parts
            self.descriptors = Self.united(parts)
        }

        /// The parts' descriptors, each digest + ref name once. One part without repeats (the
        /// usual case) gives its own array, shared rather than copied.
        private static func united(_ parts: [Part]) -> [Descriptor] {
            func key(_ descriptor: Descriptor) -> String {
                descriptor.digest.string + " " + (descriptor.annotations?[BundleIndex.refNameAnnotation] ?? "")
            }
            var seen = Set<String>()
            if parts.count == 1, parts[0].descriptors.allSatisfy({ seen.insert(key($0)).inserted }) {
                return parts[0].descriptors
            }
            seen.removeAll()
            var united = [Descriptor]()
            for part in parts {
                for descriptor in part.descriptors where seen.insert(key(descriptor)).inserted {
                    united.append(descriptor)
                }
            }
            return united
        }
    }

    /// A name a tar holds more than once (the last copy is the one indexed).
    public struct DuplicateEntry: Sendable, Equatable {
        public let tar: String
        public let name: String
        public let count: Int
    }

    /// The tars of the bundle, sorted by name.
    public let tars: [Tar]
    /// Names held more than once by a tar, by tar then name (verify reports them).
    public let duplicateEntries: [DuplicateEntry]
    /// Every layout of the bundle, sorted by path (one per path: copies in several tars united).
    public let layouts: [Layout]
    /// Files in the bundle directory that are not part of the bundle and not one of the
    /// known companions (`SHA256SUMS`, `*.gostsum`, `deckhousereleases.yaml`, `.dkp-mirror/`,
    /// leftovers of finished pulls): names only, sorted. Push may mention them.
    public let ignoredFiles: [String]

    /// Per layout path: the blobs of the layout by hex digest, every tar's copy.
    private let blobTables: [String: BlobTable]
    private let blobBytes: Int64

    /// The sum of the sizes of every blob of every layout (a blob held by two layouts counts twice).
    public var totalBlobBytes: Int64 { blobBytes }

    /// Number of blobs of every layout (a blob held by two layouts, or by two tars of one
    /// layout, counts twice).
    public var totalBlobCount: Int { blobTables.values.reduce(0) { $0 + $1.entries.values.reduce(0) { $0 + $1.count } } }

    /// `org.opencontainers.image.ref.name`.
    public static let refNameAnnotation = "org.opencontainers.image.ref.name"
    /// `io.deckhouse.image.short_tag`.
    public static let shortTagAnnotation = "io.deckhouse.image.short_tag"

    /// Finds the bundle's tars in `directory`, indexes each once and collects its layouts.
    /// Throws a `BundleError` naming the file for anything that keeps the bundle from being
    /// read completely (see `BundleError.isBadInput`).
    public static func open(directory: String) throws(BundleError) -> BundleIndex {
        try open(tars: try BundleDirectory.scan(directory))
    }

    /// Indexes the given tars (found by `BundleDirectory` or `BundleFiles`), unites layouts
    /// that several tars hold.
    static func open(tars found: BundleDirectory.Found) throws(BundleError) -> BundleIndex {
        let scanned = try TarScanner.scanAll(found.tars)
        var tars = [Tar]()
        var parts = [String: [Layout.Part]]()
        var tables = [String: BlobTable]()
        var bytes: Int64 = 0
        var duplicates = [DuplicateEntry]()
        // Tars come sorted by name, so every layout's parts and blob copies are in name order.
        for (tarIndex, item) in scanned.enumerated() {
            tars.append(item.tar)
            duplicates += item.duplicates
            for (layout, entries) in item.layouts {
                parts[layout.path, default: []].append(layout.parts[0])
                var table = tables[layout.path] ?? BlobTable(entries: [:])
                let directory = layout.parts[0].directory
                for (hex, span) in entries {
                    table.entries[hex, default: []].append(BlobCopy(tar: tarIndex, directory: directory, span: span))
                }
                tables[layout.path] = table
                bytes += entries.values.reduce(0) { $0 + $1.size }
            }
        }
        let layouts = parts.map { Layout(path: $0.key, parts: $0.value) }.sorted { Self.precedes($0.path, $1.path) }
        return BundleIndex(tars: tars, duplicateEntries: duplicates, layouts: layouts, ignoredFiles: found.ignored,
                           blobTables: tables, blobBytes: bytes)
    }

    private init(tars: [Tar], duplicateEntries: [DuplicateEntry], layouts: [Layout], ignoredFiles: [String],
                 blobTables: [String: BlobTable], blobBytes: Int64) {
        self.tars = tars
        self.duplicateEntries = duplicateEntries
        self.layouts = layouts
        self.ignoredFiles = ignoredFiles
        self.blobTables = blobTables
        self.blobBytes = blobBytes
    }

    /// The layout at registry path `path` ("" for the root), if the bundle has one.
    public func layout(at path: String) -> Layout? {
        layouts.first { $0.path == path }
    }

    /// The tar called `name`, if the bundle has one.
    public func tar(named name: String) -> Tar? {
        tars.first { $0.name == name }
    }

    /// Where the blob `digest` of `layout` (the entry `<layout dir>/blobs/sha256/<hex>`) lies
    /// on disk, in the first tar that holds it, or nil when the layout does not hold it.
    public func blob(_ digest: Digest, in layout: Layout) -> BlobLocation? {
        guard let copy = blobTables[layout.path]?.entries[digest.hex]?.first else { return nil }
        return location(copy, digest: digest)
    }

    /// Every copy of the blob `digest` of `layout`, one per tar that holds it, in tar name order.
    public func blobCopies(_ digest: Digest, in layout: Layout) -> [BlobLocation] {
        (blobTables[layout.path]?.entries[digest.hex] ?? []).map { location($0, digest: digest) }
    }

    /// Every copy of the blob `digest` anywhere in the bundle, one per place in a tar (a tar
    /// whose layouts share one blob entry counts once): the copies of `layout` first (when
    /// given), then those of the other layouts in path order. Bytes are not checked.
    public func allCopies(_ digest: Digest, preferring layout: Layout? = nil) -> [BlobLocation] {
        var seen = Set<[Int64]>()
        var result = [BlobLocation]()
        let paths = (layout.map { [$0.path] } ?? []) + layouts.map(\.path).filter { $0 != layout?.path }
        for path in paths {
            for copy in blobTables[path]?.entries[digest.hex] ?? [] where seen.insert([Int64(copy.tar), copy.span.offset]).inserted {
                result.append(location(copy, digest: digest))
            }
        }
        return result
    }

    private func location(_ copy: BlobCopy, digest: Digest) -> BlobLocation {
        let tar = tars[copy.tar]
        return BlobLocation(
            tar: tar.name, entry: copy.entry(digest.hex), digest: digest, size: copy.span.size,
            segments: Self.segments(offset: copy.span.offset, length: copy.span.size, files: tar.files, sizes: tar.fileSizes))
    }

    /// The digests of the blobs `layout` holds (in any of its tars), sorted.
    public func blobs(in layout: Layout) -> [Digest] {
        guard let table = blobTables[layout.path] else { return [] }
        return table.entries.keys.compactMap { try? Digest(sha256Hex: $0) }.sorted()
    }

    /// The bytes of a small blob (a manifest, a config), read with positioned reads. Throws
    /// when it is larger than `limit` bytes, so a bad bundle cannot exhaust memory, or when a
    /// file got shorter since the bundle was opened. The bytes are not checked against the digest.
    public func readSmall(_ location: BlobLocation, limit: Int = 4 << 20) throws(BundleError) -> [UInt8] {
        guard location.size <= Int64(limit) else {
            throw .corrupt(
                file: location.segments.first?.path ?? location.tar,
                detail: "blob \(location.digest) has \(location.size) bytes, more than the \(limit) expected here")
        }
        var result = [UInt8]()
        result.reserveCapacity(Int(location.size))
        do {
            try read(location, pieceSize: max(1, min(Int(location.size), 1 << 20))) { result += $0 }
        } catch let error as BundleError {
            throw error
        } catch {
            throw .corrupt(file: location.tar, detail: "\(error)")  // (the body above throws nothing)
        }
        return result
    }

    /// Delivers the bytes of `location` in order, in pieces of at most `pieceSize` bytes
    /// (each valid only during the call), read with positioned reads from the tar files.
    public func read(
        _ location: BlobLocation, pieceSize: Int = 1 << 20, _ body: (UnsafeRawBufferPointer) throws -> Void
    ) throws {
        let reader = BlobSegmentReader(location, pieceSize: pieceSize)
        while let piece = try reader.next() { try body(piece) }
    }

    /// [offset, offset+length) of the concatenated `files` mapped onto the files.
    static func segments(offset: Int64, length: Int64, files: [String], sizes: [Int64])
        -> [FileSegment]
    {
        var result = [FileSegment]()
        var start: Int64 = 0
        var position = offset
        var remaining = length
        for (path, size) in zip(files, sizes) {
            let end = start + size
            if remaining > 0, position >= start, position < end {
                let piece = min(remaining, end - position)
                result.append(FileSegment(path: path, offset: position - start, length: piece))
                position += piece
                remaining -= piece
            }
            start = end
        }
        return result
    }

    /// Byte-wise path order, so "" (the root) sorts first and nested paths follow their parent.
    static func precedes(_ a: String, _ b: String) -> Bool {
        Array(a.utf8).lexicographicallyPrecedes(Array(b.utf8))
    }
}

/// Where a blob of the bundle lies: its bytes are the concatenation of `segments`.
public struct BlobLocation: Sendable {
    /// Name of the tar that holds it.
    public let tar: String
    /// The tar entry that holds it (`modules/console/blobs/sha256/<hex>`; "" when not known).
    public let entry: String
    /// The blob's name in the layout (its bytes are not checked by the index).
    public let digest: Digest
    /// Bytes of the blob (the tar entry's size).
    public let size: Int64
    /// The pieces of the blob in order: file path, offset in that file, length. More than one
    /// when the blob spans chunk files; none for an empty blob.
    public let segments: [FileSegment]

    public init(tar: String, entry: String = "", digest: Digest, size: Int64, segments: [FileSegment]) {
        self.tar = tar
        self.entry = entry
        self.digest = digest
        self.size = size
        self.segments = segments
    }
}

extension BundleError {
    /// Whether the error is about the input (a missing, damaged, incomplete or unsafe bundle,
    /// an unreadable path): exit code 2 class. False for failures of the operation itself
    /// (I/O errors while reading, a full disk, writer-side errors).
    public var isBadInput: Bool {
        switch self {
        case .corrupt, .missingChunk, .noTars, .unfinishedTar, .conflictingTarFiles, .missingOCILayout,
            .missingLayoutIndex, .unsafeEntryName, .duplicateLayout:
            return true
        case let .severalTars(errors):
            return errors.allSatisfy(\.isBadInput)
        case let .io(_, _, code):
            return code == ENOENT || code == ENOTDIR || code == EACCES || code == EPERM || code == EISDIR
                || code == ELOOP || code == ENAMETOOLONG
        default:
            return false
        }
    }
}

/// The blobs of one layout: by hex digest, each tar's copy (tars in name order).
struct BlobTable: Sendable {
    var entries: [String: [BlobCopy]]
}

/// One tar's copy of a blob.
struct BlobCopy: Sendable {
    let tar: Int
    /// The layout's directory in that tar (blob entries are `<directory>/blobs/sha256/<hex>`).
    let directory: String
    let span: TarSpan

    /// The tar entry name of the blob `hex`.
    func entry(_ hex: String) -> String {
        (directory.isEmpty || directory.hasSuffix("/") ? directory : directory + "/") + "blobs/sha256/" + hex
    }
}

/// Where an entry's data lies in the concatenated tar.
struct TarSpan: Sendable, Equatable {
    let offset: Int64
    let size: Int64
}

/// `open(path, O_RDONLY | O_CLOEXEC)` (inside `BundleIndex`, `open` means `open(directory:)`).
private func openReadOnly(_ path: String) -> Int32 {
    open(path, O_RDONLY | O_CLOEXEC)
}
