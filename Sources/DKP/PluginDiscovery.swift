import BoundedPool
import Foundation
import OCI
import Registry
import Version
import Yams

/// The parts of a plugin's `contract` annotation (base64 JSON, or YAML) that selection reads
/// (deckhouse-cli pkg/registry/service/dto.go). Kubernetes and noneOf requirements are the
/// cluster's to check at install time, so they are not read.
struct PluginContract: Decodable, Sendable {
    struct Requirement: Decodable, Sendable {
        var name: String
        var constraint: String?
    }
    struct ModuleGroup: Decodable, Sendable {
        var name: String?
        var modules: [Requirement]?
    }
    /// `conditional`: needed only where both are installed; never a reason to pull, only a note.
    struct Modules: Decodable, Sendable {
        var mandatory: [Requirement]?
        var anyOf: [ModuleGroup]?
        var conditional: [Requirement]?
    }
    struct Plugins: Decodable, Sendable {
        var mandatory: [Requirement]?
        var conditional: [Requirement]?
    }
    struct Deckhouse: Decodable, Sendable {
        var constraint: String?
    }
    struct Requirements: Decodable, Sendable {
        var modules: Modules?
        var plugins: Plugins?
        var deckhouse: Deckhouse?
    }
    var requirements: Requirements?

    var mandatoryModules: [Requirement] { requirements?.modules?.mandatory ?? [] }
    var anyOfGroups: [ModuleGroup] { requirements?.modules?.anyOf ?? [] }
    var mandatoryPlugins: [Requirement] { requirements?.plugins?.mandatory ?? [] }
    var conditionalModules: [Requirement] { requirements?.modules?.conditional ?? [] }
    var conditionalPlugins: [Requirement] { requirements?.plugins?.conditional ?? [] }

    /// The modules the plugin exists for: its mandatory ones and the members of its anyOf groups.
    var integratedModules: [Requirement] { mandatoryModules + anyOfGroups.flatMap { $0.modules ?? [] } }

    /// The annotation's value decoded: base64 of JSON, or of YAML (d8 passes it through
    /// YAMLToJSON, so a contract written in YAML is read too); nil when it is neither.
    init?(annotation encoded: String) {
        guard let bytes = Data(base64Encoded: encoded) else { return nil }
        if let json = try? JSONDecoder().decode(Self.self, from: bytes) {
            self = json
        } else if let yaml = try? YAMLDecoder().decode(Self.self, from: String(decoding: bytes, as: UTF8.self)) {
            self = yaml
        } else {
            return nil
        }
    }

    init() {}
}

/// One published version of a plugin.
struct PluginVersion: Sendable, Hashable {
    let tag: String
    let version: Version
}

/// Where the resolver reads plugins from.
protocol PluginSource: Sendable {
    /// Semver tags newest first, genuine pre-releases left out; `RegistryError` when unreadable.
    func versions(_ name: String) async throws -> [PluginVersion]
    /// The contract of one version (empty when it has none); `PluginSourceError.brokenContract`
    /// when it cannot be decoded, `RegistryError.notFound` when the tag does not exist.
    func contract(_ name: String, tag: String) async throws -> PluginContract
    /// The plugin's repository as messages name it.
    func displayName(of name: String) -> String
}

enum PluginSourceError: Error { case brokenContract(String) }

/// The source's plugins, each tags list and contract read once: the resolver asks for the
/// same contracts again and again while it pairs versions.
actor PluginCatalog: PluginSource {

    private let client: RegistryClient
    private let host: String
    private let repository: String
    private var versionLists: [String: [PluginVersion]] = [:]
    private var contracts: [String: PluginContract] = [:]

    init(client: RegistryClient, host: String, repository: String) {
        self.client = client
        self.host = host
        self.repository = repository
    }

    nonisolated func repository(of name: String) -> String { "\(repository)/\(name)" }
    nonisolated func displayName(of name: String) -> String { "\(host)/\(repository(of: name))" }

    /// The plugin's semver tags, newest first, genuine pre-releases left out (d8 keeps CI
    /// builds such as `v1.2.0-main`, as its install does).
    func versions(_ name: String) async throws -> [PluginVersion] {
        if let known = versionLists[name] { return known }
        let found = try await client.tags(repository: repository(of: name))
            .compactMap { tag in Version(tolerant: tag).map { PluginVersion(tag: tag, version: $0) } }
            .filter { !PluginResolver.isGenuinePrerelease($0.version) }
            .sorted { $0.version > $1.version }
        versionLists[name] = found
        return found
    }

    /// Reads the tags list and newest contract of every name at once, `limit` at a time, so the
    /// resolver, which goes one plugin after another, finds them read (failures are left for it
    /// to meet and report).
    func prefetch(_ names: [String], limit: Int) async {
        _ = try? await concurrentMap(names, limit: limit) { name in
            guard let newest = try? await self.versions(name).first else { return }
            _ = try? await self.contract(name, tag: newest.tag)
        }
    }

    /// The contract of one version: on the image or index, else on the index's first child; none
    /// is an empty contract, one that cannot be decoded is `brokenContract`.
    func contract(_ name: String, tag: String) async throws -> PluginContract {
        let key = "\(name):\(tag)"
        if let known = contracts[key] { return known }
        let manifest = try await client.manifest(repository: repository(of: name), reference: tag)
        var encoded: String?
        switch manifest.document {
        case let .image(image):
            encoded = image.annotations?["contract"]
        case let .index(index):
            encoded = index.annotations?["contract"]
            if encoded == nil, let first = index.manifests.first,
               case let .image(child) = try await client.manifest(repository: repository(of: name), reference: first.digest.string).document {
                encoded = child.annotations?["contract"]
            }
        }
        var contract = PluginContract()
        if let encoded, !encoded.isEmpty {
            guard let decoded = PluginContract(annotation: encoded) else {
                throw PluginSourceError.brokenContract("\(name) \(tag): its contract annotation is neither base64 JSON nor base64 YAML")
            }
            contract = decoded
        }
        contracts[key] = contract
        return contract
    }
}

extension EditionDiscovery {
    /// Plugins (d8-current.md §4, deckhouse-cli internal/mirror/README.MD "Plugin Mirroring"):
    /// for each bundled version of a module a plugin's newest contract names, the newest plugin
    /// version the bundle satisfies; the plugins those depend on; and `--include-plugin`.
    func discoverPlugins(_ selection: PullSelection, into result: inout DiscoveredEdition) async throws {
        let catalogRepository = source.registryRoot.appending(path: "deckhouse-cli/plugins").repository
        let automatic = selection.modules && !result.modules.isEmpty && !selection.proxyRegistry
        guard automatic || !selection.includePlugins.isEmpty else { return }
        var names: [String] = []
        if !selection.proxyRegistry {
            var listed = true
            do {
                names = try await client.tags(repository: catalogRepository).sorted()
            } catch let error as RegistryError where error.meansUnavailable {
                // d8 skips the automatic choice quietly when the catalog is absent or out of the
                // license's scope; what --include-plugin names is looked up in its own repository.
                listed = false
            }
            let missing = listed ? selection.includePlugins.keys.filter { !names.contains($0) }.sorted() : []
            if !missing.isEmpty {
                throw DKPError.notFound("plugin(s) \(missing.joined(separator: ", ")) not found in \(source.host)/\(catalogRepository); "
                                        + "available: \(names.joined(separator: ", "))")
            }
        }
        let catalog = PluginCatalog(client: client, host: source.host, repository: catalogRepository)
        var resolver = PluginResolver(catalog: catalog, canList: !selection.proxyRegistry,
                                      bundle: result.modules.mapValues { $0.compactMap(Version.init(releaseTag:)) },
                                      platformVersions: result.platformVersions.compactMap(Version.init(tag:)))
        if automatic {
            await catalog.prefetch(names, limit: concurrency)
            try await resolver.selectForModules(pluginNames: names)
        }
        try await resolver.selectIncluded(selection.includePlugins)
        try await resolver.noteConditionalConflicts()
        result.notes += resolver.notes
        for (name, versions) in resolver.selected.sorted(by: { $0.key < $1.key }) {
            let repository = catalog.repository(of: name)
            let tags = versions.sorted { $0.version > $1.version }.map(\.tag)
            result.plugins[name] = tags
            for tag in tags {
                result.images.append(BundleImage(tar: "plugin-\(name).tar", layout: "deckhouse-cli/plugins/\(name)", repository: repository,
                                                 reference: tag, shortTag: tag, sourceHost: source.host))
            }
        }
    }
}

extension RegistryError {
    /// Absent, or refused to this identity (a token registry refuses any path outside the
    /// license's scope, published or not): for an optional plugin the same as not published.
    var meansUnavailable: Bool {
        switch self {
        case .notFound, .unauthorized, .forbidden: return true
        default: return false
        }
    }
}
