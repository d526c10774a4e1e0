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
        /// Versions of a module on no channel, as a real module has its older releases, custom
        /// builds and release candidates (name -> tags).
        public var moduleOffChannelVersions: [String: [String]] = ["console": ["v1.0.0", "v1.0.2", "v1.1.4", "bobV1", "v1.3.0-rc.1"]]
        /// Versions of a module or package (by name) with no image of their own in the channel
        /// repository (`release:<v>`), as older releases of a real module lack one.
        public var modularVersionsWithoutChannelImage: [String: Set<String>] = ["console": ["v1.0.0"]]
        /// The module that carries an extra image (`modules/<name>/extra/scanner`).
        public var moduleWithExtra = "console"
        /// Platform versions with no `install-standalone` image, as some releases lack one.
        public var versionsWithoutStandaloneInstaller: Set<String> = []
        /// Platform versions with no `release-channel:<version>` image of their own.
        public var versionsWithoutReleaseChannelImage: Set<String> = []
        /// Security databases (`trivy-checks`, ...) the source does not serve.
        public var missingSecurityDatabases: Set<String> = []
        /// Platform channels whose version.json says `"suspend": true`.
        public var suspended: Set<String> = []
        /// Channels of a module or package (by name) whose version.json says "suspend": true.
        public var suspendedModular: [String: Set<String>] = [:]
        /// Channels of a module or package (by name) whose version.json names no version (`"latest"`).
        public var unreadableModularChannels: [String: Set<String>] = [:]
        /// Packages: name -> channel -> version (laid out as modules, channels in `version`).
        public var packages: [String: [String: String]] = [
            "nginx-tools": ["alpha": "v0.5.0", "beta": "v0.5.0", "early-access": "v0.4.1", "stable": "v0.4.1", "rock-solid": "v0.4.1"],
        ]
        /// The package that carries an extra image (`packages/<name>/extra/helper`), whose
        /// extra_images.json gives its tag as a JSON number (`{"helper": 2}`), as d8 reads them too.
        public var packageWithExtra = "nginx-tools"
        /// VEX attestations (`:sha256-<hex>.att`, `:<tag>.att`) for some platform, module and package images.
        public var vex = true
        /// d8 plugins in `<R>/deckhouse-cli/plugins`: `module-tools` (index images whose contracts require
        /// different `console` versions, one needing the plugin `diag`, a pre-release) and `diag` (no contract).
        public var plugins = true
        /// Size of the large base layer shared by all controller images, and of each platform image's own layer.
        public var baseLayerSize: Int64 = 256 << 10
        public var imageLayerSize: Int64 = 32 << 10
        /// Size of the layer shared across tars, as real DKP images share their distroless base:
        /// the bottom layer of the OCI platform images, the installer and every module and package
        /// image (0: none).
        public var commonBaseSize: Int64 = 24 << 10
        /// The seed of that layer's bytes (`SyntheticBlob(size: commonBaseSize, seed: commonBaseSeed)`).
        public static let commonBaseSeed: UInt64 = 3
        /// Digest-referenced platform images per version (one is a 2-platform index, one Docker schema 2).
        public var platformImagesPerVersion = 4
        public var moduleImagesPerVersion = 2
        /// More digest images listed by every version's controller, cheap to seed: one shared
        /// layer and config, manifests told apart by an annotation (for memory at scale: 10,000).
        public var cheapPlatformImages = 0
        public var layerCompression: OCI.LayerCompression = .gzip
        /// Broken sources, as an operator may meet them: the controller's
        /// `deckhouse/modules/images_digests.json` of a version (version -> how)...
        public var brokenControllerDigests: [String: BrokenFile] = [:]
        /// ...and `images_digests.json` of a module or package version (name -> version -> how).
        public var brokenModularDigests: [String: [String: BrokenFile]] = [:]

        public init() {}
    }

    /// How a required file of the source is broken.
    public enum BrokenFile: Sendable, CaseIterable {
        /// Not in the image at all.
        case missing
        /// In a lower layer, deleted by a whiteout (`.wh.<name>`) in the top one.
        case whitedOut
        /// Cut in half.
        case truncated
        /// `[]`.
        case emptyArray
        /// `{}`: well-formed, listing nothing.
        case emptyObject

        /// The layers' files for `path` holding `content` when broken this way: (lower, top).
        func files(_ path: String, _ content: [UInt8]) -> (lower: [(String, [UInt8])], top: [(String, [UInt8])]) {
            let name = path.split(separator: "/").last.map(String.init) ?? path
            let directory = path.dropLast(name.count)
            switch self {
            case .missing: return ([], [])
            case .whitedOut: return ([(path, content)], [("\(directory).wh.\(name)", [])])
            case .truncated: return ([], [(path, Array(content.prefix(content.count / 2)))])
            case .emptyArray: return ([], [(path, Array("[]".utf8))])
            case .emptyObject: return ([], [(path, Array("{}".utf8))])
            }
        }
    }

    /// What was seeded, for tests to check bundles against.
    public struct Seeded: Sendable {
        public var controller: [String: Digest] = [:]
        /// Per version, the digests listed in its images_digests.json files.
        public var platformDigests: [String: [Digest]] = [:]
        public var moduleDigests: [String: [String: [Digest]]] = [:]
        public var securityDigests: [String: Digest] = [:]
        public var installer: Digest?
        public var packageDigests: [String: [String: [Digest]]] = [:]
        /// Every attestation seeded, as `repository:tag`.
        public var vexReferences: [String] = []
        /// Plugin name -> version tags seeded.
        public var plugins: [String: [String]] = [:]
        /// The layer of `Options.commonBaseSize`, when seeded.
        public var commonBase: Descriptor?
    }

    public let client: RegistryClient
    public let options: Options

    public init(client: RegistryClient, options: Options = Options()) {
        self.client = client
        self.options = options
    }

    var root: String { options.root }
    var registryRoot: String { root.split(separator: "/").dropLast().joined(separator: "/") }

    public func seed() async throws -> Seeded {
        var seeded = Seeded()
        let base = try await pushSynthetic(repository: root, size: options.baseLayerSize, seed: 1)
        seeded.commonBase = try await commonBase(in: root).first
        var cheap: [Digest] = []
        for (index, version) in options.versions.enumerated() {
            // Platform digest images, listed by the controller (all) and install (the first half).
            var digests: [Digest] = []
            for i in 0..<options.platformImagesPerVersion {
                digests.append(try await pushPlatformImage(version: index, number: i))
            }
            if cheap.isEmpty && options.cheapPlatformImages > 0 { cheap = try await pushCheapImages(options.cheapPlatformImages) }
            digests += cheap
            let digestsJSON = Self.imagesDigests(digests, module: "controlPlaneManager")
            let installJSON = Self.imagesDigests(Array(digests.prefix(max(1, digests.count / 2))), module: "candi")
            seeded.platformDigests[version] = digests

            // Controller: big shared base, a stale middle layer, the real files on top.
            let digestsPath = "deckhouse/modules/images_digests.json"
            var staleFiles = [(digestsPath, Array("{}".utf8))]
            var topFiles = [(digestsPath, digestsJSON)]
            if let broken = options.brokenControllerDigests[version] {
                (staleFiles, topFiles) = broken.files(digestsPath, digestsJSON)
                if staleFiles.isEmpty { staleFiles = [("deckhouse/modules/README", Array("stale\n".utf8))] }
            }
            let stale = try await pushFiles(repository: root, files: staleFiles)
            let top = try await pushFiles(repository: root, files: [
                ("deckhouse/edition", Array("\(options.edition)\n".utf8)),
                ("deckhouse/version", Array("\(version)\n".utf8)),
            ] + topFiles)
            // A controller whose list is missing lacks the big base too: every layer LayerFiles
            // reads through must be a tar, and the synthetic base is not one.
            let layers = options.brokenControllerDigests[version] == .missing ? [stale, top] : [base, stale, top]
            seeded.controller[version] = try await pushImage(repository: root, layers: layers, tag: version)
            try await pushInstallImages(version: version, index: index, installJSON: installJSON)
            if !options.versionsWithoutReleaseChannelImage.contains(version) {
                _ = try await pushChannelImage(repository: "\(root)/release-channel", version: version, tag: version, suspend: false, changelog: true)
            }
            if options.vex {
                // Attestations for the plain OCI platform images (the index and the Docker image have none).
                for digest in digests.dropFirst(2) {
                    seeded.vexReferences.append(try await pushAttestation(repository: root, tag: "sha256-\(digest.hex).att", seed: 7000 + UInt64(index)))
                }
            }
        }
        for (channel, version) in options.channels.sorted(by: { $0.key < $1.key }) {
            // As in the real registry, a channel tag is its own manifest, not the version's:
            // a bundle must carry the source's channel image, never a retag of the version.
            _ = try await pushChannelImage(repository: "\(root)/release-channel", version: version, tag: channel,
                                           suspend: options.suspended.contains(channel), changelog: false)
            let standalone = options.versionsWithoutStandaloneInstaller.contains(version) ? [] : ["\(root)/install-standalone"]
            for repository in [root, "\(root)/install"] + standalone {
                try await retagDistinct(repository: repository, from: version, to: channel)
            }
        }

        try await pushSecurityDatabases(into: &seeded)
        let installerLayer = try await pushSynthetic(repository: "\(registryRoot)/installer", size: options.imageLayerSize, seed: 900)
        seeded.installer = try await pushImage(repository: "\(registryRoot)/installer",
                                               layers: try await commonBase(in: "\(registryRoot)/installer") + [installerLayer], tag: "latest")

        for (name, channels) in options.modules.sorted(by: { $0.key < $1.key }) {
            seeded.moduleDigests[name] = try await seedModular(catalog: "modules", channelSegment: "release", name: name,
                                                               channels: channels, offChannel: options.moduleOffChannelVersions[name] ?? [],
                                                               extra: name == options.moduleWithExtra ? "scanner" : nil, extraTagJSON: "\"v0.3.1\"",
                                                               seedBase: 2000, into: &seeded)
        }
        for (name, channels) in options.packages.sorted(by: { $0.key < $1.key }) {
            seeded.packageDigests[name] = try await seedModular(catalog: "packages", channelSegment: "version", name: name,
                                                                channels: channels, offChannel: [],
                                                                extra: name == options.packageWithExtra ? "helper" : nil, extraTagJSON: "2",
                                                                seedBase: 4000, into: &seeded)
        }
        if options.plugins {
            try await seedPlugins(into: &seeded)
        }
        return seeded
    }

    /// `install:<version>` holding the installer's images_digests.json, and `install-standalone:<version>`
    /// unless that version is to lack one.
    private func pushInstallImages(version: String, index: Int, installJSON: [UInt8]) async throws {
        let install = try await pushFiles(repository: "\(root)/install", files: [("deckhouse/candi/images_digests.json", installJSON)])
        _ = try await pushImage(repository: "\(root)/install", layers: [install], tag: version)
        guard !options.versionsWithoutStandaloneInstaller.contains(version) else { return }
        let standalone = try await pushSynthetic(repository: "\(root)/install-standalone", size: options.imageLayerSize, seed: 500 + UInt64(index))
        _ = try await pushImage(repository: "\(root)/install-standalone", layers: [standalone], tag: version)
    }

    /// The four security databases, each with its own media types, but those the source is to lack.
    private func pushSecurityDatabases(into seeded: inout Seeded) async throws {
        for (name, type) in [("trivy-db", "db"), ("trivy-bdu", "bdu"), ("trivy-java-db", "javadb"), ("trivy-checks", "checks")]
            where !options.missingSecurityDatabases.contains(name) {
            let tag = EditionSeeder.securityTags[name] ?? "1"
            seeded.securityDigests[name] = try await pushArtifact(repository: "\(root)/security/\(name)", tag: tag, kind: type)
        }
    }

    /// A module or a package (d8-current.md §2): a catalog tag, version images holding
    /// images_digests.json (and extra_images.json), digest images, an extra image, version and
    /// channel images in the channel repository (channel images distinct from version images).
    /// `extra` is the extra image's name, `extraTagJSON` its tag as extra_images.json writes it (a JSON value).
    func seedModular(catalog: String, channelSegment: String, name: String, channels: [String: String], offChannel: [String],
                     extra: String?, extraTagJSON: String, seedBase: UInt64, into seeded: inout Seeded) async throws -> [String: [Digest]] {
        let marker = try await pushSynthetic(repository: "\(root)/\(catalog)", size: 64, seed: seedBase - 1000 + UInt64(name.count))
        _ = try await pushImage(repository: "\(root)/\(catalog)", layers: [marker], tag: name)
        let repository = "\(root)/\(catalog)/\(name)"
        var perVersion: [String: [Digest]] = [:]
        for (vIndex, version) in Set(channels.values).union(offChannel).sorted().enumerated() {
            var digests: [Digest] = []
            for i in 0..<options.moduleImagesPerVersion {
                let layer = try await pushSynthetic(repository: repository, size: options.imageLayerSize,
                                                    seed: seedBase + UInt64(name.count * 100 + vIndex * 10 + i))
                digests.append(try await pushImage(repository: repository, layers: try await commonBase(in: repository) + [layer], tag: nil))
            }
            perVersion[version] = digests
            let digestsJSON = Self.imagesDigests(digests, module: name)
            var files: [(String, [UInt8])] = [("images_digests.json", digestsJSON)]
            var lowerFiles: [(String, [UInt8])] = []
            if let broken = options.brokenModularDigests[name]?[version] {
                let (lower, top) = broken.files("images_digests.json", digestsJSON)
                files = top
                lowerFiles = lower
            }
            if let extra {
                files.append(("extra_images.json", Array("{\"\(extra)\":\(extraTagJSON)}".utf8)))
                let layer = try await pushSynthetic(repository: "\(repository)/extra/\(extra)", size: options.imageLayerSize, seed: seedBase + 1000)
                let tag = extraTagJSON.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
                _ = try await pushImage(repository: "\(repository)/extra/\(extra)", layers: [layer], tag: tag)
            }
            let moduleLayer = try await pushFiles(repository: repository, files: files)
            let layers = lowerFiles.isEmpty ? [moduleLayer] : [try await pushFiles(repository: repository, files: lowerFiles), moduleLayer]
            _ = try await pushImage(repository: repository, layers: layers, tag: version)
            if options.modularVersionsWithoutChannelImage[name]?.contains(version) != true {
                _ = try await pushChannelImage(repository: "\(repository)/\(channelSegment)", version: version, tag: version, suspend: false, changelog: false)
            }
            if options.vex {
                seeded.vexReferences.append(try await pushAttestation(repository: repository, tag: "\(version).att", seed: seedBase + 2000 + UInt64(vIndex)))
                if let first = digests.first {
                    seeded.vexReferences.append(try await pushAttestation(repository: repository, tag: "sha256-\(first.hex).att", seed: seedBase + 2100 + UInt64(vIndex)))
                }
            }
        }
        for (channel, version) in channels.sorted(by: { $0.key < $1.key }) {
            let version = options.unreadableModularChannels[name]?.contains(channel) == true ? "latest" : version
            _ = try await pushChannelImage(repository: "\(repository)/\(channelSegment)", version: version, tag: channel,
                                           suspend: options.suspendedModular[name]?.contains(channel) ?? false, changelog: false)
        }
        return perVersion
    }

    /// Plugins in `<R>/deckhouse-cli/plugins`: `module-tools` has index images whose contract
    /// (base64 JSON annotation `contract`, on the index or on its first child) requires the module
    /// `console` (v1.0.0: <1.0.0, which no bundle satisfies; v1.1.0: >=1.1.0; v1.1.3: >=1.2.0 and
    /// the plugin `diag` >=0.2.0 and `package`, which is d8's own command and never in a catalog;
    /// v1.2.0-rc.1 is a pre-release); `diag` has plain images and no contract.
    func seedPlugins(into seeded: inout Seeded) async throws {
        let catalog = "\(registryRoot)/deckhouse-cli/plugins"
        // (version, console's constraint, the plugins it needs, contract on the index rather than its first child):
        // console v1.1.5 takes v1.1.0, console v1.2.0 takes v1.1.3, which brings diag along (as d8 pairs them).
        let needsDiag = ",\"plugins\":{\"mandatory\":[{\"name\":\"diag\",\"constraint\":\">=0.2.0\"},{\"name\":\"package\",\"constraint\":\">=0.1.0\"}]}"
        let contracts: [(String, String, String, Bool)] = [
            ("v1.0.0", "<1.0.0", "", true), ("v1.1.0", ">=1.1.0", "", false), ("v1.1.3", ">=1.2.0", needsDiag, true),
            ("v1.2.0-rc.1", ">=1.1.0", "", true),
        ]
        let marker = try await pushSynthetic(repository: catalog, size: 64, seed: 8000)
        for name in ["diag", "module-tools"] {
            _ = try await pushImage(repository: catalog, layers: [marker], tag: name)
        }
        let tools = "\(catalog)/module-tools"
        for (i, (version, constraint, plugins, onIndex)) in contracts.enumerated() {
            let contract = "{\"name\":\"module-tools\",\"version\":\"\(version)\",\"requirements\":{\"modules\":{\"mandatory\":[{\"name\":\"console\",\"constraint\":\"\(constraint)\"}]}\(plugins)}}"
            let annotation = Data(contract.utf8).base64EncodedString()
            var children: [Descriptor] = []
            for (j, arch) in ["amd64", "arm64"].enumerated() {
                let layer = try await pushSynthetic(repository: tools, size: options.imageLayerSize, seed: 8100 + UInt64(i * 10 + j))
                let digest = try await pushImage(repository: tools, layers: [layer], tag: nil,
                                                 annotations: onIndex || j > 0 ? nil : ["contract": annotation])
                let bytes = try await client.manifest(repository: tools, reference: digest.string).bytes
                children.append(Descriptor(mediaType: .ociManifest, digest: digest, size: Int64(bytes.count),
                                           platform: Platform(architecture: arch, os: "linux")))
            }
            let index = ImageIndex(schemaVersion: 2, mediaType: .ociIndex, manifests: children,
                                   annotations: onIndex ? ["contract": annotation] : nil)
            _ = try await putManifest(repository: tools, value: index, mediaType: .ociIndex, tag: version)
            seeded.plugins["module-tools", default: []].append(version)
        }
        for (i, version) in ["v0.1.0", "v0.2.0"].enumerated() {
            let layer = try await pushSynthetic(repository: "\(catalog)/diag", size: options.imageLayerSize, seed: 8200 + UInt64(i))
            _ = try await pushImage(repository: "\(catalog)/diag", layers: [layer], tag: version)
            seeded.plugins["diag", default: []].append(version)
        }
    }

    /// A release-channel image: `version.json` (with requirements and disruptions for the
    /// version's minor) and, for a version image, `changelog.yaml`. The tag is written into the
    /// image config, so a channel image and its version's image are different manifests.
    func pushChannelImage(repository: String, version: String, tag: String, suspend: Bool, changelog: Bool) async throws -> Digest {
        let minor = version.dropFirst().split(separator: ".").prefix(2).joined(separator: ".")
        var files: [(String, [UInt8])] = [("version.json", Array("""
            {"version":"\(version)","suspend":\(suspend),"requirements":{"k8s":"1.27","nodesMinimalOSVersionUbuntu":"18.04"},\
            "disruptions":{"\(minor)":["ingressNginx"]}}
            """.utf8))]
        if changelog {
            files.append(("changelog.yaml", Array("candi:\n  fixes:\n  - summary: Fix for \(version).\n    pull_request: https://example.invalid/1\n".utf8)))
        }
        let layer = try await pushFiles(repository: repository, files: files)
        return try await pushImage(repository: repository, layers: [layer], tag: tag, label: tag)
    }

    /// A small attestation manifest (in-toto media types, as cosign writes them) under `tag`.
    func pushAttestation(repository: String, tag: String, seed: UInt64) async throws -> String {
        let statement = Array("{\"_type\":\"https://in-toto.io/Statement/v0.1\",\"predicateType\":\"https://openvex.dev/ns\",\"seed\":\(seed)}".utf8)
        let layer = try await pushBytes(repository: repository, bytes: statement, mediaType: MediaType(rawValue: "application/vnd.dsse.envelope.v1+json"))
        let config = try await pushBytes(repository: repository, bytes: Array("{}".utf8), mediaType: .ociConfig)
        let manifest = ImageManifest(schemaVersion: 2, mediaType: .ociManifest, config: config, layers: [layer])
        _ = try await putManifest(repository: repository, value: manifest, mediaType: .ociManifest, tag: tag)
        return "\(repository):\(tag)"
    }

    public static let securityTags = ["trivy-db": "2", "trivy-bdu": "1", "trivy-java-db": "1", "trivy-checks": "0"]

    /// `{"<module>": {"image0": "sha256:..", ...}}` as images_digests.json is shaped.
    static func imagesDigests(_ digests: [Digest], module: String) -> [UInt8] {
        let inner = digests.enumerated().map { "\"image\($0.offset)\":\"\($0.element)\"" }.joined(separator: ",")
        return Array("{\"\(module)\":{\(inner)}}".utf8)
    }
}
