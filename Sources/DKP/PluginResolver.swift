import OCI
import Registry
import Version

/// d8's choice of plugin versions (deckhouse-cli internal/mirror/plugins/resolver.go), on the
/// principle "nothing extra":
/// - a plugin whose newest readable contract names a bundled module (mandatory or anyOf) gets,
///   for each bundled version of that module, its newest version whose contract that module
///   version and the rest of the bundle satisfy (so two module versions may bring two);
/// - a selected version brings its mandatory plugin dependencies, recursively, reusing a version
///   already chosen where it satisfies the dependency's constraint;
/// - `--include-plugin` adds its pins and, per range given, the newest matching version; an
///   unmet include fails the pull, where the automatic choice skips with a note.
struct PluginResolver {
    let catalog: any PluginSource
    /// False with `--proxy-registry`: no tags lists, so only pins can be taken.
    let canList: Bool
    /// Module -> the versions the bundle carries.
    let bundle: [String: [Version]]
    let platformVersions: [Version]
    private(set) var selected: [String: [PluginVersion]] = [:]
    private(set) var notes: [String] = []
    /// Dependencies are chosen deeper than this only in a cycle d8 would also refuse.
    private static let maxDepth = 16
    /// d8's own commands: a plugin dependency of that name is met by d8 itself, never pulled
    /// (deckhouse-cli internal/mirror/cmd/pull: pluginBuiltinCommands).
    static let builtinCommands: Set<String> = ["delivery-kit", "package"]

    init(catalog: any PluginSource, canList: Bool, bundle: [String: [Version]], platformVersions: [Version]) {
        self.catalog = catalog
        self.canList = canList
        self.bundle = bundle
        self.platformVersions = platformVersions
    }

    /// Versions chosen while one candidate is weighed, kept only if all of it resolves.
    private typealias Pending = [(name: String, version: PluginVersion)]

    // MARK: The automatic choice

    mutating func selectForModules(pluginNames: [String]) async throws {
        for name in pluginNames where Reference.problem(repository: name) == nil {
            let versions: [PluginVersion]
            do {
                versions = try await catalog.versions(name)
            } catch let error as RegistryError where error.meansUnavailable {
                continue
            }
            guard let top = try await newestReadableContract(name, versions) else {
                if !versions.isEmpty { notes.append("plugin \(name) skipped: no readable contract in any published version") }
                continue
            }
            let triggers = Set(top.integratedModules.map(\.name)).filter { bundle[$0]?.isEmpty == false }.sorted()
            var failures: [String] = []
            for module in triggers {
                for moduleVersion in bundle[module] ?? [] {
                    if let failure = try await selectFor(name, versions, module: module, at: moduleVersion) {
                        failures.append("for module \(module) \(moduleVersion.tag): \(failure)")
                    }
                }
            }
            guard !failures.isEmpty else { continue }
            let chosen = selected[name]?.isEmpty == false
            notes.append("plugin \(name)\(chosen ? "" : " skipped"): \(failures.joined(separator: "; "))")
        }
    }

    private func newestReadableContract(_ name: String, _ versions: [PluginVersion]) async throws -> PluginContract? {
        for version in versions {
            if let contract = try await readableContract(name, version.tag) { return contract }
        }
        return nil
    }

    /// Picks the newest version of the plugin that fits one bundled module version; the reason
    /// the newest candidate was passed over when none fits.
    private mutating func selectFor(_ name: String, _ versions: [PluginVersion], module: String, at moduleVersion: Version) async throws -> String? {
        var firstReject: String?
        for candidate in versions {
            guard let contract = try await readableContract(name, candidate.tag) else {
                firstReject = firstReject ?? "\(candidate.tag): broken published contract"
                continue
            }
            if let why = pairingProblem(contract, module: module, at: moduleVersion) {
                firstReject = firstReject ?? "\(candidate.tag): \(why)"
                continue
            }
            if selected[name]?.contains(candidate) == true { return nil }
            var pending: Pending = []
            var visited: Set<String> = [name]
            if let why = try await resolveDependencies(of: contract, into: &pending, visited: &visited,
                                                       path: ["\(name)@\(candidate.tag)"], enforceBundle: true) {
                firstReject = firstReject ?? "\(candidate.tag): \(why)"
                continue
            }
            commit(name, candidate)
            for (dependency, version) in pending { commit(dependency, version) }
            return nil
        }
        return firstReject ?? "no published versions"
    }

    // MARK: --include-plugin

    mutating func selectIncluded(_ includes: [String: VersionConstraint?]) async throws {
        // Every pin is in before any dependency is chosen, so a pinned dependency is reused.
        var pinned: [(name: String, version: PluginVersion, contract: PluginContract)] = []
        for (name, constraint) in includes.sorted(by: { $0.key < $1.key }) {
            for pin in constraint?.pins ?? [] {
                let contract: PluginContract
                do {
                    contract = try await catalog.contract(name, tag: pin.tag)
                } catch RegistryError.notFound {
                    throw DKPError.notFound("--include-plugin \(name)@=\(pin.tag): \(catalog.displayName(of: name)):\(pin.tag) does not exist")
                } catch let PluginSourceError.brokenContract(detail) {
                    throw DKPError.invalidSource("--include-plugin \(name)@=\(pin.tag): \(detail); the cluster could not check its requirements")
                }
                // A custom build tag (`=bobV1`) has no semver: it sorts below every version.
                let version = PluginVersion(tag: pin.tag, version: pin.version ?? Version(major: 0, minor: 0, patch: 0))
                commit(name, version)
                pinned.append((name, version, contract))
            }
        }
        for pin in pinned {
            var pending: Pending = []
            var visited: Set<String> = [pin.name]
            if let why = try await resolveDependencies(of: pin.contract, into: &pending, visited: &visited,
                                                       path: ["\(pin.name)@\(pin.version.tag)"], enforceBundle: false) {
                throw DKPError.notFound("--include-plugin \(pin.name)@=\(pin.version.tag): unresolved dependencies: \(why)")
            }
            for (dependency, version) in pending { commit(dependency, version) }
            warnIfBundleLacks(pin.contract, "plugin \(pin.name)@\(pin.version.tag) (explicitly included)")
        }
        for (name, constraint) in includes.sorted(by: { $0.key < $1.key }) {
            // A bare name is its newest version; only pins means nothing more.
            let ranges: [VersionConstraint?] = constraint.map { $0.ranges.map(Optional.some) } ?? [nil]
            guard !ranges.isEmpty else { continue }
            guard canList else {
                throw DKPError.invalidInput("--include-plugin \(name): with --proxy-registry the versions cannot be listed; pin one: \(name)@=vX.Y.Z")
            }
            let versions: [PluginVersion]
            do {
                versions = try await catalog.versions(name)
            } catch RegistryError.notFound {
                throw DKPError.notFound("--include-plugin \(name): the plugin is not published in \(catalog.displayName(of: name))")
            }
            for range in ranges { try await selectNewest(name, versions, matching: range) }
        }
    }

    /// The newest version `range` takes whose dependencies resolve (its module needs are the
    /// cluster's business then: a note).
    private mutating func selectNewest(_ name: String, _ versions: [PluginVersion], matching range: VersionConstraint?) async throws {
        var rejections: [String] = []
        for candidate in versions where range?.matches(candidate.version) ?? true {
            guard let contract = try await readableContract(name, candidate.tag) else {
                rejections.append("\(candidate.tag): broken published contract")
                continue
            }
            var pending: Pending = []
            var visited: Set<String> = [name]
            if let why = try await resolveDependencies(of: contract, into: &pending, visited: &visited,
                                                       path: ["\(name)@\(candidate.tag)"], enforceBundle: false) {
                rejections.append("\(candidate.tag): \(why)")
                continue
            }
            commit(name, candidate)
            for (dependency, version) in pending { commit(dependency, version) }
            warnIfBundleLacks(contract, "plugin \(name)@\(candidate.tag) (explicitly included)")
            return
        }
        let asked = range.map { "@\($0)" } ?? ""
        guard !rejections.isEmpty else {
            throw DKPError.notFound("--include-plugin \(name)\(asked): no published stable version matches; "
                                    + "versions: \(versions.prefix(5).map(\.tag).joined(separator: ", ")); pin a pre-release with \(name)@=vX.Y.Z-rc.N")
        }
        throw DKPError.notFound("--include-plugin \(name)\(asked): no suitable version: \(rejections.joined(separator: "; "))")
    }

    // MARK: Dependencies

    /// Chooses the contract's mandatory plugins into `pending`; the reason the contract cannot be
    /// met, or nil. `enforceBundle`: a dependency whose own needs the bundle lacks is passed over
    /// (the automatic choice) or taken with a note (an explicit include: the user's call).
    private mutating func resolveDependencies(of contract: PluginContract, into pending: inout Pending, visited: inout Set<String>,
                                              path: [String], enforceBundle: Bool) async throws -> String? {
        guard path.count <= Self.maxDepth + 1 else {
            return "dependency chain deeper than \(Self.maxDepth): \(path.joined(separator: " -> "))"
        }
        for requirement in contract.mandatoryPlugins where !Self.builtinCommands.contains(requirement.name) {
            if let problem = Reference.problem(repository: requirement.name) {
                return "dependency \"\(requirement.name)\" of \(path.last ?? ""): \(problem)"
            }
            if visited.contains(requirement.name) {
                return "dependency cycle: \((path + [requirement.name]).joined(separator: " -> "))"
            }
            let text = requirement.constraint ?? ""
            var constraint: VersionConstraint?
            if !text.isEmpty {
                guard let parsed = try? VersionConstraint(parsing: text, dialect: .semver) else {
                    return "invalid constraint \"\(text)\" for dependency \"\(requirement.name)\""
                }
                constraint = parsed
            }
            let chosen = (selected[requirement.name] ?? []) + pending.filter { $0.name == requirement.name }.map(\.version)
            if chosen.contains(where: { constraint?.matches($0.version) ?? true }) { continue }
            if let reject = try await resolveFresh(requirement, constraint, into: &pending, visited: &visited,
                                                   path: path, enforceBundle: enforceBundle) {
                return reject
            }
        }
        return nil
    }

    /// The newest version of one dependency that satisfies its constraint and whose own
    /// dependencies resolve.
    private mutating func resolveFresh(_ requirement: PluginContract.Requirement, _ constraint: VersionConstraint?, into pending: inout Pending,
                                       visited: inout Set<String>, path: [String], enforceBundle: Bool) async throws -> String? {
        let name = requirement.name, asked = "dependency \"\(name)\" (constraint \"\(requirement.constraint ?? "")\")"
        guard canList else {
            return "\(asked): no pinned version satisfies it; with --proxy-registry pin it: --include-plugin \(name)@=<version>"
        }
        let versions: [PluginVersion]
        do {
            versions = try await catalog.versions(name)
        } catch let error as RegistryError where error.meansUnavailable {
            return "dependency \"\(name)\" is not published in the plugins catalog"
        }
        var firstReject: String?
        for version in versions where constraint?.matches(version.version) ?? true {
            guard let contract = try await readableContract(name, version.tag) else {
                firstReject = firstReject ?? "\(version.tag): broken published contract"
                continue
            }
            if let why = bundleProblem(contract, pairedModule: nil) {
                if enforceBundle {
                    firstReject = firstReject ?? "\(version.tag): \(why)"
                    continue
                }
                notes.append("dependency \(name)@\(version.tag) of an explicitly included plugin: \(why); the target cluster must provide it")
            }
            let mark = pending.count
            visited.insert(name)
            let why = try await resolveDependencies(of: contract, into: &pending, visited: &visited,
                                                    path: path + ["\(name)@\(version.tag)"], enforceBundle: enforceBundle)
            visited.remove(name)
            if let why {
                pending.removeLast(pending.count - mark)
                firstReject = firstReject ?? "\(version.tag): \(why)"
                continue
            }
            pending.append((name, version))
            return nil
        }
        return "\(asked): \(firstReject ?? "no published version satisfies it")"
    }

    // MARK: Conditional requirements

    /// d8's advisories: a selected version's conditional needs never gate the choice (the module
    /// or plugin may not be enabled on the cluster), but one the bundle carries at no satisfying
    /// version is a co-installation hazard the operator is told of.
    mutating func noteConditionalConflicts() async throws {
        for (name, versions) in selected.sorted(by: { $0.key < $1.key }) {
            for version in versions.sorted(by: { $0.version > $1.version }) {
                guard let contract = try await readableContract(name, version.tag) else { continue }
                for requirement in contract.conditionalModules {
                    guard let bundled = bundle[requirement.name], !bundled.isEmpty, let text = requirement.constraint, !text.isEmpty,
                          !Self.anySatisfies(bundled, text) else { continue }
                    notes.append("plugin \(name)@\(version.tag): module \"\(requirement.name)\" is in the bundle, "
                                 + "but no bundled version satisfies its conditional constraint \"\(text)\"")
                }
                for requirement in contract.conditionalPlugins {
                    guard let others = selected[requirement.name], !others.isEmpty, let text = requirement.constraint, !text.isEmpty,
                          !Self.anySatisfies(others.map(\.version), text) else { continue }
                    notes.append("plugins \(name)@\(version.tag) and \(requirement.name) cannot be installed together: "
                                 + "no bundled version of \"\(requirement.name)\" satisfies the conditional constraint \"\(text)\"")
                }
            }
        }
    }

    // MARK: What the bundle satisfies

    /// Whether a contract fits one bundled module version: it names the module, the version
    /// meets its constraint, and the bundle meets the rest. nil when it fits.
    private func pairingProblem(_ contract: PluginContract, module: String, at version: Version) -> String? {
        guard let requirement = contract.integratedModules.first(where: { $0.name == module }) else {
            return "does not integrate module \"\(module)\""
        }
        if let text = requirement.constraint, !text.isEmpty {
            guard let constraint = try? VersionConstraint(parsing: text, dialect: .semver) else {
                return "invalid constraint \"\(text)\" for module \"\(module)\""
            }
            if !constraint.matches(Self.normalized(version)) { return "requires module \"\(module)\" \(text)" }
        }
        return bundleProblem(contract, pairedModule: module)
    }

    /// The contract's needs a bundle can answer: mandatory modules, one member of each anyOf
    /// group, the Deckhouse version. nil when the bundle meets them.
    private func bundleProblem(_ contract: PluginContract, pairedModule: String?) -> String? {
        for requirement in contract.mandatoryModules where requirement.name != pairedModule {
            guard let versions = bundle[requirement.name], !versions.isEmpty else {
                return "requires module \"\(requirement.name)\" which is not in the bundle"
            }
            if !Self.anySatisfies(versions, requirement.constraint) {
                return "requires module \"\(requirement.name)\" \(requirement.constraint ?? ""), bundle has \(versions.map(\.tag).joined(separator: ", "))"
            }
        }
        for group in contract.anyOfGroups {
            let met = (group.modules ?? []).contains { member in
                Self.anySatisfies(bundle[member.name] ?? [], member.constraint) && bundle[member.name]?.isEmpty == false
            }
            if !met { return "no module of group \"\(group.name ?? "")\" is in the bundle at a satisfying version" }
        }
        if let text = contract.requirements?.deckhouse?.constraint, !text.isEmpty, !platformVersions.isEmpty,
           !Self.anySatisfies(platformVersions, text) {
            return "requires Deckhouse \"\(text)\", bundle platform versions: \(platformVersions.map(\.tag).joined(separator: ", "))"
        }
        return nil
    }

    private mutating func warnIfBundleLacks(_ contract: PluginContract, _ what: String) {
        if let why = bundleProblem(contract, pairedModule: nil) {
            notes.append("\(what): \(why); the target cluster must provide it")
        }
    }

    private mutating func commit(_ name: String, _ version: PluginVersion) {
        if selected[name]?.contains(version) != true { selected[name, default: []].append(version) }
    }

    /// The contract, nil when it cannot be decoded (d8 passes such a version over).
    private func readableContract(_ name: String, _ tag: String) async throws -> PluginContract? {
        do {
            return try await catalog.contract(name, tag: tag)
        } catch PluginSourceError.brokenContract {
            return nil
        }
    }

    /// An empty constraint is met by anything, one that does not parse by nothing.
    private static func anySatisfies(_ versions: [Version], _ text: String?) -> Bool {
        guard let text, !text.isEmpty else { return true }
        guard let constraint = try? VersionConstraint(parsing: text, dialect: .semver) else { return false }
        return versions.contains { constraint.matches(normalized($0)) }
    }

    /// As d8's install checks it: a CI or build marker (`v1.77.0-main`) is dropped, a genuine
    /// pre-release (`-rc.1`) kept.
    static func normalized(_ version: Version) -> Version {
        isGenuinePrerelease(version) ? version : Version(major: version.major, minor: version.minor, patch: version.patch)
    }

    static func isGenuinePrerelease(_ version: Version) -> Bool {
        guard let first = version.prereleaseIdentifiers.first?.lowercased() else { return false }
        return ["alpha", "beta", "rc", "pre", "preview", "snapshot"].contains { first.hasPrefix($0) }
    }
}
