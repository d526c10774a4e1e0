import BoundedPool
import Foundation
import OCI
import Registry
import Version

/// The parts of a plugin's `contract` annotation (base64 JSON) that selection reads.
struct PluginContract: Decodable, Sendable {
    struct ModuleRequirement: Decodable, Sendable {
        var name: String
        var constraint: String?
    }
    struct ModuleGroup: Decodable, Sendable {
        var modules: [ModuleRequirement]?
    }
    struct Modules: Decodable, Sendable {
        var mandatory: [ModuleRequirement]?
        var anyOf: [ModuleGroup]?
    }
    struct Requirements: Decodable, Sendable {
        var modules: Modules?
    }
    var requirements: Requirements?

    /// Modules whose presence makes d8 add the plugin: mandatory ones and members of anyOf groups.
    var triggeringModules: [ModuleRequirement] {
        (requirements?.modules?.mandatory ?? []) + (requirements?.modules?.anyOf ?? []).flatMap { $0.modules ?? [] }
    }
}

extension EditionDiscovery {
    /// Plugins (d8-current.md §4): the ones `--include-plugin` names (bare: the newest stable
    /// version), and every plugin whose contract requires a module the bundle carries (the newest
    /// version whose constraint a bundled version of that module satisfies).
    func discoverPlugins(_ selection: PullSelection, into result: inout DiscoveredEdition) async throws {
        let catalog = source.registryRoot.appending(path: "deckhouse-cli/plugins").repository
        let automatic = selection.modules && !result.modules.isEmpty && !selection.proxyRegistry
        guard automatic || !selection.includePlugins.isEmpty else { return }
        var names: [String]
        if selection.proxyRegistry {
            names = selection.includePlugins.keys.sorted()
        } else {
            do {
                names = try await client.tags(repository: catalog).sorted()
            } catch RegistryError.notFound {
                if !selection.includePlugins.isEmpty {
                    throw DKPError.notFound("\(source.host)/\(catalog) does not exist: no plugin can be pulled")
                }
                return
            }
        }
        let missing = selection.includePlugins.keys.filter { !names.contains($0) }.sorted()
        if !missing.isEmpty {
            throw DKPError.notFound("plugin(s) \(missing.joined(separator: ", ")) not found in \(source.host)/\(catalog); available: \(names.joined(separator: ", "))")
        }
        if !automatic { names = names.filter { selection.includePlugins.keys.contains($0) } }
        let bundled = result.modules.mapValues { $0.compactMap(Version.init(tag:)) }
        let chosen = try await concurrentMap(names, limit: concurrency) { name -> (String, String?) in
            let repository = "\(catalog)/\(name)"
            if let explicit = selection.includePlugins[name] {
                return (name, try await self.explicitPluginVersion(name, repository: repository, constraint: explicit))
            }
            return (name, try await self.automaticPluginVersion(repository: repository, bundled: bundled))
        }
        for case let (name, version?) in chosen {
            let repository = "\(catalog)/\(name)"
            result.plugins[name] = [version]
            result.images.append(BundleImage(tar: "plugin-\(name).tar", layout: "deckhouse-cli/plugins/\(name)", repository: repository,
                                             reference: version, shortTag: version, sourceHost: source.host))
        }
    }

    /// Semver tags of a plugin repository, newest first, pre-releases left out.
    private func stablePluginVersions(repository: String) async throws -> [(tag: String, version: Version)] {
        try await client.tags(repository: repository)
            .compactMap { tag in tag.hasPrefix("v") ? Version(tolerant: tag).map { (tag, $0) } : nil }
            .filter { $0.1.prereleaseIdentifiers.isEmpty }
            .sorted { $0.1 > $1.1 }
    }

    private func explicitPluginVersion(_ name: String, repository: String, constraint: VersionConstraint?) async throws -> String {
        // `NAME@=TAG` is that tag, a pre-release or a custom build too, when the source has it.
        if let pinned = constraint?.pinnedTag {
            guard try await client.manifestDescriptor(repository: repository, reference: pinned) != nil else {
                throw DKPError.notFound("\(source.host)/\(repository):\(pinned) does not exist (--include-plugin \(name)@\(constraint?.description ?? ""))")
            }
            return pinned
        }
        let versions = try await stablePluginVersions(repository: repository)
        guard let match = versions.first(where: { constraint?.matches($0.version) ?? true }) else {
            throw DKPError.notFound("plugin \(name) has no stable version\(constraint.map { " matching \($0)" } ?? "") in \(source.host)/\(repository); "
                                    + "versions: \(versions.prefix(5).map(\.tag).joined(separator: ", "))")
        }
        return match.tag
    }

    /// The newest version whose contract names a bundled module with a constraint that one of the
    /// bundled versions satisfies; nil when the plugin's newest contract names no bundled module.
    private func automaticPluginVersion(repository: String, bundled: [String: [Version]]) async throws -> String? {
        let versions = try await stablePluginVersions(repository: repository)
        guard let newest = versions.first, let top = try await contract(repository: repository, tag: newest.tag),
              top.triggeringModules.contains(where: { bundled[$0.name]?.isEmpty == false }) else { return nil }
        for candidate in versions {
            guard let contract = try await contract(repository: repository, tag: candidate.tag) else { continue }
            let satisfied = contract.triggeringModules.contains { requirement in
                guard let have = bundled[requirement.name], !have.isEmpty else { return false }
                guard let text = requirement.constraint, !text.isEmpty,
                      let constraint = try? VersionConstraint(parsing: text, dialect: .semver) else { return true }
                return have.contains { constraint.matches($0) }
            }
            if satisfied { return candidate.tag }
        }
        return nil
    }

    /// The `contract` annotation of the image or index (else of its first child), decoded; nil when
    /// there is none or it is not readable.
    private func contract(repository: String, tag: String) async throws -> PluginContract? {
        let manifest = try await client.manifest(repository: repository, reference: tag)
        var encoded: String?
        switch manifest.document {
        case let .image(image):
            encoded = image.annotations?["contract"]
        case let .index(index):
            encoded = index.annotations?["contract"]
            if encoded == nil, let first = index.manifests.first,
               case let .image(child) = try await client.manifest(repository: repository, reference: first.digest.string).document {
                encoded = child.annotations?["contract"]
            }
        }
        guard let encoded, let json = Data(base64Encoded: encoded) else { return nil }
        return try? JSONDecoder().decode(PluginContract.self, from: json)
    }
}
