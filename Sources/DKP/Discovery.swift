import BoundedPool
import Foundation
import OCI
import Registry
import Version

/// One reference to put into a bundle: where it comes from and where it goes.
/// Compact: a pull can carry tens of thousands, so the ref name and the usual short tag are
/// derived when asked for, not stored (each was a string of its own per reference).
public struct BundleImage: Sendable, Hashable, Encodable {
    /// The tar file it belongs to: `platform.tar`, `installer.tar`, `security.tar`, `module-<name>.tar`,
    /// `package-<name>.tar`, `package-versions.tar`, `plugin-<name>.tar`.
    public var tar: String
    /// The layout's directory inside the tar ("" for the tar root), e.g. `install`, `modules/foo/release`.
    public var layout: String
    /// Source repository and reference (a tag or `sha256:<hex>`).
    public var repository: String
    public var reference: String
    /// The source registry's host: one string shared by every reference of a pull.
    public var sourceHost: String
    /// The tag to push where it is not the reference's own (a d8 retag); nil otherwise.
    private var retag: String?

    public init(tar: String, layout: String, repository: String, reference: String, shortTag: String, sourceHost: String) {
        self.tar = tar
        self.layout = layout
        self.repository = repository
        self.reference = reference
        self.sourceHost = sourceHost
        self.retag = nil
        if shortTag != self.shortTag { retag = shortTag }
    }

    var isDigest: Bool { reference.hasPrefix("sha256:") }

    /// `io.deckhouse.image.short_tag`: the tag to push (a tag, a channel, or a digest's 64 hex).
    public var shortTag: String { retag ?? (isDigest ? String(reference.dropFirst("sha256:".count)) : reference) }

    /// `org.opencontainers.image.ref.name`: the full source reference (`HOST/REPO@sha256:...`
    /// for a digest, `HOST/REPO:<short tag>` otherwise, as d8 writes it).
    public var refName: String {
        isDigest ? "\(sourceHost)/\(repository)@\(reference)" : "\(sourceHost)/\(repository):\(shortTag)"
    }

    /// What makes two references one entry of a layout's index.json (equal keys, equal ref
    /// names within one pull), made of the image's own strings: nothing new is allocated.
    public var layoutKey: LayoutKey { LayoutKey(repository: repository, name: retag ?? reference) }

    public struct LayoutKey: Hashable, Sendable {
        var repository: String
        var name: String
    }

    /// True when the bundle tags the source's `reference` under another name (a d8 retag:
    /// a pinned channel, `install:<channel>`), so the source's own `shortTag` may differ.
    public var isAlias: Bool { !isDigest && reference != shortTag }

    private enum CodingKeys: String, CodingKey { case tar, layout, repository, reference, shortTag, refName }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(tar, forKey: .tar)
        try container.encode(layout, forKey: .layout)
        try container.encode(repository, forKey: .repository)
        try container.encode(reference, forKey: .reference)
        try container.encode(shortTag, forKey: .shortTag)
        try container.encode(refName, forKey: .refName)
    }
}

/// What to pull (cli.md's pull options and d8-current.md §5).
public struct PullSelection: Sendable {
    public var deckhouseTag: String?
    /// The low end of the default window in place of rock-solid (not with a tag or `includePlatform`).
    public var sinceVersion: Version?
    /// `--include-platform`: platform versions within this range instead of rock-solid..alpha.
    public var includePlatform: VersionConstraint?
    /// Modules to include, each with an optional constraint; empty means every module.
    public var includeModules: [String: VersionConstraint?] = [:]
    public var excludeModules: Set<String> = []
    public var includePackages: [String: VersionConstraint?] = [:]
    public var excludePackages: Set<String> = []
    /// `--include-plugin`: plugins pulled whatever the modules are (nil: the newest stable version).
    public var includePlugins: [String: VersionConstraint?] = [:]
    public var platform = true
    public var modules = true
    public var packages = true
    public var securityDatabases = true
    public var installer = true
    public var installerTag = "latest"
    /// Modules and packages: only their extra images.
    public var onlyExtraImages = false
    public var skipVex = false
    public var ignoreSuspend = false
    /// The source has no tags-list API: versions are found by probing candidate tags.
    public var proxyRegistry = false

    public init() {}

    /// A single platform version is pinned (`--deckhouse-tag`, or `--include-platform =vX.Y.Z`).
    public var pinnedTag: String? {
        deckhouseTag ?? includePlatform?.pinnedTag
    }
}

/// One platform version's release data, for `deckhousereleases.yaml`.
public struct ReleaseData: Sendable {
    public var version: String
    public var versionJSON: [UInt8]
    public var changelog: [UInt8]?
}

/// The outcome of discovery: every reference to pull, and what was chosen, for the plan and the summary.
public struct DiscoveredEdition: Sendable {
    public var images: [BundleImage] = []
    public var platformVersions: [String] = []
    /// Channel name -> version, as the bundle serves them (a pin on every channel it is put on).
    public var channels: [String: String] = [:]
    public var modules: [String: [String]] = [:]
    public var packages: [String: [String]] = [:]
    public var plugins: [String: [String]] = [:]
    public var securityDatabases: [String] = []
    public var vexImages = 0
    public var notes: [String] = []
    /// Release data of each platform version of a range pull (empty for a pinned pull).
    public var releases: [ReleaseData] = []
    /// `REPOSITORY:CHANNEL` -> the digest discovery read there: the plan fetches these (see `ChannelPins`).
    public var channelDigests: [String: Digest] = [:]

    /// The key of `channelDigests` for a tag of a source repository.
    public static func channelKey(repository: String, tag: String) -> String { "\(repository):\(tag)" }

    /// Adds what another phase of discovery found, after what this one holds.
    mutating func merge(_ other: DiscoveredEdition) {
        images += other.images
        platformVersions += other.platformVersions
        channels.merge(other.channels) { mine, _ in mine }
        modules.merge(other.modules) { mine, _ in mine }
        packages.merge(other.packages) { mine, _ in mine }
        plugins.merge(other.plugins) { mine, _ in mine }
        securityDatabases += other.securityDatabases
        vexImages += other.vexImages
        notes += other.notes
        releases += other.releases
    }
}

/// Finds what an edition holds and chooses what to pull, with d8's semantics
/// (dkp-source-and-bundle.md §1, d8-current.md). The parts live in their own files:
/// platform (`PlatformDiscovery`), modules and packages (`ModularDiscovery`), plugins
/// (`PluginDiscovery`) and VEX attestations (`VexDiscovery`).
public struct EditionDiscovery: Sendable {
    public let client: RegistryClient
    public let source: EditionSource
    public let concurrency: Int
    /// Where modules live in the source, relative to `<E>` (`--modules-path-suffix`, `/` for `<E>` itself).
    public let modulesPathSuffix: String
    /// Where packages live, likewise (`--packages-path-suffix`).
    public let packagesPathSuffix: String
    /// What `readChannels` read, shared by every copy of this value.
    let channelPins = ChannelPins()

    /// The security databases and the tags d8 pulls.
    public static let securityDatabases: [(name: String, tag: String)] = [
        ("trivy-db", "2"), ("trivy-bdu", "1"), ("trivy-java-db", "1"), ("trivy-checks", "0"),
    ]

    public init(client: RegistryClient, source: EditionSource, concurrency: Int = 8, modulesPathSuffix: String = "/modules",
                packagesPathSuffix: String = "/packages") {
        self.client = client
        self.source = source
        self.concurrency = concurrency
        self.modulesPathSuffix = modulesPathSuffix
        self.packagesPathSuffix = packagesPathSuffix
    }

    /// The source repository of a bundle layout path: `<E>/<path>`, a leading `modules` or
    /// `packages` segment replaced by its path suffix (the bundle always says `modules/`, `packages/`).
    func sourceRepository(_ layout: String) -> String {
        for (catalog, pathSuffix) in [("modules", modulesPathSuffix), ("packages", packagesPathSuffix)]
        where layout == catalog || layout.hasPrefix(catalog + "/") {
            let suffix = pathSuffix.split(separator: "/").joined(separator: "/")
            let rest = layout.dropFirst(catalog.count).split(separator: "/").joined(separator: "/")
            return source.repository([suffix, rest].filter { !$0.isEmpty }.joined(separator: "/"))
        }
        return source.repository(layout)
    }

    public func discover(_ selection: PullSelection) async throws -> DiscoveredEdition {
        // The phases that need nothing of one another run at once: each is a chain of round
        // trips to the source, which a far registry makes long. Their parts are merged in this
        // fixed order, and the first failure in it is the one thrown, so the result is what
        // running them one after the other gives.
        async let platform = Self.phase { part in
            selection.platform ? try await self.discoverPlatform(selection, into: &part) : []
        }
        async let installer = Self.phase { part in
            if selection.installer { try await self.discoverInstaller(tag: selection.installerTag, into: &part) }
            return []
        }
        async let modules = Self.phase { part in
            guard selection.modules else { return [] }
            return try await self.discoverModular(.module, include: selection.includeModules,
                                                  exclude: selection.excludeModules, selection: selection, into: &part)
        }
        // package-versions.tar is written on every pull, --no-packages included (d8-current.md §2).
        async let packageVersions = Self.phase { part in
            if !selection.proxyRegistry { try await self.discoverPackageVersions(selection, into: &part) }
            return []
        }
        async let packages = Self.phase { part in
            guard selection.packages else { return [] }
            return try await self.discoverModular(.package, include: selection.includePackages,
                                                  exclude: selection.excludePackages, selection: selection, into: &part)
        }
        async let security = Self.phase { part in
            if selection.securityDatabases { try await self.discoverSecurityDatabases(into: &part) }
            return []
        }
        let parts = [await platform, await installer, await security, await modules, await packageVersions, await packages]

        var result = DiscoveredEdition()
        var vexSubjects: [VexSubject] = []
        for part in parts {
            let (edition, subjects) = try part.get()
            result.merge(edition)
            vexSubjects += subjects
        }
        // Plugins follow the modules the bundle carries.
        try await discoverPlugins(selection, into: &result)
        if !selection.skipVex {
            let found = try await findVexImages(vexSubjects)
            result.images += found
            result.vexImages = found.count
        }
        result.channelDigests = channelPins.all
        return result
    }

    /// One discovery phase into a part of its own, its failure kept for `discover` to order.
    private static func phase(
        _ body: (inout DiscoveredEdition) async throws -> [VexSubject]
    ) async -> Result<(DiscoveredEdition, [VexSubject]), Error> {
        var part = DiscoveredEdition()
        do {
            let subjects = try await body(&part)
            return .success((part, subjects))
        } catch {
            return .failure(error)
        }
    }

    private func discoverInstaller(tag: String, into result: inout DiscoveredEdition) async throws {
        let repository = source.registryRoot.appending(path: "installer").repository
        let found: Descriptor?
        do {
            found = try await client.manifestDescriptor(repository: repository, reference: tag)
        } catch let error as RegistryError where error.meansUnavailable {
            // Outside the edition root, so outside some licenses' scope: d8 warns and goes on.
            result.notes.append("\(source.host)/\(repository):\(tag) is refused to this identity (\(error)): the bundle has no installer (pass --no-installer to skip it)")
            return
        }
        guard found != nil else {
            result.notes.append("\(source.host)/\(repository):\(tag) does not exist: the bundle has no installer (pass --installer-tag or --no-installer)")
            return
        }
        result.images.append(BundleImage(tar: "installer.tar", layout: "installer", repository: repository,
                                         reference: tag, shortTag: tag, sourceHost: source.host))
    }

    // MARK: shared helpers

    func describe(_ channels: [ReleaseChannel: ChannelState], _ known: [Version]) -> String {
        let list = ReleaseChannel.allCases.compactMap { c in channels[c].map { "\(c.rawValue)=\($0.version.tag)" } }.joined(separator: ", ")
        let newest = known.sorted(by: >).prefix(5).map(\.tag).joined(separator: ", ")
        return "channels: \(list.isEmpty ? "none" : list); newest versions: \(newest.isEmpty ? "none" : newest)"
    }

    /// The reference `<E>/<layout>:<tag>` put into `tar` under `shortTag` (default: the tag itself).
    func image(tar: String, layout: String, tag: String, shortTag: String? = nil) -> BundleImage {
        let repository = sourceRepository(layout)
        return BundleImage(tar: tar, layout: layout, repository: repository, reference: tag,
                           shortTag: shortTag ?? tag, sourceHost: source.host)
    }

    /// The reference `<E>/<layout>@<digest>`, pushed under the digest's hex.
    func digestImage(tar: String, layout: String, digest: Digest) -> BundleImage {
        let repository = sourceRepository(layout)
        return BundleImage(tar: tar, layout: layout, repository: repository, reference: digest.string,
                           shortTag: digest.hex, sourceHost: source.host)
    }

    /// The latest patches of each range the constraint was given as, united: d8 filters a name
    /// given twice (`-i m@A -i m@B`) range by range, so each keeps its own latest patch and anchors.
    static func latestPatches(_ versions: [Version], within constraint: VersionConstraint) -> Set<Version> {
        constraint.ranges.reduce(into: Set<Version>()) { result, range in
            result.formUnion(latestPatches(versions.filter { range.matches($0) }, anchors: range.anchors))
        }
    }

    /// The latest version of every minor among `versions`, plus the anchors that are among them.
    /// A pre-release is here only where a range named one (`>=1.3.0-rc.0`), and then it counts
    /// as d8 counts it: the newest of its minor unless that minor's release is here too.
    static func latestPatches(_ versions: [Version], anchors: [Version] = []) -> Set<Version> {
        var latest: [String: Version] = [:]
        for version in versions {
            let minor = "\(version.major).\(version.minor)"
            if latest[minor].map({ version > $0 }) ?? true { latest[minor] = version }
        }
        var result = Set(latest.values)
        for anchor in anchors where versions.contains(anchor) { result.insert(anchor) }
        return result
    }

    /// The security databases the source has: one that is not there is a note, and security.tar
    /// is written without it (d8 takes them as they come too).
    func discoverSecurityDatabases(into result: inout DiscoveredEdition) async throws {
        let present = try await concurrentMap(Self.securityDatabases, limit: concurrency) { database in
            try await self.client.manifestDescriptor(repository: self.sourceRepository("security/\(database.name)"), reference: database.tag) != nil
        }
        for (database, there) in zip(Self.securityDatabases, present) {
            guard there else {
                result.notes.append("\(source)/security/\(database.name):\(database.tag) does not exist: security.tar is written without it")
                continue
            }
            result.images.append(image(tar: "security.tar", layout: "security/\(database.name)", tag: database.tag))
            result.securityDatabases.append(database.name)
        }
    }

    /// Tags in the order a bundle lists them: versions by semver, then custom tags by name.
    static func sortedTags(_ tags: Set<String>) -> [String] {
        tags.sorted { a, b in
            switch (Version(releaseTag: a), Version(releaseTag: b)) {
            case let (x?, y?): return x < y
            case (.some, nil): return true
            case (nil, .some): return false
            case (nil, nil): return a < b
            }
        }
    }

    /// `--proxy-registry`: versions matching `constraint` found by probing tags, as d8 does when the
    /// source has no tags list: from the constraint's lower bound, the patches of each minor in
    /// batches (a minor ends at a batch with no hit after one with a hit), then the next minor;
    /// two minors with no version move on to the next major, and a major with none ends it.
    /// Unlike d8, a missing .0 patch does not end the search, and each alternative of the range
    /// (`~1.2 || ~1.60`) is walked from its own lower bound, so a gap between them loses neither.
    static func probeVersions(_ constraint: VersionConstraint, exists: @escaping @Sendable (Version) async throws -> Bool) async throws -> [Version] {
        let starts = constraint.lowerBounds
        guard !starts.isEmpty else {
            throw DKPError.invalidInput("--proxy-registry needs a constraint with a lower bound (e.g. >=1.68.0), got '\(constraint)'")
        }
        var found = Set<Version>()
        var probedMinors = Set<[Int]>()
        // A start inside a minor an earlier walk probed adds nothing: that walk went on from there.
        for start in starts where !probedMinors.contains([start.major, start.minor]) {
            var major = start.major, minor = start.minor, firstPatch = start.patch
            var emptyMinors = 0
            while major <= start.major + 1 {
                // A minor an earlier walk passed through was probed from its .0: its hits stand.
                let hits = probedMinors.insert([major, minor]).inserted
                    ? try await probeMinor(major, minor, from: firstPatch, constraint, exists)
                    : Array(found.filter { $0.major == major && $0.minor == minor })
                found.formUnion(hits)
                firstPatch = 0
                emptyMinors = hits.isEmpty ? emptyMinors + 1 : 0
                if emptyMinors >= 2 {
                    (major, minor, emptyMinors) = (major + 1, 0, 0)
                } else {
                    minor += 1
                }
            }
        }
        return found.sorted()
    }

    /// The patches of one minor that exist, probed 8 at a time: stops at a batch without a hit
    /// once the minor had one, or after two batches without any.
    private static func probeMinor(_ major: Int, _ minor: Int, from firstPatch: Int, _ constraint: VersionConstraint,
                                   _ exists: @escaping @Sendable (Version) async throws -> Bool) async throws -> [Version] {
        let batch = 8
        var hits: [Version] = []
        var patch = firstPatch
        while true {
            let candidates = (patch..<patch + batch).map { Version(major, minor, $0) }.filter { constraint.matches($0) }
            let found = try await concurrentMap(candidates, limit: batch) { try await exists($0) ? $0 : nil }.compactMap { $0 }
            hits += found
            if found.isEmpty && (!hits.isEmpty || patch - firstPatch >= batch) { return hits }
            patch += batch
        }
    }
}
