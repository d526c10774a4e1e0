/// The platform an image in an index runs on.
public struct Platform: Codable, Hashable, Sendable {
    public var architecture: String
    public var os: String
    public var variant: String?
    /// JSON key `os.version`.
    public var osVersion: String?
    /// JSON key `os.features`.
    public var osFeatures: [String]?
    public var features: [String]?

    public init(
        architecture: String,
        os: String,
        variant: String? = nil,
        osVersion: String? = nil,
        osFeatures: [String]? = nil,
        features: [String]? = nil
    ) {
        self.architecture = architecture
        self.os = os
        self.variant = variant
        self.osVersion = osVersion
        self.osFeatures = osFeatures
        self.features = features
    }

    private enum CodingKeys: String, CodingKey {
        case architecture
        case os
        case variant
        case osVersion = "os.version"
        case osFeatures = "os.features"
        case features
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        architecture = try c.decode(String.self, forKey: .architecture)
        os = try c.decode(String.self, forKey: .os)
        variant = try c.decodeIfPresent(String.self, forKey: .variant)
        osVersion = try c.decodeIfPresent(String.self, forKey: .osVersion)
        osFeatures = try c.decodeIfPresent([String].self, forKey: .osFeatures)
        features = try c.decodeIfPresent([String].self, forKey: .features)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(architecture, forKey: .architecture)
        try c.encode(os, forKey: .os)
        try c.encodeIfPresent(variant, forKey: .variant)
        try c.encodeIfPresent(osVersion, forKey: .osVersion)
        try c.encodeIfPresent(osFeatures, forKey: .osFeatures)
        try c.encodeIfPresent(features, forKey: .features)
    }
}
