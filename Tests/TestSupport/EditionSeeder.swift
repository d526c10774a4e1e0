import Bundle
import Foundation
import NIOCore
import OCI
import Registry
import Streams

/// Seeds a registry with a synthetic DKP edition laid out as the real source registry is
/// (dkp-source-and-bundle.md §1): release channels (rock-solid lagging behind alpha),
/// controller, install and install-standalone images per version, digest-referenced
/// platform images (a multi-arch index and Docker schema 2 manifests among them), the four
/// security databases with their own media types, modules with channels, digest images and
/// an extra image, and the installer. Sizes scale from kilobytes (tests) to gigabytes (bench).
public struct EditionSeeder: Sendable {
    public struct Options: Sendable {
        /// Edition root, e.g. `deckhouse/ee` (the host is the client's).
        public var root = "deckhouse/ee"
        public var edition = "ee"
        /// Every version tagged in release-channel, and what each channel points at.
        public var versions = ["v1.66.9", "v1.67.2", "v1.67.5", "v1.68.4", "v1.69.3", "v1.70.1"]
        public var channels: [String: String] = [
            "rock-solid": "v1.67.5", "stable": "v1.68.4", "early-access": "v1.69.3", "beta": "v1.69.3", "alpha": "v1.70.1",
        ]
        /// Modules: name -> channel -> version.
        public var modules: [String: [String: String]] = [
            "console": ["alpha": "v1.2.0", "beta": "v1.2.0", "early-access": "v1.1.5", "stable": "v1.1.5", "rock-solid": "v1.1.5"],
            "commander": ["alpha": "v0.9.1", "beta": "v0.9.1", "early-access": "v0.9.1", "stable": "v0.9.0", "rock-solid": "v0.9.0"],
            "stronghold": ["alpha": "v1.0.3", "stable": "v1.0.3"],
        ]
        /// The module that carries an extra image (`modules/<name>/extra/scanner`).
        public var moduleWithExtra = "console"
        /// Size of the large base layer shared by all controller images, and of each platform image's own layer.
        public var baseLayerSize: Int64 = 256 << 10
        public var imageLayerSize: Int64 = 32 << 10
        /// Digest-referenced platform images per version (one is a 2-platform index, one Docker schema 2).
        public var platformImagesPerVersion = 4
        public var moduleImagesPerVersion = 2
        public var layerCompression: OCI.LayerCompression = .gzip

        public init() {}
    }

    /// What was seeded, for tests to check bundles against.
    public struct Seeded: Sendable {
        public var controller: [String: Digest] = [:]
        /// Per version, the digests listed in its images_digests.json files.
        public var platformDigests: [String: [Digest]] = [:]
        public var moduleDigests: [String: [String: [Digest]]] = [:]
        public var securityDigests: [String: Digest] = [:]
        public var installer: Digest?
    }

    public let client: RegistryClient
    public let options: Options

    public init(client: RegistryClient, options: Options = Options()) {
        self.client = client
        self.options = options
    }

    private var root: String { options.root }
    private var registryRoot: String { root.split(separator: "/").dropLast().joined(separator: "/") }

    public func seed() async throws -> Seeded {
        var seeded = Seeded()
        let base = try await pushSynthetic(repository: root, size: options.baseLayerSize, seed: 1)
        for (index, version) in options.versions.enumerated() {
            // Platform digest images, listed by the controller (all) and install (the first half).
            var digests: [Digest] = []
            for i in 0..<options.platformImagesPerVersion {
                digests.append(try await pushPlatformImage(version: index, number: i))
            }
            let digestsJSON = Self.imagesDigests(digests, module: "controlPlaneManager")
            let installJSON = Self.imagesDigests(Array(digests.prefix(max(1, digests.count / 2))), module: "candi")
            seeded.platformDigests[version] = digests

            // Controller: big shared base, a stale middle layer, the real files on top.
            let stale = try await pushFiles(repository: root, files: [("deckhouse/modules/images_digests.json", Array("{}".utf8))])
            let top = try await pushFiles(repository: root, files: [
                ("deckhouse/edition", Array("\(options.edition)\n".utf8)),
                ("deckhouse/version", Array("\(version)\n".utf8)),
                ("deckhouse/modules/images_digests.json", digestsJSON),
            ])
            seeded.controller[version] = try await pushImage(repository: root, layers: [base, stale, top], tag: version)
            let install = try await pushFiles(repository: "\(root)/install", files: [("deckhouse/candi/images_digests.json", installJSON)])
            _ = try await pushImage(repository: "\(root)/install", layers: [install], tag: version)
            let standalone = try await pushSynthetic(repository: "\(root)/install-standalone", size: options.imageLayerSize, seed: 500 + UInt64(index))
            _ = try await pushImage(repository: "\(root)/install-standalone", layers: [standalone], tag: version)
            let channelLayer = try await pushFiles(repository: "\(root)/release-channel",
                                                   files: [("version.json", Array("{\"version\":\"\(version)\",\"suspend\":false}".utf8))])
            _ = try await pushImage(repository: "\(root)/release-channel", layers: [channelLayer], tag: version)
        }
        for (channel, version) in options.channels.sorted(by: { $0.key < $1.key }) {
            for repository in [root, "\(root)/install", "\(root)/install-standalone", "\(root)/release-channel"] {
                try await retag(repository: repository, from: version, to: channel)
            }
        }

        for (name, type) in [("trivy-db", "db"), ("trivy-bdu", "bdu"), ("trivy-java-db", "javadb"), ("trivy-checks", "checks")] {
            let tag = EditionSeeder.securityTags[name] ?? "1"
            seeded.securityDigests[name] = try await pushArtifact(repository: "\(root)/security/\(name)", tag: tag, kind: type)
        }

        let installerLayer = try await pushSynthetic(repository: "\(registryRoot)/installer", size: options.imageLayerSize, seed: 900)
        seeded.installer = try await pushImage(repository: "\(registryRoot)/installer", layers: [installerLayer], tag: "latest")

        for (name, channels) in options.modules.sorted(by: { $0.key < $1.key }) {
            let marker = try await pushSynthetic(repository: "\(root)/modules", size: 64, seed: 1000 + UInt64(name.count))
            _ = try await pushImage(repository: "\(root)/modules", layers: [marker], tag: name)
            var perVersion: [String: [Digest]] = [:]
            for (vIndex, version) in Set(channels.values).sorted().enumerated() {
                let repository = "\(root)/modules/\(name)"
                var digests: [Digest] = []
                for i in 0..<options.moduleImagesPerVersion {
                    let layer = try await pushSynthetic(repository: repository, size: options.imageLayerSize,
                                                        seed: 2000 + UInt64(name.count * 100 + vIndex * 10 + i))
                    digests.append(try await pushImage(repository: repository, layers: [layer], tag: nil))
                }
                perVersion[version] = digests
                var files: [(String, [UInt8])] = [("images_digests.json", Self.imagesDigests(digests, module: name))]
                if name == options.moduleWithExtra {
                    files.append(("extra_images.json", Array("{\"scanner\":\"v0.3.1\"}".utf8)))
                    let extra = try await pushSynthetic(repository: "\(repository)/extra/scanner", size: options.imageLayerSize, seed: 3000)
                    _ = try await pushImage(repository: "\(repository)/extra/scanner", layers: [extra], tag: "v0.3.1")
                }
                let moduleLayer = try await pushFiles(repository: repository, files: files)
                _ = try await pushImage(repository: repository, layers: [moduleLayer], tag: version)
                let releaseLayer = try await pushFiles(repository: "\(repository)/release",
                                                       files: [("version.json", Array("{\"version\":\"\(version)\"}".utf8))])
                _ = try await pushImage(repository: "\(repository)/release", layers: [releaseLayer], tag: version)
            }
            for (channel, version) in channels {
                try await retag(repository: "\(root)/modules/\(name)/release", from: version, to: channel)
            }
            seeded.moduleDigests[name] = perVersion
        }
        return seeded
    }

    public static let securityTags = ["trivy-db": "2", "trivy-bdu": "1", "trivy-java-db": "1", "trivy-checks": "0"]

    /// `{"<module>": {"image0": "sha256:..", ...}}` as images_digests.json is shaped.
    static func imagesDigests(_ digests: [Digest], module: String) -> [UInt8] {
        let inner = digests.enumerated().map { "\"image\($0.offset)\":\"\($0.element)\"" }.joined(separator: ",")
        return Array("{\"\(module)\":{\(inner)}}".utf8)
    }

    // MARK: building blocks

    /// A layer of incompressible synthetic bytes, uploaded; returns its descriptor.
    private func pushSynthetic(repository: String, size: Int64, seed: UInt64) async throws -> Descriptor {
        let blob = SyntheticBlob(size: size, seed: seed)
        let descriptor = Descriptor(mediaType: .ociLayerGzip, digest: try await blob.digest(), size: size)
        if try await client.blobSize(repository: repository, digest: descriptor.digest) == nil {
            try await client.uploadBlob(repository: repository, descriptor: descriptor) { blob }
        }
        return descriptor
    }

    /// A real tar layer holding `files`, compressed as the options say.
    private func pushFiles(repository: String, files: [(String, [UInt8])]) async throws -> Descriptor {
        let bytes = try LayerArchive.build(files: files.map { (path: $0.0, contents: $0.1) }, compression: options.layerCompression)
        let mediaType: MediaType = switch options.layerCompression {
        case .zstd: .ociLayerZstd
        case .none: .ociLayer
        default: .ociLayerGzip
        }
        return try await pushBytes(repository: repository, bytes: bytes, mediaType: mediaType)
    }

    private func pushBytes(repository: String, bytes: [UInt8], mediaType: MediaType) async throws -> Descriptor {
        let descriptor = Descriptor(mediaType: mediaType, digest: SHA256.digest(of: bytes), size: Int64(bytes.count))
        try await client.uploadBlob(repository: repository, descriptor: descriptor) { BytesSequence(bytes: bytes) }
        return descriptor
    }

    /// An image manifest over `layers`, pushed under `tag` (or only by digest).
    private func pushImage(repository: String, layers: [Descriptor], tag: String?, docker: Bool = false) async throws -> Digest {
        let config = Array("{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]},\"config\":{\"Labels\":{\"repository\":\"\(repository)\"}}}".utf8)
        let configDescriptor = try await pushBytes(repository: repository, bytes: config, mediaType: docker ? .dockerConfig : .ociConfig)
        let manifestLayers = docker ? layers.map { Descriptor(mediaType: .dockerLayerGzip, digest: $0.digest, size: $0.size) } : layers
        let manifest = ImageManifest(schemaVersion: 2, mediaType: docker ? .dockerManifest : .ociManifest,
                                     config: configDescriptor, layers: manifestLayers)
        return try await putManifest(repository: repository, value: manifest, mediaType: docker ? .dockerManifest : .ociManifest, tag: tag)
    }

    private func putManifest<T: Encodable>(repository: String, value: T, mediaType: MediaType, tag: String?) async throws -> Digest {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let bytes = Array(try encoder.encode(value))
        let digest = SHA256.digest(of: bytes)
        try await client.putManifest(repository: repository, reference: tag ?? digest.string, bytes: bytes, mediaType: mediaType)
        return digest
    }

    /// Platform image `number` of version `index`: image 0 is a two-platform index, image 1
    /// a Docker schema 2 manifest, the rest OCI images; all share the version's base layer.
    private func pushPlatformImage(version index: Int, number: Int) async throws -> Digest {
        let seed = 10_000 + UInt64(index * 100 + number)
        let own = try await pushSynthetic(repository: root, size: options.imageLayerSize, seed: seed)
        switch number {
        case 0:
            var children: [Descriptor] = []
            for (arch, offset) in [("amd64", 0), ("arm64", 50)] {
                let layer = try await pushSynthetic(repository: root, size: options.imageLayerSize, seed: seed + UInt64(offset) + 1)
                let digest = try await pushImage(repository: root, layers: [own, layer], tag: nil)
                let bytes = try await client.manifest(repository: root, reference: digest.string).bytes
                children.append(Descriptor(mediaType: .ociManifest, digest: digest, size: Int64(bytes.count),
                                           platform: Platform(architecture: arch, os: "linux")))
            }
            return try await putManifest(repository: root, value: ImageIndex(schemaVersion: 2, mediaType: .ociIndex, manifests: children),
                                         mediaType: .ociIndex, tag: nil)
        case 1:
            return try await pushImage(repository: root, layers: [own], tag: nil, docker: true)
        default:
            return try await pushImage(repository: root, layers: [own], tag: nil)
        }
    }

    /// A trivy database: an OCI artifact with trivy's own config and layer media types.
    private func pushArtifact(repository: String, tag: String, kind: String) async throws -> Digest {
        let config = try await pushBytes(repository: repository, bytes: Array("{}".utf8),
                                         mediaType: MediaType(rawValue: "application/vnd.aquasec.trivy.config.v1+json"))
        let blob = SyntheticBlob(size: options.imageLayerSize, seed: 5000 + UInt64(kind.count))
        let layer = Descriptor(mediaType: MediaType(rawValue: "application/vnd.aquasec.trivy.\(kind).layer.v1.tar+gzip"),
                               digest: try await blob.digest(), size: options.imageLayerSize,
                               annotations: ["org.opencontainers.image.title": "\(kind).tar.gz"])
        try await client.uploadBlob(repository: repository, descriptor: layer) { blob }
        let manifest = ImageManifest(schemaVersion: 2, mediaType: .ociManifest, artifactType: nil, config: config, layers: [layer])
        return try await putManifest(repository: repository, value: manifest, mediaType: .ociManifest, tag: tag)
    }

    /// Points `to` at the manifest `from` points at (bytes unchanged).
    private func retag(repository: String, from: String, to: String) async throws {
        let manifest = try await client.manifest(repository: repository, reference: from)
        try await client.putManifest(repository: repository, reference: to, bytes: manifest.bytes, mediaType: manifest.mediaType)
    }
}
