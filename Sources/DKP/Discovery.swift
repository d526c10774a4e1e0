import Foundation
import OCI
import Registry
import Version

/// One reference to put into a bundle: where it comes from and where it goes.
public struct BundleImage: Sendable, Hashable, Codable {
    /// The tar file it belongs to: `platform.tar`, `installer.tar`, `security.tar`, `module-<name>.tar`.
    public var tar: String
    /// The layout's directory inside the tar ("" for the tar root), e.g. `install`, `modules/foo/release`.
    public var layout: String
    /// Source repository and reference (a tag or `sha256:<hex>`).
    public var repository: String
    public var reference: String
    /// `io.deckhouse.image.short_tag`: the tag to push (a tag, a channel, or a digest's 64 hex).
    public var shortTag: String
    /// `org.opencontainers.image.ref.name`: the full source reference.
    public var refName: String
}

/// What to pull (cli.md's pull options).
public struct PullSelection: Sendable {
    public var deckhouseTag: String?
    public var sinceVersion: Version?
    /// Modules to include, each with an optional constraint; empty means every module.
    public var includeModules: [String: VersionConstraint?] = [:]
    public var excludeModules: Set<String> = []
    public var platform = true
    public var modules = true
    public var securityDatabases = true
    public var installer = true

    public init() {}
}

/// The outcome of discovery: every reference to pull, and what was chosen, for the plan.
public struct DiscoveredEdition: Sendable {
    public var images: [BundleImage] = []
    public var platformVersions: [String] = []
    public var channels: [String: String] = [:]
    public var modules: [String: [String]] = [:]
    public var notes: [String] = []
}

/// Finds what an edition holds and chooses what to pull, with d8's semantics
/// (dkp-source-and-bundle.md §1).
public struct EditionDiscovery: Sendable {
    public let client: RegistryClient
    public let source: EditionSource
    public let concurrency: Int

    /// The security databases and the tags d8 pulls.
    public static let securityDatabases: [(name: String, tag: String)] = [
        ("trivy-db", "2"), ("trivy-bdu", "1"), ("trivy-java-db", "1"), ("trivy-checks", "0"),
    ]

    public init(client: RegistryClient, source: EditionSource, concurrency: Int = 8) {
        self.client = client
        self.source = source
        self.concurrency = concurrency
    }

    public func discover(_ selection: PullSelection) async throws -> DiscoveredEdition {
        var result = DiscoveredEdition()
        if selection.platform {
            try await discoverPlatform(selection, into: &result)
        }
        if selection.installer {
            let repository = source.registryRoot.appending(path: "installer").repository
            result.images.append(BundleImage(tar: "installer.tar", layout: "installer", repository: repository,
                                             reference: "latest", shortTag: "latest",
                                             refName: "\(source.host)/\(repository):latest"))
        }
        if selection.securityDatabases {
            for database in Self.securityDatabases {
                result.images.append(image(tar: "security.tar", layout: "security/\(database.name)", tag: database.tag))
            }
        }
        if selection.modules {
            try await discoverModules(selection, into: &result)
        }
        return result
    }

    // MARK: platform

    private func discoverPlatform(_ selection: PullSelection, into result: inout DiscoveredEdition) async throws {
        let channelVersions = try await readChannels(repository: source.repository("release-channel"))
        result.channels = channelVersions.mapValues(\.tag).reduce(into: [:]) { $0[$1.key.rawValue] = $1.value }
        let versionTags = try await client.tags(repository: source.repository("release-channel"))
        let known = versionTags.compactMap(Version.init(tag:))

        var selected: [String] = []
        var aliases: [ReleaseChannel: String] = [:]
        if let wanted = selection.deckhouseTag {
            let tag: String
            if let channel = ReleaseChannel(rawValue: wanted) {
                guard let version = channelVersions[channel] else {
                    throw DKPError.notFound("release channel \(wanted) is not published in \(source); \(describe(channelVersions, known))")
                }
                tag = version.tag
            } else {
                tag = wanted
            }
            guard try await client.manifestDescriptor(repository: source.root.repository, reference: tag) != nil else {
                throw DKPError.notFound("\(source):\(wanted) does not exist; \(describe(channelVersions, known))")
            }
            selected = [tag]
            // The version's channel image answers on every channel, so a cluster on any channel sees it.
            for channel in ReleaseChannel.standard { aliases[channel] = tag }
        } else {
            guard let low = selection.sinceVersion ?? channelVersions[.rockSolid] ?? channelVersions.values.min(),
                  let high = channelVersions[.alpha] ?? channelVersions.values.max() else {
                throw DKPError.invalidSource("\(source)/release-channel has no readable channel images; is \(source) a DKP edition?")
            }
            // The latest patch of every minor between the bounds, plus each channel's own version.
            var latestPatch: [String: Version] = [:]
            for version in known where version >= low && version <= high && version.prereleaseIdentifiers.isEmpty {
                let minor = "\(version.major).\(version.minor)"
                if latestPatch[minor].map({ version > $0 }) ?? true { latestPatch[minor] = version }
            }
            var versions = Set(latestPatch.values)
            for version in channelVersions.values { versions.insert(version) }
            selected = versions.sorted().map(\.tag)
            for (channel, version) in channelVersions { aliases[channel] = version.tag }
        }
        result.platformVersions = selected

        let perVersion = try await concurrentMap(selected, limit: concurrency) { tag in
            try await self.platformImages(tag: tag)
        }
        for images in perVersion { result.images += images }
        for (channel, tag) in aliases.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            result.images.append(image(tar: "platform.tar", layout: "release-channel", tag: tag, shortTag: channel.rawValue))
            if selection.deckhouseTag == nil {
                for layout in ["", "install", "install-standalone"] {
                    result.images.append(image(tar: "platform.tar", layout: layout, tag: tag, shortTag: channel.rawValue))
                }
            }
        }
    }

    /// The images of one platform version: controller, installers, channel image, and every
    /// digest its images_digests.json files list.
    private func platformImages(tag: String) async throws -> [BundleImage] {
        var images = [
            image(tar: "platform.tar", layout: "", tag: tag),
            image(tar: "platform.tar", layout: "install", tag: tag),
            image(tar: "platform.tar", layout: "install-standalone", tag: tag),
            image(tar: "platform.tar", layout: "release-channel", tag: tag),
        ]
        let controller = try await ImageFiles.read(["deckhouse/modules/images_digests.json", "deckhouse/edition", "deckhouse/version"],
                                                   client: client, repository: source.root.repository, reference: tag)
        let install = try await ImageFiles.read(["deckhouse/candi/images_digests.json"],
                                                client: client, repository: source.repository("install"), reference: tag)
        var found = Set<Digest>()
        for file in [controller["deckhouse/modules/images_digests.json"], install["deckhouse/candi/images_digests.json"]] {
            if let file { found.formUnion(digests(in: file)) }
        }
        for digest in found.sorted() {
            images.append(BundleImage(tar: "platform.tar", layout: "", repository: source.root.repository,
                                      reference: digest.string, shortTag: digest.hex,
                                      refName: "\(source.root)@\(digest)"))
        }
        return images
    }

    /// `version.json` of every channel image in `repository` (channels that do not exist are left out).
    private func readChannels(repository: String) async throws -> [ReleaseChannel: Version] {
        let pairs = try await concurrentMap(ReleaseChannel.allCases, limit: concurrency) { channel -> (ReleaseChannel, Version?) in
            guard try await client.manifestDescriptor(repository: repository, reference: channel.rawValue) != nil else {
                return (channel, nil)
            }
            let files = try await ImageFiles.read(["version.json"], client: client, repository: repository, reference: channel.rawValue)
            guard let bytes = files["version.json"],
                  let file = try? JSONDecoder().decode(ChannelVersionFile.self, from: Data(bytes)),
                  let version = Version(tag: file.version.hasPrefix("v") ? file.version : "v" + file.version) else {
                throw DKPError.invalidSource("\(source.host)/\(repository):\(channel.rawValue) has no readable version.json")
            }
            return (channel, version)
        }
        return pairs.reduce(into: [:]) { if let version = $1.1 { $0[$1.0] = version } }
    }

    private func describe(_ channels: [ReleaseChannel: Version], _ known: [Version]) -> String {
        let list = ReleaseChannel.allCases.compactMap { c in channels[c].map { "\(c.rawValue)=\($0.tag)" } }.joined(separator: ", ")
        let newest = known.sorted(by: >).prefix(5).map(\.tag).joined(separator: ", ")
        return "channels: \(list.isEmpty ? "none" : list); newest versions: \(newest.isEmpty ? "none" : newest)"
    }

    private func image(tar: String, layout: String, tag: String, shortTag: String? = nil) -> BundleImage {
        let repository = source.repository(layout)
        return BundleImage(tar: tar, layout: layout, repository: repository, reference: tag,
                           shortTag: shortTag ?? tag, refName: "\(source.host)/\(repository):\(shortTag ?? tag)")
    }

    // MARK: modules

    private func discoverModules(_ selection: PullSelection, into result: inout DiscoveredEdition) async throws {
        let all: [String]
        do {
            all = try await client.tags(repository: source.repository("modules")).sorted()
        } catch RegistryError.notFound {
            result.notes.append("\(source)/modules does not exist: no modules pulled")
            return
        }
        var names = all
        if !selection.includeModules.isEmpty {
            let missing = selection.includeModules.keys.filter { !all.contains($0) }.sorted()
            if !missing.isEmpty {
                throw DKPError.notFound("module(s) \(missing.joined(separator: ", ")) not found in \(source)/modules; available: \(all.joined(separator: ", "))")
            }
            names = all.filter { selection.includeModules.keys.contains($0) }
        }
        names.removeAll { selection.excludeModules.contains($0) }

        let perModule = try await concurrentMap(names, limit: concurrency) { name in
            try await self.moduleImages(name: name, constraint: selection.includeModules[name] ?? nil)
        }
        for (name, versions, images) in perModule {
            result.modules[name] = versions
            result.images += images
        }
    }

    private func moduleImages(name: String, constraint: VersionConstraint?) async throws -> (String, [String], [BundleImage]) {
        let tar = "module-\(name).tar"
        let channels = try await readChannels(repository: source.repository("modules/\(name)/release"))
        var versions = Set(channels.values.filter { constraint?.matches($0) ?? true })
        if let exact = constraint?.exactVersion { versions.insert(exact) }
        var images: [BundleImage] = []
        for version in versions.sorted() {
            let tag = version.tag
            guard try await client.manifestDescriptor(repository: source.repository("modules/\(name)"), reference: tag) != nil else {
                throw DKPError.notFound("\(source)/modules/\(name):\(tag) does not exist")
            }
            images.append(image(tar: tar, layout: "modules/\(name)", tag: tag))
            images.append(image(tar: tar, layout: "modules/\(name)/release", tag: tag))
            let files = try await ImageFiles.read(["images_digests.json", "extra_images.json"], client: client,
                                                  repository: source.repository("modules/\(name)"), reference: tag)
            for digest in files["images_digests.json"].map(digests(in:)) ?? [] {
                let repository = source.repository("modules/\(name)")
                images.append(BundleImage(tar: tar, layout: "modules/\(name)", repository: repository, reference: digest.string,
                                          shortTag: digest.hex, refName: "\(source.host)/\(repository)@\(digest)"))
            }
            if let extra = files["extra_images.json"] {
                guard let map = try? JSONDecoder().decode([String: String].self, from: Data(extra)) else {
                    throw DKPError.invalidSource("extra_images.json of \(source)/modules/\(name):\(tag) is not a map of image name to tag")
                }
                for (extraName, extraTag) in map.sorted(by: { $0.key < $1.key }) {
                    images.append(image(tar: tar, layout: "modules/\(name)/extra/\(extraName)", tag: extraTag))
                }
            }
        }
        for (channel, version) in channels where versions.contains(version) {
            images.append(image(tar: tar, layout: "modules/\(name)/release", tag: version.tag, shortTag: channel.rawValue))
        }
        return (name, versions.sorted().map(\.tag), images)
    }
}
