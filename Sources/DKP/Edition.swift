import Foundation
import OCI
import Version

/// A DKP edition root in a source registry, e.g. `registry.deckhouse.ru/deckhouse/ee`.
public struct EditionSource: Sendable, Hashable, CustomStringConvertible {
    /// Host and repository of the edition root (`<E>`), without tag or digest.
    public let root: Reference

    public init(_ root: Reference) {
        self.root = Reference(host: root.host, repository: root.repository)
    }

    public init(parsing text: String) throws {
        let reference = try Reference(parsing: text)
        guard reference.tag == nil, reference.digest == nil else {
            throw DKPError.invalidInput("--source \(text) names an image; give the edition root, e.g. registry.deckhouse.ru/deckhouse/ee")
        }
        self.init(reference)
    }

    /// The edition: the last path segment of the root (`ee`, `ce`, `se-plus`, ...).
    public var edition: String { root.lastPathComponent }
    /// `<R>`: the root without its edition segment.
    public var registryRoot: Reference {
        let parts = root.repository.split(separator: "/")
        return Reference(host: root.host, repository: parts.dropLast().joined(separator: "/"))
    }
    public var host: String { root.host }

    /// The repository `<E>/<path>` (or `<E>` itself for an empty path).
    public func repository(_ path: String) -> String {
        path.isEmpty ? root.repository : "\(root.repository)/\(path)"
    }

    /// The same registry path with another edition (for `pull --detect`).
    public func with(edition: String) -> EditionSource {
        EditionSource(registryRoot.appending(path: edition))
    }

    public var description: String { root.description }
}

/// Deckhouse release channels, in the order d8 lists them.
public enum ReleaseChannel: String, CaseIterable, Sendable, Codable {
    case alpha, beta
    case earlyAccess = "early-access"
    case stable
    case rockSolid = "rock-solid"
    case lts

    /// The five channels every edition has (`lts` exists only in some).
    public static let standard: [ReleaseChannel] = [.alpha, .beta, .earlyAccess, .stable, .rockSolid]
}

/// `version.json` of a release-channel image: `{"version":"v1.69.3","suspend":false}`.
public struct ChannelVersionFile: Decodable, Sendable {
    public var version: String
    public var suspend: Bool?
}

extension Version {
    /// Parses `vX.Y.Z` (the `v` required, as DKP tags are written); nil for anything else.
    public init?(tag: String) {
        guard tag.hasPrefix("v"), tag.dropFirst().split(separator: ".").count == 3,
              tag.dropFirst().allSatisfy({ $0.isNumber || $0 == "." }) else { return nil }
        self.init(tolerant: tag)
    }

    /// The tag form, `vX.Y.Z`.
    public var tag: String { "v\(major).\(minor).\(patch)" }

    /// Parses a module's or package's release tag, `vX.Y.Z` or `vX.Y.Z-PRE` (`v1.3.0-rc.1`). d8
    /// reads every tag semver reads and pulls `v` + its canonical form, so only a tag already in
    /// that form names an image: `1.3.0` or `v1.3` is nil. So is a cosign tag beside a release
    /// candidate (`v1.3.0-rc.1.att`, `.sig`, `.sbom`), which semver would read as a newer candidate.
    public init?(releaseTag tag: String) {
        guard tag.hasPrefix("v"), let version = Version(tolerant: tag), version.buildMetadataIdentifiers.isEmpty,
              version.releaseTag == tag, !["att", "sig", "sbom"].contains(version.prereleaseIdentifiers.last ?? "") else { return nil }
        self = version
    }

    /// The release-tag form, `vX.Y.Z` with `-PRE` where the version has one.
    public var releaseTag: String {
        prereleaseIdentifiers.isEmpty ? tag : tag + "-" + prereleaseIdentifiers.joined(separator: ".")
    }
}

/// Every `sha256:<64 hex>` in a JSON document (images_digests.json's shape varies between
/// releases, so the digests are collected wherever they appear).
public func digests(in bytes: [UInt8]) -> [Digest] {
    let text = String(decoding: bytes, as: UTF8.self)
    var found = Set<Digest>()
    var index = text.startIndex
    while let range = text.range(of: "sha256:", range: index..<text.endIndex) {
        let hexEnd = text.index(range.upperBound, offsetBy: 64, limitedBy: text.endIndex) ?? text.endIndex
        if let digest = try? Digest(parsing: String(text[range.lowerBound..<hexEnd])) {
            let following = hexEnd < text.endIndex ? text[hexEnd] : "\""
            if !following.isHexDigit { found.insert(digest) }
        }
        index = range.upperBound
    }
    return found.sorted()
}

/// The lists of images a pull must have: a missing, cut short or malformed list would give a
/// smaller bundle that looks complete, so each stops the pull naming the image and the file.
public enum ImageList {
    /// The digests of an `images_digests.json` (`{"<module>": {"<image>": "sha256:..."}}`, or flat):
    /// it must be there, parse as a JSON object and, with `mustListImages`, list at least one digest.
    public static func digests(_ bytes: [UInt8]?, file: String, of image: String, mustListImages: Bool) throws(DKPError) -> [Digest] {
        let object = try jsonObject(bytes, file: file, of: image)
        let found = DKP.digests(in: Array(bytes ?? []))
        if mustListImages && found.isEmpty {
            throw .invalidSource("\(file) in \(image) lists no image digest (\(object.isEmpty ? "an empty object" : "no sha256: value")); "
                                 + "the source is incomplete: a bundle pulled from it would lack the platform's images")
        }
        return found
    }

    /// The tags of an older `images_tags.json` (the same shape, tags in place of digests): the
    /// images are `<edition>:<tag>`.
    public static func tags(_ bytes: [UInt8]?, file: String, of image: String) throws(DKPError) -> [String] {
        let object = try jsonObject(bytes, file: file, of: image)
        var tags = Set<String>()
        func collect(_ value: Any) {
            if let text = value as? String { tags.insert(text) }
            if let nested = value as? [String: Any] { nested.values.forEach(collect) }
        }
        object.values.forEach(collect)
        guard !tags.isEmpty else {
            throw .invalidSource("\(file) in \(image) lists no image tag; the source is incomplete")
        }
        return tags.sorted()
    }

    private static func jsonObject(_ bytes: [UInt8]?, file: String, of image: String) throws(DKPError) -> [String: Any] {
        guard let bytes else {
            throw .invalidSource("\(image) has no \(file) (absent, or removed by a later layer); "
                                 + "without it the bundle would lack the images it lists: the source is incomplete or not a DKP edition")
        }
        guard let parsed = try? JSONSerialization.jsonObject(with: Data(bytes)) else {
            throw .invalidSource("\(file) in \(image) is not valid JSON (\(bytes.count) bytes: cut short or corrupt); "
                                 + "the source is damaged: pull again later, or ask its operator")
        }
        guard let object = parsed as? [String: Any] else {
            throw .invalidSource("\(file) in \(image) is not a JSON object of module to images (it is \(parsed is [Any] ? "an array" : "a scalar")); "
                                 + "the source is damaged")
        }
        return object
    }
}

/// `extra_images.json` of a module or package version: `{"<image>": "<tag>"}`. A tag written as
/// a JSON number (`{"trivy-db": 2}`) is that number's digits, as d8 reads it (Go's `%.0f`: a
/// fraction rounds to the nearest, a half to even); a value of another kind names no image and
/// is skipped with a note.
public enum ExtraImages {
    private enum Value: Decodable {
        case text(String), number(Double), other

        init(from decoder: Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let text = try? container.decode(String.self) {
                self = .text(text)
            } else if (try? container.decode(Bool.self)) != nil {
                self = .other
            } else if let number = try? container.decode(Double.self) {
                self = .number(number)
            } else {
                self = .other
            }
        }
    }

    public static func tags(_ bytes: [UInt8]?, of image: String) throws(DKPError) -> (tags: [(name: String, tag: String)], notes: [String]) {
        guard let bytes else { return ([], []) }
        guard let object = try? JSONDecoder().decode([String: Value].self, from: Data(bytes)) else {
            throw .invalidSource("extra_images.json of \(image) is not a JSON object of image name to tag; the source is damaged")
        }
        var tags: [(name: String, tag: String)] = []
        var notes: [String] = []
        for (name, value) in object.sorted(by: { $0.key < $1.key }) {
            switch value {
            case let .text(tag):
                tags.append((name, tag))
            case let .number(number) where number.isFinite && abs(number) < 1e15:
                tags.append((name, String(Int64(number.rounded(.toNearestOrEven)))))
            default:
                notes.append("extra_images.json of \(image): \(name) has no tag (neither a string nor a number); that extra image is skipped")
            }
        }
        return (tags, notes)
    }
}

public enum DKPError: Error, CustomStringConvertible, Sendable {
    /// Bad input from the user (exit 2).
    case invalidInput(String)
    /// The source does not have what was asked for, or is not laid out as DKP's is.
    case notFound(String)
    case invalidSource(String)
    /// A release channel the pull would include is suspended (`--ignore-suspend` overrides).
    case suspended(String)

    public var description: String {
        switch self {
        case let .invalidInput(m), let .notFound(m), let .invalidSource(m), let .suspended(m): return m
        }
    }

    public var isUsageError: Bool {
        if case .invalidInput = self { return true }
        return false
    }
}
