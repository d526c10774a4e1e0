import Foundation
import OCI

/// The writing half of the bundle's OCI layouts, beside the reader (`BundleIndexScan`): entry
/// names, `oci-layout`, and `index.json` with the descriptors, annotations and ref-name order
/// d8 writes. Not d8's bytes: its index.json is indented and gives every descriptor an empty
/// `platform`, which no reader of either tool looks at.
public enum LayoutWriter {
    /// `oci-layout` of every layout.
    public static let ociLayout = Array(#"{"imageLayoutVersion":"1.0.0"}"#.utf8)

    /// The tar entry of a blob or manifest in the layout whose entries start with `prefix`
    /// ("" for a tar's root layout, else `<path>/`).
    public static func blobEntry(prefix: String, digest: Digest) -> String {
        "\(prefix)blobs/sha256/\(digest.hex)"
    }

    /// One descriptor of index.json.
    public struct Reference {
        public var mediaType: MediaType
        public var digest: Digest
        public var size: Int64
        /// The tag push gives it (`io.deckhouse.image.short_tag`).
        public var shortTag: String
        public init(mediaType: MediaType, digest: Digest, size: Int64, shortTag: String) {
            self.mediaType = mediaType
            self.digest = digest
            self.size = size
            self.shortTag = shortTag
        }
    }

    /// index.json: one descriptor per reference, sorted by ref name, with the tag to push and
    /// the source reference as annotations, in d8's field order (JSONEncoder's key order is not
    /// stable on Linux). `refNames[i]` names `reference(i)`.
    public static func writeIndexJSON(
        refNames: [String], reference: (Int) -> Reference, to emit: ([UInt8]) throws -> Void
    ) throws {
        let order = refNames.indices.sorted { refNames[$0].utf8.lexicographicallyPrecedes(refNames[$1].utf8) }
        try writeIndexJSON(order: order, refName: { refNames[$0] }, reference: reference, to: emit)
    }

    /// index.json of the references at `order` (their positions, sorted by ref name), each ref
    /// name made only when its descriptor is written. The bytes are handed to `emit` in pieces
    /// of about 64 KiB (with 20,000 references the file is 8 MB, and building a string per
    /// descriptor and joining them held it three times over).
    public static func writeIndexJSON(
        order: [Int], refName: (Int) -> String, reference: (Int) -> Reference, to emit: ([UInt8]) throws -> Void
    ) throws {
        var out: [UInt8] = []
        out.reserveCapacity(80 * 1024)
        out += Array("{\"schemaVersion\":2,\"mediaType\":\"\(MediaType.ociLayout.rawValue)\",\"manifests\":[".utf8)
        for (position, index) in order.enumerated() {
            if out.count >= 64 * 1024 {
                try emit(out)
                out.removeAll(keepingCapacity: true)
            }
            let ref = reference(index)
            if position > 0 { out.append(UInt8(ascii: ",")) }
            out += "{\"mediaType\":".utf8
            appendJSON(ref.mediaType.rawValue, to: &out)
            out += ",\"digest\":".utf8
            appendJSON(ref.digest.string, to: &out)
            out += ",\"size\":\(ref.size),\"annotations\":{\"\(BundleIndex.shortTagAnnotation)\":".utf8
            appendJSON(ref.shortTag, to: &out)
            out += ",\"\(BundleIndex.refNameAnnotation)\":".utf8
            appendJSON(refName(index), to: &out)
            out += "}}".utf8
        }
        out += "]}".utf8
        try emit(out)
    }

    /// `string` as a JSON string literal, escaped as Go's encoder escapes it for these names
    /// (`"`, `\\` and control characters; `/` as is, as d8 writes it).
    static func appendJSON(_ string: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += "\\\"".utf8
            case UInt8(ascii: "\\"): out += "\\\\".utf8
            case 0x0A: out += "\\n".utf8
            case 0x0D: out += "\\r".utf8
            case 0x09: out += "\\t".utf8
            case 0x08: out += "\\b".utf8
            case 0x0C: out += "\\f".utf8
            case ..<0x20: out += Array(String(format: "\\u%04x", byte).utf8)
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
