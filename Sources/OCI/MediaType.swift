import Foundation

/// How a layer blob is compressed, as told by its media type.
public enum LayerCompression: String, Hashable, Sendable, CaseIterable {
    /// A plain tar (`…tar`, `…diff.tar`).
    case none
    /// `+gzip`, `.gzip` (including Docker's `tar.gzip`).
    case gzip
    /// `+zstd`, `.zstd`.
    case zstd
    /// Anything else (configs, JSON, custom artifact types…).
    case unknown
}

/// A media type string. Unknown values are carried as they are, never rejected
/// (artifacts such as trivy databases use their own media types).
public struct MediaType: RawRepresentable, Hashable, Sendable, Codable, ExpressibleByStringLiteral,
    CustomStringConvertible
{
    public let rawValue: String

    public init(rawValue: String) {
        self.rawValue = rawValue
    }

    public init(stringLiteral value: String) {
        self.rawValue = value
    }

    /// Creates a media type from a `Content-Type` header value: parameters after `;`
    /// (e.g. `; charset=utf-8`) and surrounding whitespace are removed, and the result is
    /// lowercased (media types are case-insensitive).
    public init(contentType: String) {
        self.rawValue = Self.essence(of: contentType)
    }

    public var description: String { rawValue }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        self.rawValue = Self.interned(try container.decode(String.self))
    }

    /// `value`, or the well-known type's own (static) string when it is one: a bundle's
    /// 20,000 descriptors would otherwise hold a heap copy of the same few names each.
    static func interned(_ value: String) -> String {
        for known in wellKnown where known.rawValue == value { return known.rawValue }
        return value
    }

    static let wellKnown: [MediaType] = [
        .ociManifest, .ociIndex, .dockerManifest, .dockerManifestList, .ociConfig, .dockerConfig, .ociLayer,
        .ociLayerGzip, .ociLayerZstd, .dockerLayerGzip, .ociEmpty,
    ]

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    // MARK: Well-known media types

    public static let ociManifest: MediaType = "application/vnd.oci.image.manifest.v1+json"
    public static let ociIndex: MediaType = "application/vnd.oci.image.index.v1+json"
    public static let dockerManifest: MediaType = "application/vnd.docker.distribution.manifest.v2+json"
    public static let dockerManifestList: MediaType = "application/vnd.docker.distribution.manifest.list.v2+json"
    public static let dockerSchema1: MediaType = "application/vnd.docker.distribution.manifest.v1+json"
    public static let dockerSchema1Signed: MediaType = "application/vnd.docker.distribution.manifest.v1+prettyjws"
    public static let ociConfig: MediaType = "application/vnd.oci.image.config.v1+json"
    public static let dockerConfig: MediaType = "application/vnd.docker.container.image.v1+json"
    public static let ociLayer: MediaType = "application/vnd.oci.image.layer.v1.tar"
    public static let ociLayerGzip: MediaType = "application/vnd.oci.image.layer.v1.tar+gzip"
    public static let ociLayerZstd: MediaType = "application/vnd.oci.image.layer.v1.tar+zstd"
    public static let dockerLayerGzip: MediaType = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    public static let dockerForeignLayerGzip: MediaType = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    public static let ociEmpty: MediaType = "application/vnd.oci.empty.v1+json"
    public static let ociLayout: MediaType = "application/vnd.oci.image.layout.v1+json"

    /// The manifest media types a client accepts when fetching a manifest:
    /// OCI index, OCI manifest, Docker manifest list, Docker manifest (schema 2).
    public static let manifestAcceptTypes: [MediaType] = [.ociIndex, .ociManifest, .dockerManifestList, .dockerManifest]

    // MARK: Classification (parameters and case are ignored)

    /// OCI image index or Docker manifest list.
    public var isIndex: Bool {
        let e = essence
        return e == Self.ociIndex.rawValue || e == Self.dockerManifestList.rawValue
    }

    /// OCI image manifest or Docker image manifest schema 2.
    public var isImageManifest: Bool {
        let e = essence
        return e == Self.ociManifest.rawValue || e == Self.dockerManifest.rawValue
    }

    /// An index or an image manifest (schema 1 excluded).
    public var isManifest: Bool { isIndex || isImageManifest }

    /// Docker image manifest schema 1 (signed or not).
    public var isSchema1: Bool {
        let e = essence
        return e == Self.dockerSchema1.rawValue || e == Self.dockerSchema1Signed.rawValue
    }

    /// The compression of a layer with this media type.
    public var layerCompression: LayerCompression {
        let e = essence
        if e.hasSuffix("+gzip") || e.hasSuffix(".gzip") { return .gzip }
        if e.hasSuffix("+zstd") || e.hasSuffix(".zstd") { return .zstd }
        if e.hasSuffix(".tar") { return .none }
        return .unknown
    }

    /// The type without parameters, trimmed and lowercased.
    private var essence: String { Self.essence(of: rawValue) }

    private static func essence(of value: String) -> String {
        let typePart = value.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        return String(typePart.trimmingCharacters(in: .whitespacesAndNewlines)).lowercased()
    }
}
