import Foundation
import OCI
import Registry
import Testing
import TestSupport

/// Push of bundles of current d8's shape (packages, plugins, VEX, shared layouts, odd
/// descriptors), made by hand in `D8ShapeEdition`, into real registries.
@Suite struct PushD8ShapeTests {
    struct Result: Decodable {
        var references: Int; var failures: [String]; var warnings: [String]
        var platformVersions: [String]; var modules: [String]; var packages: [String]; var plugins: [String]
        var securityDatabases: [String]; var vexAttestations: Int; var blobsUploaded: Int
    }

    static func client(_ target: TestRegistry, password: String?) throws -> RegistryClient {
        var configuration = RegistryConfiguration()
        configuration.caFile = target.caFile
        configuration.insecure = !target.isTLS
        configuration.credential = password.map { Credential(username: "rw", password: $0) }
        return try RegistryClient(host: target.host, configuration: configuration)
    }

    /// Every expected tag resolves to its digest under `root` (with `packages` moved to
    /// `packagesPath`), the absent ones do not; returns how many were checked.
    static func check(_ edition: D8ShapeEdition, in target: TestRegistry, password: String?, root: String = "system/deckhouse",
                      packagesPath: String = "packages", only: (String) -> Bool = { _ in true }) async throws -> Int {
        let client = try client(target, password: password)
        func repository(_ path: String) -> String {
            var parts = path.split(separator: "/").map(String.init)
            if parts.first == "packages" { parts[0] = packagesPath }
            return ([root] + parts).filter { !$0.isEmpty }.joined(separator: "/")
        }
        var checked = 0
        for (path, tag, digest) in edition.expected where only(path) {
            let found = try await client.manifestDescriptor(repository: repository(path), reference: tag)
            #expect(found?.digest == digest, "\(repository(path)):\(tag)")
            checked += 1
        }
        for (path, tag) in edition.absent where only(path) {
            #expect(try await client.manifestDescriptor(repository: repository(path), reference: tag) == nil, "\(path):\(tag) is skipped")
        }
        await client.shutdown()
        return checked
    }

    @Test func packagesPluginsVEXAndTheShortTagRule() async throws {
        let bundle = try TestRegistry.temporaryDirectory("dkp-d8shape")
        let edition = try D8ShapeEdition.write(to: bundle)
        let target = try await TestRegistry.start(tls: true, users: ["rw": "pw-shape-5"])
        // --dry-run: the same plan, summary and warnings, nothing written.
        struct DryRun: Decodable { var warnings: [String]; var summary: Summary; var blobsPresent: Int }
        struct Summary: Decodable { var packages: [String]; var plugins: [String]; var vexAttestations: Int }
        let dry = try await PushTests.push(bundle, to: target, password: "pw-shape-5", ["--dry-run"])
        #expect(dry.status == 0, "\(dry.stderrString)")
        let plan = try JSONDecoder().decode(DryRun.self, from: Data(dry.stdout))
        #expect(plan.warnings.count == 4 && plan.blobsPresent == 0)
        #expect(plan.summary.packages == ["bar", "baz"] && plan.summary.plugins == ["foo-tool"] && plan.summary.vexAttestations == 3)
        #expect(dry.stderrString.contains("warning: packages/bar/version: tag 'stable' is given to two different images"))
        let output = try await PushTests.push(bundle, to: target, password: "pw-shape-5", ["--packages-path-suffix", "/pkgs"])
        #expect(output.status == 0, "\(output.stderrString)")
        let result = try JSONDecoder().decode(Result.self, from: Data(output.stdout))
        #expect(result.failures.isEmpty)
        #expect(try await Self.check(edition, in: target, password: "pw-shape-5", packagesPath: "pkgs") == edition.expected.count)

        // The plugin's index went up whole, with its children, in both repositories.
        let client = try Self.client(target, password: "pw-shape-5")
        for repository in ["system/deckhouse/deckhouse-cli/plugins/foo-tool", "system/deckhouse/deckhouse-cli/plugins"] {
            for child in edition.pluginChildren {
                #expect(try await client.manifestDescriptor(repository: repository, reference: child.string) != nil, "\(repository)@\(child)")
            }
        }
        await client.shutdown()

        // The short tag rule: each decision is a warning naming the descriptor.
        let stderr = output.stderrString
        #expect(stderr.contains("warning: module-console.tar: modules/console/extra/tools: descriptor sha256:"), "\(stderr)")
        #expect(stderr.contains("(ref name 'registry.deckhouse.ru/deckhouse/ee/modules/console/extra/tools:1.0') has no io.deckhouse.image.short_tag; pushed as tag '1.0'"))
        #expect(stderr.contains("(ref name 'latest') has no io.deckhouse.image.short_tag; pushed as tag 'latest'"))
        #expect(stderr.contains("its ref name carries no tag; pushed by digest alone"))
        #expect(stderr.contains("warning: packages/bar/version: tag 'stable' is given to two different images:"))
        #expect(stderr.contains("(package-bar.tar, ref name") && stderr.contains("from package-versions.tar, is pushed"))
        #expect(result.warnings.count == 4, "\(result.warnings)")

        // The summary, on stderr and as fields.
        #expect(result.platformVersions == ["v1.69.3"])
        #expect(result.modules == ["console"])
        #expect(result.packages == ["bar", "baz"])
        #expect(result.plugins == ["foo-tool"])
        #expect(result.securityDatabases == [])
        #expect(result.vexAttestations == edition.vexCount)
        #expect(stderr.contains("push summary for \(target.host)/system/deckhouse:"))
        #expect(stderr.contains("  packages: 2 (bar, baz)"))
        #expect(stderr.contains("  plugins: 1 (foo-tool)"))
        #expect(stderr.contains("  VEX attestations: 3"))
        #expect(stderr.contains("  platform versions: 1 (v1.69.3)"))
        #expect(stderr.contains("  blobs: \(result.blobsUploaded) uploaded"))

        // Verify offline reports the same warnings and finds nothing wrong.
        let verify = try await CLITests.run(["verify", bundle.path])
        #expect(verify.status == 0, "\(verify.stdoutString)")
        #expect(verify.stdoutString.contains("warning: packages/bar/version: tag 'stable' is given to two different images:"))
        // d8 writes no SHA256SUMS: whole files cannot be checked, and verify says so.
        let warnings = verify.stdoutString.split(separator: "\n").filter { $0.hasPrefix("warning: ") }
        #expect(warnings.filter { $0.contains("the bundle has no SHA256SUMS") }.count == 1, "\(verify.stdoutString)")
        #expect(warnings.filter { !$0.contains("the bundle has no SHA256SUMS") }.count == 4, "\(verify.stdoutString)")
    }

    @Test func fileSelectsTarsAndChunkSets() async throws {
        let bundle = try TestRegistry.temporaryDirectory("dkp-d8shape-file")
        let edition = try D8ShapeEdition.write(to: bundle)
        let target = try await TestRegistry.start(tls: true, users: ["rw": "pw-file-7"])
        let base = ["--ca-file", target.caFile!, "-u", "rw", "--registry-password-stdin", "--json", "--progress", "none"]
        // One positional is TARGET; the tars come from --file: a whole tar and a chunk of a chunk set.
        let first = try await CLITests.run(["push", "\(target.host)/system/deckhouse",
                                            "--file", bundle.appendingPathComponent("package-versions.tar").path,
                                            "--file", bundle.appendingPathComponent("plugin-foo-tool.tar.0001.chunk").path] + base,
                                           stdin: "pw-file-7")
        #expect(first.status == 0, "\(first.stderrString)")
        let result = try JSONDecoder().decode(Result.self, from: Data(first.stdout))
        #expect(result.packages == ["bar", "baz"] && result.plugins == ["foo-tool"] && result.modules.isEmpty)
        let client = try Self.client(target, password: "pw-file-7")
        #expect(try await client.manifestDescriptor(repository: "system/deckhouse", reference: "v1.69.3") == nil, "platform.tar was not given")
        #expect(try await client.manifestDescriptor(repository: "system/deckhouse/packages/bar/version", reference: "lts") != nil)
        #expect(try await client.manifestDescriptor(repository: "system/deckhouse/packages/bar/version", reference: "v0.3.0") == nil,
                "package-bar.tar was not given")
        #expect(try await client.manifestDescriptor(repository: "system/deckhouse/deckhouse-cli/plugins", reference: "foo-tool") != nil)

        // NAME.tar of a tar that exists only as chunks, mixed with a bundle directory.
        let other = try TestRegistry.temporaryDirectory("dkp-d8shape-dir")
        try FileManager.default.copyItem(at: bundle.appendingPathComponent("module-console.tar"), to: other.appendingPathComponent("module-console.tar"))
        let second = try await CLITests.run(["push", other.path, "\(target.host)/system/deckhouse",
                                             "--file", bundle.appendingPathComponent("plugin-foo-tool.tar").path,
                                             "--file", bundle.appendingPathComponent("platform.tar").path] + base, stdin: "pw-file-7")
        #expect(second.status == 0, "\(second.stderrString)")
        let mixed = try JSONDecoder().decode(Result.self, from: Data(second.stdout))
        #expect(mixed.modules == ["console"] && mixed.plugins == ["foo-tool"] && mixed.platformVersions == ["v1.69.3"])
        #expect(try await Self.check(edition, in: target, password: "pw-file-7") { !$0.hasPrefix("packages") } > 10)
        await client.shutdown()

        // A tar in BUNDLE_DIR's place is pushed as d8 pushes one, as if by --file.
        let single = try await CLITests.run(["push", bundle.appendingPathComponent("package-bar.tar").path, "\(target.host)/system/deckhouse"] + base,
                                            stdin: "pw-file-7")
        #expect(single.status == 0, "\(single.stderrString)")
        let one = try JSONDecoder().decode(Result.self, from: Data(single.stdout))
        #expect(one.packages == ["bar"] && one.modules.isEmpty && one.plugins.isEmpty)
        #expect(try await Self.check(edition, in: target, password: "pw-file-7") { $0.hasPrefix("packages/bar/extra") } == 1)

        // Usage: one argument and no --file; a --file that is not a tar; a tar that is not there.
        let lonely = try await CLITests.run(["push", "\(target.host)/system/deckhouse"] + base, stdin: "pw-file-7")
        #expect(lonely.status == 2)
        #expect(lonely.stderrString.contains("push got one argument, TARGET \(target.host)/system/deckhouse"), "\(lonely.stderrString)")
        #expect(lonely.stderrString.contains("--file F"))
        let notTar = try await CLITests.run(["push", "\(target.host)/system/deckhouse", "--file", bundle.appendingPathComponent("x.zip").path] + base,
                                            stdin: "pw-file-7")
        #expect(notTar.status == 2)
        #expect(notTar.stderrString.contains("x.zip is not a bundle tar"), "\(notTar.stderrString)")
        let missing = try await CLITests.run(["push", "\(target.host)/system/deckhouse", "--file", bundle.appendingPathComponent("security.tar").path] + base,
                                             stdin: "pw-file-7")
        #expect(missing.status == 2)
        #expect(missing.stderrString.contains("security.tar"), "\(missing.stderrString)")
    }

    @Test func bypassAccessChecksTurnsAFailedWriteCheckIntoAWarning() async throws {
        let bundle = try TestRegistry.temporaryDirectory("dkp-d8shape-bypass")
        let edition = try D8ShapeEdition.write(to: bundle)
        let registry = try await TestRegistry.start()
        // The write check is the first upload POST to TARGET itself: refuse it, as a registry
        // that forbids it would, and nothing else.
        let proxy = try await HTTPFaultProxy.start(upstream: registry)
        let rule = HTTPFaultProxy.Rule(.status(403), methods: ["POST"], pathContains: "/v2/system/deckhouse/blobs/uploads/", limit: 1)
        let arguments = ["push", bundle.path, "\(proxy.host)/system/deckhouse", "--insecure", "--progress", "none", "--retries", "1"]
        proxy.setRules([rule])
        let refused = try await CLITests.run(arguments)
        #expect(refused.status == 1)
        #expect(!refused.stderrString.contains("pushing "), "\(refused.stderrString)")

        proxy.setRules([rule])
        let bypassed = try await CLITests.run(arguments, environment: ["MIRROR_BYPASS_ACCESS_CHECKS": "1"])
        #expect(bypassed.status == 0, "\(bypassed.stderrString)")
        #expect(bypassed.stderrString.contains("warning: the write check failed ("), "\(bypassed.stderrString)")
        #expect(bypassed.stderrString.contains("MIRROR_BYPASS_ACCESS_CHECKS=1 is set, so the push goes on"))
        #expect(proxy.faultsInjected == 2)
        #expect(try await Self.check(edition, in: registry, password: nil) == edition.expected.count)
        // The check itself left nothing: TARGET holds only what the bundle put there.
        let client = try Self.client(registry, password: nil)
        let tags = try await client.tags(repository: "system/deckhouse")
        #expect(!tags.contains("d8WriteCheck"))
        #expect(Set(tags) == Set(edition.expected.filter { $0.path.isEmpty }.map(\.tag)), "\(tags)")
        await client.shutdown()
        await proxy.shutdown()
    }
}
