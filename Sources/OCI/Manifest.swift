import Foundation

/// An OCI image manifest or a Docker image manifest schema 2.
///
/// For reading only: manifests are kept byte-for-byte elsewhere. Re-encoding a parsed manifest
/// does not reproduce the original bytes (nor its digest) and must not be used to produce bytes to push.
public struct ImageManifest: Codable, Hashable, Sendable {
    public var schemaVersion: Int
    public var mediaType: MediaType?
    public var artifactType: String?
    public var config: Descriptor
    public var layers: [Descriptor]
    public var subject: Descriptor?
    public var annotations: [String: String]?

    public init(
        schemaVersion: Int = 2,
        mediaType: MediaType? = nil,
        artifactType: String? = nil,
        config: Descriptor,
        layers: [Descriptor],
        subject: Descriptor? = nil,
        annotations: [String: String]? = nil
    ) {
        self.schemaVersion = schemaVersion
        self.mediaType = mediaType
        self.artifactType = artifactType
        self.config = config
        self.layers = layers
        self.subject = subject
        self.annotations = annotations
    }
}

/// An OCI image index or a Docker manifest list.
///
/// For reading only; see ``ImageManifest``.
public struct ImageIndex: Codable, Hashable, Sendable {
    public var schemaVersion: Int
    public var mediaType: MediaType?
    public var artifactType: String?
    public var manifests: [Descriptor]
    public var subject: Descriptor?
    public var annotations: [String: String]?

    public init(
        schemaVersion: Int = 2,
        mediaType: MediaType? = nil,
        artifactType: String? = nil,
        manifests: [Descriptor],
        subject: Descriptor? = nil,
        annotations: [String: String]? = nil
    ) {
        self.schemaVersion = schemaVersion
        self.mediaType = mediaType
        self.artifactType = artifactType
        self.manifests = manifests
        self.subject = subject
        self.annotations = annotations
    }
}

/// A parsed manifest body: an image manifest or an index.
///
/// For reading only: keep the original bytes to store, push or hash them.
public enum ManifestDocument: Hashable, Sendable {
    case image(ImageManifest)
    case index(ImageIndex)

    /// The largest manifest body accepted, in bytes (4 MiB, as in the distribution spec).
    public static let maxSize = 4 * 1024 * 1024

    /// Parses a manifest body.
    ///
    /// - Parameters:
    ///   - bytes: the body, as received.
    ///   - contentType: what the registry announced (Content-Type) or the descriptor said; may be nil
    ///     or generic ("application/json", "text/plain", "application/octet-stream"). Parameters are ignored.
    /// - Returns: the document. When the body has no `mediaType` field, the parsed value's `mediaType` is
    ///   set to `contentType` if that is a manifest type of the same kind, else left nil
    ///   (``mediaType`` then infers the OCI type).
    /// - Throws: ``OCIError/manifestTooLarge(size:limit:)``, ``OCIError/unsupportedSchema1`` or
    ///   ``OCIError/invalidManifest(reason:)``.
    public static func parse(_ bytes: [UInt8], contentType: MediaType?) throws -> ManifestDocument {
        if bytes.count > maxSize {
            throw OCIError.manifestTooLarge(size: bytes.count, limit: maxSize)
        }
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) {
            throw OCIError.invalidManifest(reason: "the body is empty")
        }
        let data = Data(bytes)
        let decoder = JSONDecoder()
        let probe: Probe
        do {
            probe = try decoder.decode(Probe.self, from: data)
        } catch let error as DecodingError {
            throw OCIError.invalidManifest(reason: describe(error))
        }

        let bodyType = probe.mediaType.map(MediaType.init(rawValue:))
        let announced = contentType.map { MediaType(contentType: $0.rawValue) }
        if probe.schemaVersion == 1 || bodyType?.isSchema1 == true || announced?.isSchema1 == true {
            throw OCIError.unsupportedSchema1
        }
        guard let schemaVersion = probe.schemaVersion else {
            throw OCIError.invalidManifest(reason: "no 'schemaVersion' field; expected schemaVersion 2")
        }
        guard schemaVersion == 2 else {
            throw OCIError.invalidManifest(reason: "unsupported schemaVersion \(schemaVersion); expected 2")
        }

        let isIndex: Bool
        let kindSource: String
        if let bodyType, bodyType.isManifest {
            isIndex = bodyType.isIndex
            kindSource = "its mediaType is \(bodyType)"
        } else if let announced, announced.isManifest {
            isIndex = announced.isIndex
            kindSource = "its content type is \(announced)"
        } else if probe.hasManifests {
            isIndex = true
            kindSource = ""
        } else if probe.hasConfig {
            isIndex = false
            kindSource = ""
        } else {
            let typeNote = bodyType.map { " (mediaType \(OCIError.display($0.rawValue, limit: 100)))" } ?? ""
            throw OCIError.invalidManifest(
                reason: "neither an image manifest nor an index\(typeNote): it has no 'config' and no 'manifests' field")
        }

        if isIndex {
            guard probe.hasManifests else {
                throw OCIError.invalidManifest(reason: "index has no 'manifests' array (\(kindSource))")
            }
            var index = try decode(ImageIndex.self, from: data, decoder: decoder)
            if index.mediaType == nil, let announced, announced.isIndex {
                index.mediaType = announced
            }
            return .index(index)
        } else {
            var missing: [String] = []
            if !probe.hasConfig { missing.append("'config'") }
            if !probe.hasLayers { missing.append("'layers'") }
            if !missing.isEmpty {
                let source = kindSource.isEmpty ? "" : " (\(kindSource))"
                throw OCIError.invalidManifest(
                    reason: "image manifest has no \(missing.joined(separator: " and "))\(source)")
            }
            var manifest = try decode(ImageManifest.self, from: data, decoder: decoder)
            if manifest.mediaType == nil, let announced, announced.isImageManifest {
                manifest.mediaType = announced
            }
            return .image(manifest)
        }
    }

    /// The body's `mediaType` field if present, else the announced content type if it was a manifest
    /// type, else inferred: ``MediaType/ociIndex`` for an index, ``MediaType/ociManifest`` for an image.
    public var mediaType: MediaType {
        switch self {
        case .image(let manifest): return manifest.mediaType ?? .ociManifest
        case .index(let index): return index.mediaType ?? .ociIndex
        }
    }

    /// What the document points to: for an image, the config then the layers;
    /// for an index, its manifests, in order.
    public var references: [Descriptor] {
        switch self {
        case .image(let manifest): return [manifest.config] + manifest.layers
        case .index(let index): return index.manifests
        }
    }

    // MARK: Private

    /// The few fields needed to classify a body before decoding it fully.
    private struct Probe: Decodable {
        var schemaVersion: Int?
        var mediaType: String?
        var hasManifests: Bool
        var hasConfig: Bool
        var hasLayers: Bool

        private enum Keys: String, CodingKey {
            case schemaVersion, mediaType, manifests, config, layers
        }

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: Keys.self)
            schemaVersion = try c.decodeIfPresent(Int.self, forKey: .schemaVersion)
            mediaType = try c.decodeIfPresent(String.self, forKey: .mediaType)
            hasManifests = try c.contains(.manifests) && !c.decodeNil(forKey: .manifests)
            hasConfig = try c.contains(.config) && !c.decodeNil(forKey: .config)
            hasLayers = try c.contains(.layers) && !c.decodeNil(forKey: .layers)
        }
    }

    private static func decode<T: Decodable>(_ type: T.Type, from data: Data, decoder: JSONDecoder) throws -> T {
        do {
            return try decoder.decode(type, from: data)
        } catch let error as DecodingError {
            throw OCIError.invalidManifest(reason: describe(error))
        }
    }

    /// A short, one-line account of a decoding error.
    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case let .dataCorrupted(context):
            if context.codingPath.isEmpty {
                return "malformed JSON" + underlyingNote(context.underlyingError)
            }
            return "at '\(path(context.codingPath))': \(shorten(context.debugDescription))"
        case let .keyNotFound(key, context):
            return "missing field '\(path(context.codingPath + [key]))'"
        case let .typeMismatch(type, context):
            if context.codingPath.isEmpty {
                return "the body is not a JSON object"
            }
            return "field '\(path(context.codingPath))' has the wrong type (expected \(typeName(type)))"
        case let .valueNotFound(type, context):
            if context.codingPath.isEmpty {
                return "the body is not a JSON object"
            }
            return "field '\(path(context.codingPath))' is null (expected \(typeName(type)))"
        @unknown default:
            return "cannot decode: \(shorten(String(describing: error)))"
        }
    }

    private static func underlyingNote(_ error: (any Error)?) -> String {
        guard let error else { return "" }
        let nsError = error as NSError
        let text = (nsError.userInfo[NSDebugDescriptionErrorKey] as? String) ?? nsError.localizedDescription
        let short = shorten(text)
        return short.isEmpty ? "" : " (\(short))"
    }

    private static func path(_ codingPath: [any CodingKey]) -> String {
        var out = ""
        for key in codingPath {
            if let index = key.intValue {
                out += "[\(index)]"
            } else {
                if !out.isEmpty { out += "." }
                out += key.stringValue
            }
        }
        return out.isEmpty ? "." : out
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Int.Type, is Int64.Type: return "an integer"
        case is Bool.Type: return "a boolean"
        default:
            let name = String(describing: type)
            if name.hasPrefix("Dictionary") || name.hasPrefix("[String") { return "an object" }
            if name.hasPrefix("Array") || name.hasPrefix("[") { return "an array" }
            return name
        }
    }

    private static func shorten(_ text: String) -> String {
        OCIError.display(text.trimmingCharacters(in: .whitespacesAndNewlines), limit: 240)
    }
}

extension ImageIndex {
    /// The child whose files stand for the image (images_digests.json, version.json): its
    /// linux/amd64 manifest, as Deckhouse builds and runs it, else the first. The one platform
    /// rule of the program: pull and verify read the same child.
    public var deckhousePlatformChild: Descriptor? {
        manifests.first { $0.platform?.os == "linux" && $0.platform?.architecture == "amd64" } ?? manifests.first
    }
}
