@testable import DKP
import Foundation
import Registry
import Testing
import Version

/// d8's choice of plugin versions (deckhouse-cli internal/mirror/plugins/resolver.go) on an
/// in-memory catalog; the end-to-end pull of the seeded edition is in PullFidelityTests.
@Suite struct PluginResolverTests {
    /// name -> tag -> contract JSON ("" for none, "!" for one that cannot be decoded).
    struct Catalog: PluginSource {
        var plugins: [String: [String: String]]

        func versions(_ name: String) async throws -> [PluginVersion] {
            guard let tags = plugins[name] else { throw RegistryError.notFound(what: name, detail: "no such repository") }
            return tags.keys.compactMap { tag in Version(tolerant: tag).map { PluginVersion(tag: tag, version: $0) } }
                .filter { !PluginResolver.isGenuinePrerelease($0.version) }
                .sorted { $0.version > $1.version }
        }

        func contract(_ name: String, tag: String) async throws -> PluginContract {
            guard let json = plugins[name]?[tag] else { throw RegistryError.notFound(what: "\(name):\(tag)", detail: "no such tag") }
            if json == "!" { throw PluginSourceError.brokenContract("\(name) \(tag)") }
            return json.isEmpty ? PluginContract() : try JSONDecoder().decode(PluginContract.self, from: Data(json.utf8))
        }

        func displayName(of name: String) -> String { "source/\(name)" }
    }

    /// A contract: mandatory modules, anyOf groups, mandatory plugins, a Deckhouse constraint.
    static func needs(_ modules: [String: String] = [:], anyOf: [String: [String: String]] = [:],
                      plugins: [String: String] = [:], deckhouse: String? = nil) -> String {
        func list(_ requirements: [String: String]) -> String {
            requirements.sorted { $0.key < $1.key }.map { "{\"name\":\"\($0.key)\",\"constraint\":\"\($0.value)\"}" }.joined(separator: ",")
        }
        let groups = anyOf.sorted { $0.key < $1.key }.map { "{\"name\":\"\($0.key)\",\"modules\":[\(list($0.value))]}" }.joined(separator: ",")
        let deckhouseJSON = deckhouse.map { ",\"deckhouse\":{\"constraint\":\"\($0)\"}" } ?? ""
        return "{\"requirements\":{\"modules\":{\"mandatory\":[\(list(modules))],\"anyOf\":[\(groups)]},"
            + "\"plugins\":{\"mandatory\":[\(list(plugins))]}\(deckhouseJSON)}}"
    }

    private func v(_ text: String) -> Version { Version(tolerant: text)! }

    private func resolver(_ plugins: [String: [String: String]], canList: Bool = true) -> PluginResolver {
        PluginResolver(catalog: Catalog(plugins: plugins), canList: canList,
                       bundle: ["console": [v("1.1.5"), v("1.2.0")], "commander": [v("0.9.1")]],
                       platformVersions: [v("1.69.3"), v("1.70.1")])
    }

    private func tags(_ resolver: PluginResolver) -> [String: [String]] {
        resolver.selected.mapValues { $0.map(\.tag).sorted() }
    }

    @Test func eachBundledModuleVersionGetsTheNewestPluginVersionItSatisfies() async throws {
        var resolver = resolver([
            "tools": ["v1.0.0": Self.needs(["console": "<1.0.0"]), "v1.1.0": Self.needs(["console": ">=1.1.0"]),
                      "v1.1.3": Self.needs(["console": ">=1.2.0"], plugins: ["diag": ">=0.2.0"]), "v1.2.0": "!"],
            "diag": ["v0.1.0": "", "v0.2.0": "", "v0.3.0-rc.1": ""],
            // Relevance is judged by the newest contract: older ones' modules do not bring it back.
            "retired": ["v1.0.0": Self.needs(["console": ">=1.0"]), "v2.0.0": Self.needs(["gone": ">=1.0"])],
        ])
        try await resolver.selectForModules(pluginNames: ["diag", "retired", "tools"])
        #expect(tags(resolver) == ["tools": ["v1.1.0", "v1.1.3"], "diag": ["v0.2.0"]])
        #expect(resolver.notes.isEmpty, "\(resolver.notes)")
    }

    @Test func theRestOfTheContractMustBeMetByTheBundle() async throws {
        var resolver = resolver([
            "grouped": [
                "v2.0.0": Self.needs(["console": ">=1.0"], deckhouse: ">=1.71"),
                "v1.5.0": Self.needs(["console": ">=1.0"], anyOf: ["storage": ["ceph": ">=1.0", "nfs": ">=1.0"]]),
                "v1.4.0": Self.needs(["console": ">=1.0", "stronghold": ">=1.0"]),
                "v1.0.0": Self.needs(["console": ">=1.0"], anyOf: ["control": ["commander": ">=0.9", "nfs": ">=1.0"]], deckhouse: ">=1.69"),
            ],
            "a": ["v1.0.0": Self.needs(["console": ">=1.0"], plugins: ["b": ""])],
            "b": ["v1.0.0": Self.needs(plugins: ["a": ""])],
        ])
        try await resolver.selectForModules(pluginNames: ["a", "b", "grouped"])
        #expect(tags(resolver) == ["grouped": ["v1.0.0"]])
        #expect(resolver.notes.contains { $0.hasPrefix("plugin a skipped: for module console v1.1.5: v1.0.0: dependency \"b\"")
                    && $0.contains("dependency cycle: a@v1.0.0 -> b@v1.0.0 -> a") },
                "\(resolver.notes)")
    }

    @Test func includedPinsAndRangesBringTheirDependencies() async throws {
        let plugins = [
            "tools": ["v1.0.0": Self.needs(["console": ">=1.0"], plugins: ["diag": ">=0.1.0"]), "v1.1.0": Self.needs(["absent": ">=1.0"])],
            "diag": ["v0.1.0": "", "v0.2.0": ""],
        ]
        // A pinned dependency is reused where it satisfies the constraint, not chosen afresh.
        var pinned = resolver(plugins)
        try await pinned.selectIncluded(["tools": try VersionConstraint(parsing: "=v1.0.0"), "diag": try VersionConstraint(parsing: "=v0.1.0")])
        #expect(tags(pinned) == ["tools": ["v1.0.0"], "diag": ["v0.1.0"]])
        // A range takes its newest version even if the bundle lacks its modules (with a note).
        var ranged = resolver(plugins)
        try await ranged.selectIncluded(["tools": nil])
        #expect(tags(ranged) == ["tools": ["v1.1.0"]])
        #expect(ranged.notes == ["plugin tools@v1.1.0 (explicitly included): requires module \"absent\" which is not in the bundle; the target cluster must provide it"])
        var none = resolver(plugins)
        await #expect(throws: DKPError.self) { try await none.selectIncluded(["tools": try VersionConstraint(parsing: ">=3.0")]) }
        // Without tags lists only pins can be taken, and their dependencies must be pinned too.
        var proxy = resolver(plugins, canList: false)
        do {
            try await proxy.selectIncluded(["tools": try VersionConstraint(parsing: "=v1.0.0")])
            Issue.record("an unpinned dependency cannot be found without tags lists")
        } catch {
            #expect("\(error)".contains("with --proxy-registry pin it: --include-plugin diag@=<version>"), "\(error)")
        }
        var proxyPinned = resolver(plugins, canList: false)
        try await proxyPinned.selectIncluded(["tools": try VersionConstraint(parsing: "=v1.0.0"), "diag": try VersionConstraint(parsing: "=v0.2.0")])
        #expect(tags(proxyPinned) == ["tools": ["v1.0.0"], "diag": ["v0.2.0"]])
    }

    /// A dependency on one of d8's own commands is met by d8; conditional needs never gate the
    /// choice, but one the bundle cannot meet is a note (d8's advisories).
    @Test func builtinsAreMetAndConditionalNeedsAreNotes() async throws {
        let tools = #"{"requirements":{"modules":{"mandatory":[{"name":"console","constraint":">=1.1.0"}],"#
            + #""conditional":[{"name":"commander","constraint":">=1.0"},{"name":"stronghold","constraint":">=1.0"}]},"#
            + #""plugins":{"mandatory":[{"name":"package","constraint":">=1.0"},{"name":"diag"}],"#
            + #""conditional":[{"name":"diag","constraint":"<0.2.0"},{"name":"absent","constraint":">=9"}]}}}"#
        var resolver = resolver(["tools": ["v1.1.0": tools], "diag": ["v0.2.0": ""]])
        try await resolver.selectForModules(pluginNames: ["tools"])
        try await resolver.noteConditionalConflicts()
        #expect(tags(resolver) == ["tools": ["v1.1.0"], "diag": ["v0.2.0"]], "package is d8's own command: nothing to pull")
        #expect(resolver.notes == [
            "plugin tools@v1.1.0: module \"commander\" is in the bundle, but no bundled version satisfies its conditional constraint \">=1.0\"",
            "plugins tools@v1.1.0 and diag cannot be installed together: no bundled version of \"diag\" satisfies the conditional constraint \"<0.2.0\"",
        ], "\(resolver.notes)")
    }

    /// The annotation as d8 reads it: base64 of JSON, or of YAML (its YAMLToJSON pass-through).
    @Test func aContractAnnotationIsBase64JSONOrYAML() throws {
        func encoded(_ text: String) -> String { Data(text.utf8).base64EncodedString() }
        let json = try #require(PluginContract(annotation: encoded(Self.needs(["console": ">=1.2.0"], plugins: ["diag": ">=0.2.0"]))))
        #expect(json.mandatoryModules.map(\.name) == ["console"] && json.mandatoryPlugins.first?.constraint == ">=0.2.0")
        let yaml = try #require(PluginContract(annotation: encoded("""
            name: tools
            requirements:
              modules:
                mandatory:
                  - name: console
                    constraint: ">=1.2.0"
              deckhouse:
                constraint: ">= 1.69"
            """)))
        #expect(yaml.mandatoryModules.first?.constraint == ">=1.2.0" && yaml.requirements?.deckhouse?.constraint == ">= 1.69")
        #expect(PluginContract(annotation: "not base64!") == nil)
        #expect(PluginContract(annotation: encoded("requirements: [unclosed")) == nil)
    }
}
