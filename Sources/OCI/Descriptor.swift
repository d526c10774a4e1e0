/// An OCI content descriptor: what a blob or manifest is, its digest and size.
public struct Descriptor: Codable, Hashable, Sendable {
    public var mediaType: MediaType
    public var digest: Digest
    /// Size in bytes; never negative.
    public var size: Int64
    public var urls: [String]?
    public var annotations: [String: String]?
    public var platform: Platform?
    public var artifactType: String?
    /// Embedded content, base64-encoded.
    public var data: String?

    public init(
        mediaType: MediaType,
        digest: Digest,
        size: Int64,
        urls: [String]? = nil,
        annotations: [String: String]? = nil,
        platform: Platform? = nil,
        artifactType: String? = nil,
        data: String? = nil
    ) {
        self.mediaType = mediaType
        self.digest = digest
        self.size = size
        self.urls = urls
        self.annotations = annotations
        self.platform = platform
        self.artifactType = artifactType
        self.data = data
    }

    private enum CodingKeys: String, CodingKey {
        case mediaType, digest, size, urls, annotations, platform, artifactType, data
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        mediaType = try c.decode(MediaType.self, forKey: .mediaType)
        digest = try c.decode(Digest.self, forKey: .digest)
        size = try c.decode(Int64.self, forKey: .size)
        guard size >= 0 else {
            throw DecodingError.dataCorruptedError(
                forKey: .size, in: c, debugDescription: "descriptor size must not be negative, got \(size)")
        }
        urls = try c.decodeIfPresent([String].self, forKey: .urls)
        annotations = try c.decodeIfPresent([String: String].self, forKey: .annotations).map(Self.withCommonKeysShared)
        platform = try c.decodeIfPresent(Platform.self, forKey: .platform)
        artifactType = try c.decodeIfPresent(String.self, forKey: .artifactType)
        data = try c.decodeIfPresent(String.self, forKey: .data)
    }

    /// Annotation keys every descriptor of a bundle's index.json carries (the OCI ref name, and
    /// the short tag d8 writes beside it).
    static let commonAnnotationKeys = ["org.opencontainers.image.ref.name", "io.deckhouse.image.short_tag"]

    /// `annotations` with the common keys as the static strings above, so that 20,000
    /// descriptors do not hold 20,000 heap copies of each.
    static func withCommonKeysShared(_ annotations: [String: String]) -> [String: String] {
        guard annotations.keys.contains(where: commonAnnotationKeys.contains) else { return annotations }
        var shared = [String: String](minimumCapacity: annotations.count)
        for (key, value) in annotations {
            shared[commonAnnotationKeys.first { $0 == key } ?? key] = value
        }
        return shared
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(mediaType, forKey: .mediaType)
        try c.encode(digest, forKey: .digest)
        try c.encode(size, forKey: .size)
        try c.encodeIfPresent(urls, forKey: .urls)
        try c.encodeIfPresent(annotations, forKey: .annotations)
        try c.encodeIfPresent(platform, forKey: .platform)
        try c.encodeIfPresent(artifactType, forKey: .artifactType)
        try c.encodeIfPresent(data, forKey: .data)
    }
}
