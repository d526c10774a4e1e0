import Foundation
import OCI
import Registry
import Testing
import TestSupport

/// Every tag in a bundle is the source's own manifest under that tag (d8-current.md §1), and
/// what current d8 pulls beyond the platform and modules is there: lts, suspended channels,
/// packages, VEX attestations, plugins, the flags runbooks pass. The synthetic edition serves
/// channel images that differ from the version images, as the real registry does.
@Suite struct PullFidelityTests {
    struct Entry {
        var tar: String
        var layout: String
        var descriptor: Descriptor
        var shortTag: String { descriptor.annotations?["io.deckhouse.image.short_tag"] ?? "" }
        var refName: String { descriptor.annotations?["org.opencontainers.image.ref.name"] ?? "" }
    }

    /// Every index.json descriptor of every tar in `directory`.
    static func entries(_ directory: URL) async throws -> [Entry] {
        var result: [Entry] = []
        for tar in try FileManager.default.contentsOfDirectory(atPath: directory.path).filter({ $0.hasSuffix(".tar") }).sorted() {
            let folder = try await PullTests.extract([directory.appendingPathComponent(tar)])
            let enumerator = FileManager.default.enumerator(atPath: folder.path)
            while let path = enumerator?.nextObject() as? String {
                guard (path as NSString).lastPathComponent == "index.json" else { continue }
                let layout = (path as NSString).deletingLastPathComponent
                for descriptor in try PullTests.index(folder, layout).manifests {
                    result.append(Entry(tar: tar, layout: layout, descriptor: descriptor))
                }
            }
        }
        return result
    }

    /// The digest the source registry serves for a full reference (`host/repo:tag` or `@digest`).
    static func sourceDigest(_ client: RegistryClient, _ refName: String) async throws -> Digest? {
        let reference = try Reference(parsing: refName)
        return try await client.manifestDescriptor(repository: reference.repository,
                                                   reference: reference.digest?.string ?? reference.tag ?? "latest")?.digest
    }

    /// Runs `body` with a client of the source registry, shut down however `body` ends.
    static func withSource<T: Sendable>(_ registry: TestRegistry, _ body: (RegistryClient) async throws -> T) async throws -> T {
        var configuration = RegistryConfiguration()
        configuration.insecure = true
        return try await RegistryClient.with(host: registry.host, configuration: configuration, body)
    }

    static func tags(_ entries: [Entry], tar: String, layout: String) -> Set<String> {
        Set(entries.filter { $0.tar == tar && $0.layout == layout }.map(\.shortTag))
    }

    @Test func rangePullCarriesEveryTagAsTheSourceServesIt() async throws {
        let (registry, seeded) = try await PullTests.seededEdition()
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        let output = try await PullTests.pull(registry, into: directory, [])
        #expect(output.status == 0, "\(output.stderrString)")
        let entries = try await Self.entries(directory)
        try await Self.withSource(registry) { client in
            let channels = ["alpha": "v1.70.1", "beta": "v1.69.3", "early-access": "v1.69.3", "stable": "v1.68.4", "rock-solid": "v1.67.5"]

            var checked = 0
            for entry in entries {
                if entry.layout == "install", let version = channels[entry.shortTag] {
                    // install:<channel> is made from the bundle's own install:<version> (d8 0.33.17).
                    let expected = try await Self.sourceDigest(client, "\(registry.host)/deckhouse/ee/install:\(version)")
                    #expect(entry.descriptor.digest == expected, "install:\(entry.shortTag)")
                    continue
                }
                let source = try await Self.sourceDigest(client, entry.refName)
                #expect(entry.descriptor.digest == source, "\(entry.tar) \(entry.layout) \(entry.shortTag): not the source's \(entry.refName)")
                #expect(entry.refName.hasSuffix(":" + entry.shortTag) || entry.refName.hasSuffix("@sha256:" + entry.shortTag), "\(entry.refName)")
                checked += 1
            }
            #expect(checked > 80)

            // The channel images are the source's channel tags, not the versions they name.
            let releaseStable = entries.first { $0.layout == "release-channel" && $0.shortTag == "stable" }
            let versionImage = entries.first { $0.layout == "release-channel" && $0.shortTag == "v1.68.4" }
            #expect(releaseStable != nil && versionImage != nil && releaseStable?.descriptor.digest != versionImage?.descriptor.digest)
            #expect(Self.tags(entries, tar: "platform.tar", layout: "install").isSuperset(of: Set(channels.keys)))
            #expect(Self.tags(entries, tar: "platform.tar", layout: "").isDisjoint(with: Set(channels.keys)))

            // Packages: the package's own tar, and package-versions.tar with every tag of its version repository.
            #expect(Self.tags(entries, tar: "package-nginx-tools.tar", layout: "packages/nginx-tools").isSuperset(of: ["v0.4.1", "v0.5.0"]))
            #expect(Self.tags(entries, tar: "package-nginx-tools.tar", layout: "packages/nginx-tools/version")
                    == ["v0.4.1", "v0.5.0", "alpha", "beta", "early-access", "stable", "rock-solid"])
            // extra_images.json gives this tag as a JSON number, {"helper": 2}.
            #expect(Self.tags(entries, tar: "package-nginx-tools.tar", layout: "packages/nginx-tools/extra/helper") == ["2"])
            #expect(Self.tags(entries, tar: "package-versions.tar", layout: "packages/nginx-tools/version")
                    == ["v0.4.1", "v0.5.0", "alpha", "beta", "early-access", "stable", "rock-solid"])
            for digest in seeded.packageDigests["nginx-tools"]?["v0.5.0"] ?? [] {
                #expect(entries.contains { $0.tar == "package-nginx-tools.tar" && $0.descriptor.digest == digest })
            }

            // VEX: every seeded attestation of a pulled image is in the bundle, in its image's main layout.
            let attestations = entries.filter { $0.shortTag.hasSuffix(".att") }
            let pulledVersions = ["v1.67.5", "v1.68.4", "v1.69.3", "v1.70.1"]
            let platformExpected = pulledVersions.flatMap { (seeded.platformDigests[$0] ?? []).dropFirst(2).map { "sha256-\($0.hex).att" } }
            #expect(Set(attestations.filter { $0.tar == "platform.tar" }.map(\.shortTag)) == Set(platformExpected))
            #expect(attestations.filter { $0.tar == "platform.tar" }.allSatisfy { $0.layout == "" })
            #expect(Self.tags(entries, tar: "module-console.tar", layout: "modules/console").isSuperset(of: ["v1.1.5.att", "v1.2.0.att"]))
            let summary = try JSONDecoder().decode(Summary.self, from: Data(output.stdout)).summary
            #expect(summary.vexImages == attestations.count)
            #expect(summary.vexImages < seeded.vexReferences.count, "attestations of versions not pulled stay out")

            // A plugin whose contract names console comes along on its own, as d8 pairs them: for each
            // bundled console version its newest version that version satisfies (v1.1.5 takes v1.1.0,
            // v1.2.0 takes v1.1.3), and the plugin v1.1.3 needs (diag >=0.2.0).
            #expect(Self.tags(entries, tar: "plugin-module-tools.tar", layout: "deckhouse-cli/plugins/module-tools") == ["v1.1.0", "v1.1.3"])
            #expect(Self.tags(entries, tar: "plugin-diag.tar", layout: "deckhouse-cli/plugins/diag") == ["v0.2.0"])
            #expect(summary.plugins == ["diag": ["v0.2.0"], "module-tools": ["v1.1.3", "v1.1.0"]])
            #expect(summary.packages == ["nginx-tools": ["v0.4.1", "v0.5.0"]])
            #expect(summary.platformVersions == pulledVersions)
            #expect(summary.securityDatabases.count == 4)
            #expect(output.stderrString.contains("summary:") == false, "--json puts the summary on stdout only")

            // deckhousereleases.yaml: one DeckhouseRelease per version, from release-channel:<version>.
            let releases = try String(contentsOf: directory.appendingPathComponent("deckhousereleases.yaml"), encoding: .utf8)
            #expect(releases.components(separatedBy: "kind: DeckhouseRelease").count - 1 == pulledVersions.count)
            #expect(releases.contains("name: v1.69.3"))
            #expect(releases.contains("changelogLink: https://github.com/deckhouse/deckhouse/releases/tag/v1.69.3"))
            #expect(releases.contains("approved: false"))
            #expect(releases.contains("- ingressNginx"))
            #expect(releases.contains("summary: Fix for v1.69.3."))
            #expect(releases.contains("k8s: '1.27'") || releases.contains("k8s: \"1.27\""))
        }
    }

    struct Summary: Decodable {
        struct Fields: Decodable {
            var platformVersions: [String]; var modules: [String: [String]]; var packages: [String: [String]]
            var plugins: [String: [String]]; var securityDatabases: [String]; var vexImages: Int; var bundleBytes: Int64
        }
        var summary: Fields
    }

    @Test func pinnedPullRetagsOnlyWhereD8Does() async throws {
        let (registry, _) = try await PullTests.seededEdition()
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        let output = try await PullTests.pull(registry, into: directory,
                                              ["--deckhouse-tag", "stable", "-i", "console@=v1.1.5", "-i", "commander@=v0.9.1+beta", "--skip-vex-images"])
        #expect(output.status == 0, "\(output.stderrString)")
        let entries = try await Self.entries(directory)
        try await Self.withSource(registry) { client in
            let host = registry.host
            // --deckhouse-tag stable: release-channel:stable of the source on the five channels.
            let stable = try await Self.sourceDigest(client, "\(host)/deckhouse/ee/release-channel:stable")
            for channel in ["alpha", "beta", "early-access", "stable", "rock-solid"] {
                let entry = entries.first { $0.layout == "release-channel" && $0.shortTag == channel }
                #expect(entry?.descriptor.digest == stable, "release-channel:\(channel)")
                let install = entries.first { $0.layout == "install" && $0.shortTag == channel }
                #expect(install?.descriptor.digest == (try await Self.sourceDigest(client, "\(host)/deckhouse/ee/install:v1.68.4")))
            }
            #expect(!entries.contains { $0.shortTag.hasSuffix(".att") }, "--skip-vex-images")
            #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("deckhousereleases.yaml").path),
                    "a pinned pull writes no deckhousereleases.yaml")
            // -i console@=v1.1.5: that version's release image on every channel, lts included.
            let consoleRelease = try await Self.sourceDigest(client, "\(host)/deckhouse/ee/modules/console/release:v1.1.5")
            let consoleChannels = entries.filter { $0.layout == "modules/console/release" }
            #expect(Set(consoleChannels.map(\.shortTag)) == ["v1.1.5", "alpha", "beta", "early-access", "stable", "rock-solid", "lts"])
            #expect(consoleChannels.allSatisfy { $0.descriptor.digest == consoleRelease })
            // -i commander@=v0.9.1+beta: onto beta only.
            let commander = entries.filter { $0.layout == "modules/commander/release" }
            #expect(Set(commander.map(\.shortTag)) == ["v0.9.1", "beta"])
        }
    }

    @Test func ltsOnlyEditionPullsItsLtsVersionAndSinceVersionWidensIt() async throws {
        let (registry, _) = try await PullTests.seededEdition {
            $0.channels = ["lts": "v1.69.3"]
            $0.modules = ["console": ["lts": "v1.1.5", "stable": "v1.2.0"]]
            $0.packages = ["nginx-tools": ["lts": "v0.4.1"]]
            $0.plugins = false
        }
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        let output = try await PullTests.pull(registry, into: directory, ["--no-security-db"])
        #expect(output.status == 0, "\(output.stderrString)")
        let entries = try await Self.entries(directory)
        #expect(Self.tags(entries, tar: "platform.tar", layout: "release-channel") == ["v1.69.3", "lts"])
        #expect(Self.tags(entries, tar: "module-console.tar", layout: "modules/console/release") == ["v1.1.5", "v1.2.0", "lts", "stable"])
        #expect(Self.tags(entries, tar: "package-nginx-tools.tar", layout: "packages/nginx-tools/version") == ["v0.4.1", "lts"])
        try await Self.withSource(registry) { client in
            let lts = try await Self.sourceDigest(client, "\(registry.host)/deckhouse/ee/release-channel:lts")
            #expect(entries.first { $0.layout == "release-channel" && $0.shortTag == "lts" }?.descriptor.digest == lts)
        }

        // Pinned to lts: its own tag stays, besides the five default channels it is retagged onto.
        let pinned = try await PullTests.pull(registry, into: directory, ["--dry-run", "--no-security-db", "--deckhouse-tag", "lts"])
        #expect(pinned.status == 0, "\(pinned.stderrString)")
        let pinnedReferences = try JSONDecoder().decode(References.self, from: Data(pinned.stdout)).references
        let channelTags = Dictionary(pinnedReferences.filter { $0.layout == "release-channel" }.map { ($0.shortTag, $0.reference) }, uniquingKeysWith: { a, _ in a })
        #expect(channelTags == ["v1.69.3": "v1.69.3", "lts": "lts", "alpha": "lts", "beta": "lts", "early-access": "lts", "stable": "lts", "rock-solid": "lts"])
        #expect(pinnedReferences.contains { $0.layout == "install" && $0.shortTag == "lts" && $0.reference == "v1.69.3" })
        // Pinned to the version lts points at: lts comes as the source serves it.
        let byVersion = try await PullTests.pull(registry, into: directory, ["--dry-run", "--no-security-db", "--deckhouse-tag", "v1.69.3"])
        #expect(byVersion.status == 0, "\(byVersion.stderrString)")
        let byVersionReferences = try JSONDecoder().decode(References.self, from: Data(byVersion.stdout)).references
        #expect(byVersionReferences.contains { $0.layout == "release-channel" && $0.shortTag == "lts" && $0.reference == "lts" })
        #expect(byVersionReferences.contains { $0.layout == "install" && $0.shortTag == "lts" && $0.reference == "v1.69.3" })

        let wider = try await PullTests.pull(registry, into: directory, ["--dry-run", "--since-version", "v1.68.0"])
        #expect(wider.status == 0, "\(wider.stderrString)")
        let plan = try JSONDecoder().decode(PullTests.Plan.self, from: Data(wider.stdout))
        #expect(plan.versions == ["v1.68.4", "v1.69.3"])
    }

    @Test func missingDefaultChannelWithoutLtsStopsThePull() async throws {
        let (registry, _) = try await PullTests.seededEdition {
            $0.channels = ["alpha": "v1.70.1", "beta": "v1.69.3", "stable": "v1.68.4", "rock-solid": "v1.67.5"]
        }
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        let output = try await PullTests.pull(registry, into: directory, ["--no-modules"])
        #expect(output.status == 1)
        #expect(output.stderrString.contains("early-access"), "\(output.stderrString)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".tar") }.isEmpty)
        // A pinned pull does not need the missing channel.
        let pinned = try await PullTests.pull(registry, into: directory, ["--no-modules", "--deckhouse-tag", "v1.69.3"])
        #expect(pinned.status == 0, "\(pinned.stderrString)")
    }

    @Test func suspendedChannelIsRefusedUnlessIgnoreSuspend() async throws {
        let (registry, _) = try await PullTests.seededEdition { $0.suspended = ["beta"]; $0.modules = [:]; $0.packages = [:]; $0.plugins = false }
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        let refused = try await PullTests.pull(registry, into: directory, ["--no-security-db"])
        #expect(refused.status == 1)
        #expect(refused.stderrString.contains("beta") && refused.stderrString.contains("--ignore-suspend"), "\(refused.stderrString)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".tar") }.isEmpty)
        // Pinned to the stable version: beta is not part of the pull.
        let pinned = try await PullTests.pull(registry, into: directory, ["--no-security-db", "--deckhouse-tag", "v1.68.4", "--dry-run"])
        #expect(pinned.status == 0, "\(pinned.stderrString)")
        // Pinned to a channel: that channel alone, as d8 matches it, though beta shares its version...
        let channelPin = try await PullTests.pull(registry, into: directory, ["--no-security-db", "--deckhouse-tag", "early-access", "--dry-run"])
        #expect(channelPin.status == 0, "\(channelPin.stderrString)")
        // ...while the version itself names every channel at it, beta too.
        let versionPin = try await PullTests.pull(registry, into: directory, ["--no-security-db", "--deckhouse-tag", "v1.69.3", "--dry-run"])
        #expect(versionPin.status == 1 && versionPin.stderrString.contains("beta"), "\(versionPin.stderrString)")
        let ignored = try await PullTests.pull(registry, into: directory, ["--no-security-db", "--ignore-suspend"])
        #expect(ignored.status == 0, "\(ignored.stderrString)")
        let entries = try await Self.entries(directory)
        #expect(Self.tags(entries, tar: "platform.tar", layout: "release-channel").contains("beta"))
    }

    @Test func aSuspendedModuleChannelIsRefusedUnlessIgnoreSuspend() async throws {
        let (registry, _) = try await PullTests.seededEdition {
            $0.suspendedModular = ["console": ["alpha"]]; $0.packages = [:]; $0.plugins = false
        }
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        let refused = try await PullTests.pull(registry, into: directory, ["--no-security-db", "--deckhouse-tag", "v1.69.3", "--dry-run"])
        #expect(refused.status == 1)
        #expect(refused.stderrString.contains("modules/console/release: channel alpha is suspended"), "\(refused.stderrString)")
        #expect(refused.stderrString.contains("--ignore-suspend"))
        // Without console the pull goes on; with --ignore-suspend console comes too.
        let without = try await PullTests.pull(registry, into: directory, ["--no-security-db", "--deckhouse-tag", "v1.69.3", "--dry-run",
                                                                            "--exclude-module", "console"])
        #expect(without.status == 0, "\(without.stderrString)")
        let ignored = try await PullTests.pull(registry, into: directory, ["--no-security-db", "--deckhouse-tag", "v1.69.3", "--dry-run",
                                                                            "--ignore-suspend"])
        #expect(ignored.status == 0, "\(ignored.stderrString)")
        #expect(try JSONDecoder().decode(PullTests.Plan.self, from: Data(ignored.stdout)).modules["console"] != nil)
    }

    /// A module channel whose version.json names no version gives no version, as in d8, and
    /// stops nothing; its image is mirrored as the source has it.
    @Test func aModuleChannelWithoutAVersionIsANote() async throws {
        let (registry, _) = try await PullTests.seededEdition {
            $0.unreadableModularChannels = ["console": ["alpha", "beta"]]; $0.packages = [:]; $0.plugins = false
        }
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        // `-c 0` too, d8's default: no chunks.
        let pulled = try await PullTests.pull(registry, into: directory, ["--no-security-db", "--deckhouse-tag", "v1.69.3", "--include-module", "console",
                                                                           "-c", "0"])
        #expect(pulled.status == 0, "\(pulled.stderrString)")
        #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent("module-console.tar").path))
        #expect(pulled.stderrString.contains("module console channel alpha:") && pulled.stderrString.contains("no version taken from it"),
                "\(pulled.stderrString)")
        let entries = try await Self.entries(directory)
        let channels = Self.tags(entries, tar: "module-console.tar", layout: "modules/console/release")
        #expect(["alpha", "beta", "stable"].allSatisfy(channels.contains), "\(channels)")
        // v1.2.0 was only on alpha and beta.
        let versions = Self.tags(entries, tar: "module-console.tar", layout: "modules/console")
        #expect(versions.contains("v1.1.5") && !versions.contains("v1.2.0"), "\(versions)")

        // One that says it is suspended stops the pull all the same.
        let (suspended, _) = try await PullTests.seededEdition {
            $0.unreadableModularChannels = ["console": ["alpha"]]; $0.suspendedModular = ["console": ["alpha"]]; $0.packages = [:]; $0.plugins = false
        }
        let refused = try await PullTests.pull(suspended, into: try TestRegistry.temporaryDirectory("dkp-bundle"),
                                               ["--no-security-db", "--deckhouse-tag", "v1.69.3", "--include-module", "console", "--dry-run"])
        #expect(refused.status == 1 && refused.stderrString.contains("modules/console/release: channel alpha is suspended"), "\(refused.stderrString)")
    }

    /// A refusal in package-versions.tar never fails a pull (as in d8): a packages catalog the
    /// source refuses (403), or one package's version repository, is left out with a note.
    @Test func packageVersionsThatCannotBeListedAreANote() async throws {
        let (registry, _) = try await PullTests.seededEdition { $0.modules = [:]; $0.plugins = false }
        let proxy = try await HTTPFaultProxy.start(upstream: registry, rules: [
            .init(.status(403), methods: ["GET"], pathContains: "/deckhouse/ee/packages/tags/list"),
        ])
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        let refused = try await FaultMatrixTests.pull(from: proxy, into: directory, ["--no-security-db", "--no-packages", "--no-modules"])
        #expect(refused.status == 0, "\(refused.stderrString)")
        #expect(refused.stderrString.contains("package-versions.tar not written") && refused.stderrString.contains("denied anonymous access"), "\(refused.stderrString)")
        #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("package-versions.tar").path))

        proxy.setRules([.init(.status(403), methods: ["GET"], pathContains: "/packages/nginx-tools/version/tags/list")])
        let other = try TestRegistry.temporaryDirectory("dkp-bundle")
        let refusedOne = try await FaultMatrixTests.pull(from: proxy, into: other, ["--no-security-db", "--no-packages", "--no-modules"])
        #expect(refusedOne.status == 0, "\(refusedOne.stderrString)")
        #expect(refusedOne.stderrString.contains("packages/nginx-tools/version cannot be listed, left out"), "\(refusedOne.stderrString)")

        // A registry failing (5xx after the retries) is no refusal: the pull fails, and a re-run completes it.
        proxy.setRules([.init(.status(500), methods: ["GET"], pathContains: "/packages/nginx-tools/version/tags/list")])
        let third = try TestRegistry.temporaryDirectory("dkp-bundle")
        let failing = try await FaultMatrixTests.pull(from: proxy, into: third, ["--no-security-db", "--no-packages", "--no-modules", "--retries", "1"])
        #expect(failing.status == 1 && failing.stderrString.contains("500"), "\(failing.stderrString)")
        withExtendedLifetime(registry) {}
    }

    /// A source whose modules and packages live under other paths (a mirror filled with
    /// `push --modules-path-suffix /mods --packages-path-suffix /pkgs`) is pulled with the same
    /// two flags into a bundle that names them modules/ and packages/ as always.
    @Test func pathSuffixesFindModulesAndPackagesElsewhereInTheSource() async throws {
        let (_, bundle) = try await PushTests.pulledBundle(["--no-security-db"])
        let mirror = try await TestRegistry.start()
        let pushed = try await CLITests.run(["push", bundle.path, "\(mirror.host)/mirror/ee", "--insecure", "--progress", "none",
                                             "--modules-path-suffix", "/mods", "--packages-path-suffix", "/pkgs"])
        try #require(pushed.status == 0, "\(pushed.stderrString)")
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        let arguments = ["pull", directory.path, "--source", "\(mirror.host)/mirror/ee", "--insecure", "--deckhouse-tag", "v1.69.3",
                         "--no-security-db", "--progress", "none", "--modules-path-suffix", "/mods"]
        let pulled = try await CLITests.run(arguments + ["--packages-path-suffix", "/pkgs"])
        #expect(pulled.status == 0, "\(pulled.stderrString)")
        #expect(pulled.stderrString.contains("note: packages are read from \(mirror.host)/mirror/ee/pkgs"), "\(pulled.stderrString)")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        #expect(["module-console.tar", "package-nginx-tools.tar", "package-versions.tar"].allSatisfy(files.contains), "\(files)")
        let entries = try await Self.entries(directory)
        #expect(!Self.tags(entries, tar: "package-nginx-tools.tar", layout: "packages/nginx-tools").isEmpty)
        #expect(!Self.tags(entries, tar: "package-versions.tar", layout: "packages/nginx-tools/version").isEmpty)
        let verified = try await CLITests.run(["verify", directory.path, "--progress", "none"])
        #expect(verified.status == 0, "\(verified.stderrString)")

        // Without the flag the standard path has no packages: said, and none pulled.
        let standard = try TestRegistry.temporaryDirectory("dkp-bundle")
        let without = try await CLITests.run(["pull", standard.path] + arguments.dropFirst(2) + ["--dry-run"])
        #expect(without.status == 0 && without.stderrString.contains("mirror/ee/packages does not exist: no packages pulled"), "\(without.stderrString)")
    }

    @Test func includePlatformTakesARangeOfVersions() async throws {
        let (registry, _) = try await PullTests.seededEdition()
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        let output = try await PullTests.pull(registry, into: directory, ["--dry-run", "--no-modules", "--include-platform", ">=v1.67.2 <v1.70.0"])
        #expect(output.status == 0, "\(output.stderrString)")
        let plan = try JSONDecoder().decode(PullTests.Plan.self, from: Data(output.stdout))
        // The latest patch of each minor, plus v1.67.2 that `>=` names.
        #expect(plan.versions == ["v1.67.2", "v1.67.5", "v1.68.4", "v1.69.3"])
        let references = try JSONDecoder().decode(References.self, from: Data(output.stdout)).references
        let channelTags = Set(references.filter { $0.layout == "release-channel" }.map(\.shortTag))
        #expect(channelTags.isSuperset(of: ["rock-solid", "stable", "early-access", "beta"]))
        #expect(!channelTags.contains("alpha"), "alpha's v1.70.1 is outside the range")

        let exact = try await PullTests.pull(registry, into: directory, ["--dry-run", "--no-modules", "--include-platform", "=v1.68.4"])
        #expect(try JSONDecoder().decode(PullTests.Plan.self, from: Data(exact.stdout)).versions == ["v1.68.4"])
        let both = try await PullTests.pull(registry, into: directory, ["--include-platform", ">=1.68", "--deckhouse-tag", "v1.69.3"])
        #expect(both.status == 2)
        let eaten = try await PullTests.pull(registry, into: directory, ["-i", "console@"])
        #expect(eaten.status == 2)
        #expect(eaten.stderrString.contains("quote"), "\(eaten.stderrString)")
    }

    /// What d8 takes where it exists (deckhouse-cli AllowMissingTags): a version without a
    /// standalone installer and a source without one of the security databases give a note and
    /// a bundle without them, which verifies; the images that must be there still stop the pull.
    @Test func optionalImagesThatAreAbsentAreNotesNotFailures() async throws {
        let (registry, _) = try await PullTests.seededEdition {
            $0.versionsWithoutStandaloneInstaller = ["v1.68.4"]
            $0.versionsWithoutReleaseChannelImage = ["v1.70.1"]
            $0.missingSecurityDatabases = ["trivy-checks"]
            $0.modules = $0.modules.filter { $0.key == "console" }; $0.packages = [:]; $0.plugins = false
        }
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        // console v1.0.0 has no release:v1.0.0 (as older releases of a real module lack one).
        let output = try await PullTests.pull(registry, into: directory, ["--deckhouse-tag", "v1.68.4", "-i", "console@>=1.0.0 <1.1.0"])
        #expect(output.status == 0, "\(output.stderrString)")
        #expect(output.stderrString.contains("modules/console/release:v1.0.0 does not exist"), "\(output.stderrString)")
        #expect(output.stderrString.contains("install-standalone:v1.68.4 does not exist"), "\(output.stderrString)")
        #expect(output.stderrString.contains("security/trivy-checks:0 does not exist: security.tar is written without it"), "\(output.stderrString)")
        let entries = try await Self.entries(directory)
        #expect(Self.tags(entries, tar: "platform.tar", layout: "install-standalone").isEmpty)
        #expect(Self.tags(entries, tar: "platform.tar", layout: "install").contains("v1.68.4"))
        #expect(Set(entries.filter { $0.tar == "security.tar" }.map(\.layout)) == ["security/trivy-db", "security/trivy-bdu", "security/trivy-java-db"])
        #expect(Self.tags(entries, tar: "module-console.tar", layout: "modules/console").isSuperset(of: ["v1.0.0", "v1.0.2", "v1.1.5", "v1.2.0"]))
        let releaseTags = Self.tags(entries, tar: "module-console.tar", layout: "modules/console/release")
        #expect(releaseTags.contains("v1.0.2") && releaseTags.contains("stable") && !releaseTags.contains("v1.0.0"), "\(releaseTags)")
        let verified = try await CLITests.run(["verify", directory.path])
        #expect(verified.status == 0, "\(verified.stderrString)")
        // Another version has its standalone installer, and it comes.
        let other = try TestRegistry.temporaryDirectory("dkp-bundle")
        let withIt = try await PullTests.pull(registry, into: other, ["--deckhouse-tag", "v1.69.3", "--dry-run"])
        #expect(withIt.status == 0 && !withIt.stderrString.contains("install-standalone"), "\(withIt.stderrString)")
        let references = try JSONDecoder().decode(References.self, from: Data(withIt.stdout)).references
        #expect(references.contains { $0.layout == "install-standalone" && $0.shortTag == "v1.69.3" })
        // A channel's version without its own release-channel image: its images come, and the gap is said.
        let ranged = try await PullTests.pull(registry, into: other, ["--include-platform", ">=1.69", "--dry-run", "--no-modules"])
        #expect(ranged.status == 0, "\(ranged.stderrString)")
        #expect(ranged.stderrString.contains("release-channel:v1.70.1 does not exist: the bundle has no release-channel image for v1.70.1"),
                "\(ranged.stderrString)")
        let rangedReferences = try JSONDecoder().decode(References.self, from: Data(ranged.stdout)).references
        #expect(rangedReferences.contains { $0.layout == "" && $0.shortTag == "v1.70.1" })
        #expect(!rangedReferences.contains { $0.layout == "release-channel" && $0.reference == "v1.70.1" })
        #expect(rangedReferences.contains { $0.layout == "release-channel" && $0.reference == "v1.69.3" })
        #expect(rangedReferences.contains { $0.layout == "release-channel" && $0.shortTag == "alpha" }, "the channel itself comes")
    }

    /// `--include-module NAME@CONSTRAINT` in d8's dialect (internal/mirror/README.MD): console has
    /// v1.1.5 on stable, v1.2.0 on alpha, and v1.0.2, v1.1.4, bobV1 and v1.3.0-rc.1 on no channel.
    @Test func moduleConstraintsSpeakD8sDialect() async throws {
        let (registry, _) = try await PullTests.seededEdition { $0.plugins = false }
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        func pull(_ extra: [String]) async throws -> (versions: [String]?, references: [References.Reference], stderr: String) {
            let output = try await PullTests.pull(registry, into: directory, ["--dry-run", "--no-platform", "--no-security-db",
                                                                              "--no-installer", "--no-packages"] + extra)
            #expect(output.status == 0, "\(extra): \(output.stderrString)")
            let plan = try JSONDecoder().decode(PullTests.Plan.self, from: Data(output.stdout))
            return (plan.modules["console"], try JSONDecoder().decode(References.self, from: Data(output.stdout)).references, output.stderrString)
        }
        func channelTags(_ references: [References.Reference]) -> [String: String] {
            Dictionary(references.filter { $0.layout == "modules/console/release" && $0.shortTag != $0.reference }.map { ($0.shortTag, $0.reference) },
                       uniquingKeysWith: { a, _ in a })
        }
        // A bare version is >=1.1.0 <2.0.0, latest patch per minor, plus every channel's version;
        // the channels come from the source (no retag).
        let bare = try await pull(["-i", "console@1.1.0"])
        #expect(bare.versions == ["v1.1.5", "v1.2.0"])
        #expect(channelTags(bare.references).isEmpty, "\(bare.references.filter { $0.layout == "modules/console/release" })")
        #expect(Set(bare.references.filter { $0.layout == "modules/console/release" }.map(\.shortTag)).isSuperset(of: ["alpha", "stable", "rock-solid"]))
        // A range above stable still brings stable's version along; `>=` keeps the version it names.
        #expect(try await pull(["-i", "console@>=1.2.0"]).versions == ["v1.1.5", "v1.2.0"])
        #expect(try await pull(["-i", "console@>=1.0.2 <1.2.0"]).versions == ["v1.0.2", "v1.1.5", "v1.2.0"])
        #expect(try await pull(["-i", "console@~1.0"]).versions == ["v1.0.2", "v1.1.5", "v1.2.0"])
        // A release candidate comes only for a range that names a pre-release, under its own tag.
        #expect(try await pull(["-i", "console@>=1.1"]).versions == ["v1.1.5", "v1.2.0"])
        #expect(try await pull(["-i", "console@>=1.2.0-rc.0"]).versions == ["v1.1.5", "v1.2.0", "v1.3.0-rc.1"])
        #expect(try await pull(["-i", "console@=v1.3.0-rc.1"]).versions == ["v1.3.0-rc.1"])
        // A custom build tag pinned exactly goes onto every channel; nothing of the source's channels.
        let custom = try await pull(["-i", "console@=bobV1"])
        #expect(custom.versions == ["bobV1"])
        #expect(channelTags(custom.references) == Dictionary(uniqueKeysWithValues: ["alpha", "beta", "early-access", "stable", "rock-solid", "lts"].map { ($0, "bobV1") }))
        // A pin without a release image in the source is pulled, and put onto no channel, with a note.
        let pinWithoutRelease = try await pull(["-i", "console@=v1.0.0"])
        #expect(pinWithoutRelease.versions == ["v1.0.0"] && channelTags(pinWithoutRelease.references).isEmpty)
        #expect(pinWithoutRelease.stderr.contains("module console v1.0.0 has no release image in the source: it is not put onto alpha"), "\(pinWithoutRelease.stderr)")
        // Two pins of one name: both pulled, neither retagged (each would overwrite the other)...
        let two = try await pull(["-i", "console@=v1.0.2", "-i", "console@=v1.1.4"])
        #expect(two.versions == ["v1.0.2", "v1.1.4"])
        #expect(channelTags(two.references).isEmpty)
        #expect(!two.references.contains { $0.layout == "modules/console/release" && $0.shortTag == "stable" })
        // ...unless each names its channel.
        let named = try await pull(["-i", "console@=v1.0.2+rock-solid", "-i", "console@=v1.1.4+stable"])
        #expect(channelTags(named.references) == ["rock-solid": "v1.0.2", "stable": "v1.1.4"])
        // -e NAME@CONSTRAINT leaves the whole module out, as d8 does, and says so.
        let excluded = try await pull(["-e", "console@1.0.0"])
        #expect(excluded.versions == nil)
        #expect(excluded.stderr.contains("--exclude-module console@1.0.0 leaves all of console out"), "\(excluded.stderr)")
        // A +suffix that is no channel, and --since-version with a tag, are refused.
        let badChannel = try await PullTests.pull(registry, into: directory, ["--dry-run", "-i", "console@=v1.1.4+nightly"])
        #expect(badChannel.status == 2 && badChannel.stderrString.contains("'+nightly' is not a release channel"), "\(badChannel.stderrString)")
        let since = try await PullTests.pull(registry, into: directory, ["--dry-run", "--since-version", "v1.68.0", "--deckhouse-tag", "v1.69.3"])
        #expect(since.status == 2 && since.stderrString.contains("--since-version and --deckhouse-tag"), "\(since.stderrString)")
    }

    struct References: Decodable {
        struct Reference: Decodable { var tar: String; var layout: String; var shortTag: String; var repository: String; var reference: String }
        var references: [Reference]
    }

    @Test func packagesPluginsAndExtrasFollowTheirFlags() async throws {
        let (registry, _) = try await PullTests.seededEdition()
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        func plan(_ extra: [String]) async throws -> [References.Reference] {
            let output = try await PullTests.pull(registry, into: directory, ["--dry-run", "--no-platform", "--no-security-db", "--no-installer"] + extra)
            #expect(output.status == 0, "\(extra): \(output.stderrString)")
            return try JSONDecoder().decode(References.self, from: Data(output.stdout)).references
        }
        let noPackages = Set(try await plan(["--no-packages"]).map(\.tar))
        #expect(noPackages.contains("package-versions.tar") && !noPackages.contains("package-nginx-tools.tar"))
        let pinnedPackage = try await plan(["--include-package", "nginx-tools@=v0.5.0", "--no-modules"])
        #expect(Set(pinnedPackage.filter { $0.layout == "packages/nginx-tools" && !$0.reference.hasPrefix("sha256:") && !$0.shortTag.hasSuffix(".att") }.map(\.shortTag)) == ["v0.5.0"])
        // The pin's channel tags are the package tar's alone: in package-versions.tar, which push
        // takes after it, the source's channels would undo the pin.
        let channelNames: Set<String> = ["alpha", "beta", "early-access", "stable", "rock-solid", "lts"]
        let versionLayout = pinnedPackage.filter { $0.layout == "packages/nginx-tools/version" }
        #expect(Set(versionLayout.filter { $0.tar == "package-nginx-tools.tar" && channelNames.contains($0.shortTag) }.map(\.reference)) == ["v0.5.0"])
        #expect(!versionLayout.contains { $0.tar == "package-versions.tar" && channelNames.contains($0.shortTag) })
        #expect(versionLayout.contains { $0.tar == "package-versions.tar" && $0.shortTag == "v0.4.1" })
        let missingPackage = try await PullTests.pull(registry, into: directory, ["--dry-run", "--include-package", "nope"])
        #expect(missingPackage.status == 1 && missingPackage.stderrString.contains("nginx-tools"))

        // Without modules no contract triggers; --include-plugin takes the newest stable version.
        let noModules = try await plan(["--no-modules", "--no-packages", "--include-plugin", "diag"])
        #expect(noModules.filter { $0.tar.hasPrefix("plugin-") }.map { "\($0.tar) \($0.shortTag)" } == ["plugin-diag.tar v0.2.0"])
        func plugins(_ references: [References.Reference]) -> [String] {
            references.filter { $0.tar.hasPrefix("plugin-") }.map { "\($0.layout.split(separator: "/").last ?? "") \($0.shortTag)" }.sorted()
        }
        let constrained = try await plan(["--no-modules", "--include-plugin", "module-tools@<1.1.0"])
        #expect(plugins(constrained) == ["module-tools v1.0.0"])
        // A version brings the plugins its contract needs, a pin too; two ranges take the newest of each.
        #expect(plugins(try await plan(["--no-modules", "--include-plugin", "module-tools@~1.1"])) == ["diag v0.2.0", "module-tools v1.1.3"])
        #expect(plugins(try await plan(["--no-modules", "--include-plugin", "module-tools@=v1.1.3"])) == ["diag v0.2.0", "module-tools v1.1.3"])
        let two = try await plan(["--no-modules", "--include-plugin", "module-tools@<1.1.0", "--include-plugin", "module-tools@~1.1.0"])
        #expect(plugins(two) == ["diag v0.2.0", "module-tools v1.0.0", "module-tools v1.1.3"])
        // An exact pin takes that tag, a pre-release too.
        let preRelease = try await plan(["--no-modules", "--include-plugin", "module-tools@=v1.2.0-rc.1"])
        #expect(preRelease.filter { $0.tar == "plugin-module-tools.tar" }.map(\.shortTag) == ["v1.2.0-rc.1"])
        let missingPin = try await PullTests.pull(registry, into: directory, ["--dry-run", "--no-modules", "--include-plugin", "module-tools@=v9.9.9"])
        #expect(missingPin.status == 1 && missingPin.stderrString.contains("deckhouse-cli/plugins/module-tools:v9.9.9 does not exist"), "\(missingPin.stderrString)")
        // console v1.1.5 satisfies the newest stable contract (>=1.1.0): the plugin comes along.
        let oldConsole = try await plan(["-i", "console@=v1.1.5", "--no-packages"])
        #expect(plugins(oldConsole) == ["module-tools v1.1.0"], "v1.1.3 needs console >=1.2.0")
        let commanderOnly = try await plan(["-i", "commander", "--no-packages"])
        #expect(!commanderOnly.contains { $0.tar.hasPrefix("plugin-") })

        // -i names the modules wanted: it wins over --no-modules, with a note (d8 #417).
        let named = try await PullTests.pull(registry, into: directory, ["--dry-run", "--no-platform", "--no-security-db", "--no-installer",
                                                                         "--no-packages", "--no-modules", "-i", "commander"])
        #expect(named.status == 0 && named.stderrString.contains("--no-modules is ignored because --include-module is set"), "\(named.stderrString)")
        #expect(try JSONDecoder().decode(PullTests.Plan.self, from: Data(named.stdout)).modules.keys.sorted() == ["commander"])
        let extrasAndPlugin = try await PullTests.pull(registry, into: directory, ["--dry-run", "--only-extra-images", "--include-plugin", "diag"])
        #expect(extrasAndPlugin.status == 2 && extrasAndPlugin.stderrString.contains("no plugins"), "\(extrasAndPlugin.stderrString)")

        // --only-extra-images: a module's extras and nothing else of it.
        let extras = try await plan(["--only-extra-images", "--no-packages", "-i", "console"])
        #expect(Set(extras.filter { $0.tar == "module-console.tar" }.map(\.layout)) == ["modules/console/extra/scanner"])

        // --installer-tag that does not exist: a note, no installer.
        let output = try await PullTests.pull(registry, into: directory, ["--dry-run", "--no-platform", "--no-modules", "--no-packages",
                                                                          "--no-security-db", "--installer-tag", "v0.0.0-missing"])
        #expect(output.status == 0, "\(output.stderrString)")
        #expect(output.stderrString.contains("installer:v0.0.0-missing does not exist"))

        // An installer outside the license's scope (403): a note, and the rest of the pull goes on, as in d8.
        // A pinned pull lists no release-channel tags, so a source that refuses the list is pulled from.
        let refusing = try await HTTPFaultProxy.start(upstream: registry, rules: [
            .init(.status(403), pathContains: "/v2/deckhouse/installer/"), .init(.status(403), pathContains: "/release-channel/tags/list"),
        ])
        let refused = try await CLITests.run(["pull", directory.path, "--source", "\(refusing.host)/deckhouse/ee", "--insecure", "--dry-run",
                                              "--json", "--progress", "none", "--deckhouse-tag", "v1.69.3", "--no-modules", "--no-packages"])
        #expect(refused.status == 0, "\(refused.stderrString)")
        #expect(refused.stderrString.contains("installer:latest is refused to this identity"), "\(refused.stderrString)")
        let refusedReferences = try JSONDecoder().decode(References.self, from: Data(refused.stdout)).references
        #expect(!refusedReferences.contains { $0.tar == "installer.tar" } && refusedReferences.contains { $0.tar == "platform.tar" })
        #expect(refusing.requestLines.contains { $0.hasPrefix("HEAD /v2/deckhouse/installer/") }, "the installer was asked for and refused")
    }

    @Test func proxyRegistryFindsVersionsByProbing() async throws {
        let (registry, _) = try await PullTests.seededEdition { $0.plugins = false }
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        let refused = try await PullTests.pull(registry, into: directory, ["--dry-run", "--proxy-registry"])
        #expect(refused.status == 2)
        let output = try await PullTests.pull(registry, into: directory, ["--dry-run", "--proxy-registry", "--include-platform", ">=1.68.0",
                                                                          "-i", "console@>=1.1.0"])
        #expect(output.status == 0, "\(output.stderrString)")
        let plan = try JSONDecoder().decode(PullTests.Plan.self, from: Data(output.stdout))
        #expect(plan.versions == ["v1.68.4", "v1.69.3", "v1.70.1"])
        #expect(plan.modules["console"] == ["v1.1.5", "v1.2.0"])
        let references = try JSONDecoder().decode(References.self, from: Data(output.stdout)).references
        #expect(!references.contains { $0.tar == "package-versions.tar" }, "no catalog to list behind a proxy registry")
    }

    @Test func noPullResumeStartsOverAndTimeoutTakesGoDurations() async throws {
        let (registry, _) = try await PullTests.seededEdition { $0.modules = [:]; $0.packages = [:]; $0.plugins = false }
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        let arguments = ["--deckhouse-tag", "v1.69.3", "--no-security-db", "--tmp-dir", "/nonexistent-unused"]
        let first = try await PullTests.pull(registry, into: directory, arguments)
        #expect(first.status == 0, "\(first.stderrString)")
        let firstResult = try JSONDecoder().decode(PullTests.PullResult.self, from: Data(first.stdout))
        let resumed = try await PullTests.pull(registry, into: directory, arguments)
        #expect(try JSONDecoder().decode(PullTests.PullResult.self, from: Data(resumed.stdout)).bytesTransferred == 0)
        let again = try await CLITests.run(["pull", directory.path, "--source", "\(registry.host)/deckhouse/ee", "--insecure", "--json",
                                            "--progress", "none", "--no-pull-resume"] + arguments, environment: ["D8_MIRROR_TIMEOUT": "2m30s"])
        #expect(again.status == 0, "\(again.stderrString)")
        let againResult = try JSONDecoder().decode(PullTests.PullResult.self, from: Data(again.stdout))
        #expect(againResult.bytesAlreadyPresent == 0)
        #expect(againResult.bytesTransferred == firstResult.bytesTransferred)
        let bad = try await CLITests.run(["pull", directory.path, "--source", "\(registry.host)/deckhouse/ee", "--insecure"] + arguments,
                                         environment: ["D8_MIRROR_TIMEOUT": "forever"])
        #expect(bad.status == 2)
        #expect(bad.stderrString.contains("D8_MIRROR_TIMEOUT"))
    }

    /// A module's channel may name a release candidate (d8 pulls the version as written): it is
    /// pulled under its own tag, not cut to v1.3.0, and the channel image comes along.
    @Test func aModuleChannelOnAReleaseCandidateIsPulledAsWritten() async throws {
        let (registry, _) = try await PullTests.seededEdition {
            $0.plugins = false
            $0.modules["console"]?["alpha"] = "v1.3.0-rc.1"
        }
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        let output = try await PullTests.pull(registry, into: directory, ["--dry-run", "--no-platform", "--no-security-db",
                                                                          "--no-installer", "--no-packages", "-i", "console"])
        #expect(output.status == 0, "\(output.stderrString)")
        let plan = try JSONDecoder().decode(PullTests.Plan.self, from: Data(output.stdout))
        #expect(plan.modules["console"] == ["v1.1.5", "v1.2.0", "v1.3.0-rc.1"], "\(plan.modules)")
        let references = try JSONDecoder().decode(References.self, from: Data(output.stdout)).references
        #expect(references.contains { $0.layout == "modules/console" && $0.reference == "v1.3.0-rc.1" })
        #expect(references.contains { $0.layout == "modules/console/release" && $0.shortTag == "alpha" })
        #expect(!references.contains { $0.reference == "v1.3.0" })
    }
}
