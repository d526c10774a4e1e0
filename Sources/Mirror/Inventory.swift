import Bundle
import Foundation
import OCI
import Streams

/// What a registry (or a bundle) holds that a bundle could need: every manifest digest and
/// every blob digest, each with its size and one repository that holds it. The input of
/// `pull --against`: a blob the inventory lists need not travel.
///
/// On disk it is a line format (version 1), readable by a person and checked when read:
///
///     dkp-mirror-inventory 1
///     # comment lines start with '#'; blank lines are ignored
///     source registry 127.0.0.1:5000/system/deckhouse
///     created 2026-12-02T12:00:00Z
///     manifest sha256:<64 hex> <size> <repository>
///     ...
///     blob sha256:<64 hex> <size> <repository>
///     ...
///     sha256 <64 hex>
///
/// - the first line names the format and its version; a reader refuses any other version;
/// - `source` is `registry HOST[:PORT]/PATH` or `bundle DIR` (the rest of the line), `created`
///   is UTC to the second; both come once, before the first item;
/// - items: manifests first, then blobs, each sorted by digest (a reader accepts any order but
///   no digest twice in one kind); `size` in bytes; `repository` is the path below the
///   registry's TARGET or the bundle root, exactly a bundle layout path (`install`,
///   `modules/console/release`, ...), with `.` for the root repository. Repository names
///   cannot hold spaces, so fields are separated by single spaces;
/// - the last line is `sha256 <hex>`: SHA-256 of every byte before that line. A file cut short,
///   edited by hand or damaged is refused.
public struct Inventory: Sendable, Equatable {
    /// The version this code writes and reads.
    public static let currentFormatVersion = 1
    /// The first word of the first line.
    public static let magic = "dkp-mirror-inventory"

    /// Where an inventory was taken.
    public enum Source: Sendable, Hashable, CustomStringConvertible {
        /// `HOST[:PORT]/PATH`, the TARGET push was given.
        case registry(String)
        /// The bundle directory.
        case bundle(String)
        /// A differential bundle's `left-out-blobs.inventory`: the text names the inventories
        /// the pull was cut against (each one's source, created time and checksum line).
        case differential(String)

        /// `registry HOST/PATH`, `bundle DIR` or `differential against ...`, as the `source` line has it.
        public var description: String {
            switch self {
            case let .registry(target): return "registry \(target)"
            case let .bundle(directory): return "bundle \(directory)"
            case let .differential(against): return "differential \(against)"
            }
        }
    }

    /// One item: its size in bytes and a repository (layout path, "" for the root) that holds it.
    public struct Entry: Sendable, Hashable {
        public var size: Int64
        public var repository: String
        public init(size: Int64, repository: String) {
            self.size = size
            self.repository = repository
        }
    }

    public var formatVersion: Int
    public var source: Source
    /// Whole seconds (what the file keeps).
    public var created: Date
    public var manifests: [Digest: Entry]
    public var blobs: [Digest: Entry]

    /// `created` is cut to whole seconds, so a written and read inventory equals this one.
    public init(source: Source, created: Date = Date(), manifests: [Digest: Entry] = [:], blobs: [Digest: Entry] = [:]) {
        self.formatVersion = Self.currentFormatVersion
        self.source = source
        self.created = Date(timeIntervalSince1970: created.timeIntervalSince1970.rounded(.down))
        self.manifests = manifests
        self.blobs = blobs
    }

    /// The sum of every blob's size.
    public var totalBlobBytes: Int64 { blobs.values.reduce(0) { $0 + $1.size } }

    /// Every repository an item names, sorted ("" for the root first).
    public var repositories: [String] {
        Set(manifests.values.map(\.repository)).union(blobs.values.map(\.repository)).sorted()
    }

    // MARK: writing

    /// The file's bytes, checksum line included.
    public func serialized() -> [UInt8] {
        var text = "\(Self.magic) \(formatVersion)\n"
        if case .differential = source {
            text += DifferentialBundle.commentLines.map { "# \($0)\n" }.joined()
        } else {
            text += "# dkp-mirror inventory: manifest|blob DIGEST SIZE REPOSITORY ('.' is the root repository);\n"
            text += "# the last line is the SHA-256 of every byte before it. See the README, \"Inventory files\".\n"
        }
        text += "source \(Self.oneLine(source.description))\n"
        text += "created \(Self.timestamp(created))\n"
        var bytes = Array(text.utf8)
        bytes.reserveCapacity(bytes.count + (manifests.count + blobs.count) * 100)
        for (kind, items) in [("manifest", manifests), ("blob", blobs)] {
            for digest in items.keys.sorted() {
                guard let entry = items[digest] else { continue }
                let repository = entry.repository.isEmpty ? "." : entry.repository
                bytes += "\(kind) \(digest.string) \(entry.size) \(repository)\n".utf8
            }
        }
        let checksum = SHA256.digest(of: bytes)
        bytes += "sha256 \(checksum.hex)\n".utf8
        return bytes
    }

    /// Writes the file whole or not at all (a temporary file, fsync, rename, fsync of the directory).
    public func write(to path: String) throws {
        try AtomicFile.write(path, serialized(), temporarySuffix: ".tmp-\(getpid())")
    }

    /// `2026-12-02T12:00:00Z`.
    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }

    /// The text with line breaks and other control characters replaced by `?`: the source line is one line.
    static func oneLine(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.map { $0.properties.generalCategory == .control ? "?" : $0 }))
    }
}

/// A file that is not a readable inventory: which file, which line, what is wrong and what to do.
/// A usage-class error (exit code 2): the input is bad, nothing failed.
public struct InventoryError: Error, CustomStringConvertible, Sendable, Equatable {
    public var path: String
    /// 1-based; nil for the file as a whole (cannot be read, cut short).
    public var line: Int?
    public var problem: String

    public init(path: String, line: Int?, problem: String) {
        self.path = path
        self.line = line
        self.problem = problem
    }

    public var description: String {
        let place = line.map { "\(path) line \($0)" } ?? path
        return "inventory \(place): \(problem); take the inventory again (dkp-mirror inventory --registry TARGET -o FILE, "
            + "or --bundle DIR) and copy it whole: the file cannot be edited by hand, its last line is its checksum"
    }
}
