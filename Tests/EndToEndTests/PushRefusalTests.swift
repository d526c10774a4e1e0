import Foundation
import Registry
import Testing
import TestSupport

/// A registry that refuses one request fails only that image (issue 11, item 2), and a re-push
/// puts no manifest that is already right (item 3), so a registry with immutable tags takes it.
/// The refusals come from the HTTP fault proxy in front of a real registry.
@Suite struct PushRefusalTests {
    static func manifestPuts(_ proxy: HTTPFaultProxy, from start: Int = 0) -> [String] {
        proxy.requestLines.dropFirst(start).filter { $0.hasPrefix("PUT ") && $0.contains("/manifests/") }
    }

    static func errorLines(_ output: TestProcess.Output) -> [String] {
        output.stderrString.split(separator: "\n").filter { $0.hasPrefix("error: ") }.map(String.init)
    }

    @Test func aRefusedManifestHoldsBackOnlyItsImageAndTheRepushPutsOnlyIt() async throws {
        // 412 to the one PUT of the platform's version tag, as a policy or an immutable tag would.
        let (bundle, target, proxy) = try await FaultMatrixTests.bundleAndTarget([
            .init(.status(412), methods: ["PUT"], pathContains: "/v2/system/deckhouse/manifests/v1.69.3", limit: 1),
        ])
        let first = try await FaultMatrixTests.push(bundle, to: proxy)
        #expect(first.status == 1, "\(first.stderrString)")
        #expect(proxy.faultsInjected == 1)
        let errors = Self.errorLines(first)
        #expect(errors.contains { $0.contains("system/deckhouse:v1.69.3") && $0.contains("412") }, "\(errors)")
        #expect(first.stderrString.contains("not pushed"), "the summary counts what was held back")

        // Everything else went up: the installer of that version, a module's channel, the channels.
        var configuration = RegistryConfiguration()
        configuration.insecure = true
        let found = try await RegistryClient.with(host: target.host, configuration: configuration) { client -> [Bool] in
            var found: [Bool] = []
            for (repository, tag) in [("system/deckhouse", "v1.69.3"), ("system/deckhouse/install", "v1.69.3"),
                                      ("system/deckhouse/modules/console/release", "stable"), ("system/deckhouse/release-channel", "stable")] {
                found.append(try await client.manifestDescriptor(repository: repository, reference: tag) != nil)
            }
            return found
        }
        #expect(found == [false, true, true, true], "v1.69.3 held back, the installer, a module channel and the channels pushed")

        // The re-run puts exactly what the first run held back, nothing that is already right.
        let before = proxy.requestLines.count
        let second = try await FaultMatrixTests.push(bundle, to: proxy)
        #expect(second.status == 0, "\(second.stderrString)")
        let puts = Self.manifestPuts(proxy, from: before)
        #expect(puts == ["PUT /v2/system/deckhouse/manifests/v1.69.3"], "\(puts)")
        #expect(try await TargetCheck.expectComplete(target, password: nil, bundle: bundle, modules: TargetCheck.editionModules) > 40)
    }

    @Test func anUploadWhoseBytesFailTheirDigestIsCancelled() async throws {
        let (bundle, target, proxy) = try await FaultMatrixTests.bundleAndTarget()
        // Flip one byte inside the security databases' largest blob, in the tar itself.
        try BundleDamage.flipByteInLargestEntry(of: bundle.appendingPathComponent("security.tar"))
        let output = try await FaultMatrixTests.push(bundle, to: proxy)
        #expect(output.status == 1, "\(output.stderrString)")
        #expect(output.stderrString.contains("corrupt"))
        // The session that got the bad bytes is closed: a DELETE of an upload in that repository.
        let cancelled = proxy.requestLines.filter { $0.hasPrefix("DELETE /v2/system/deckhouse/security/") && $0.contains("/blobs/uploads/") }
        #expect(cancelled.count == 1, "\(proxy.requestLines.filter { $0.hasPrefix("DELETE") })")
        withExtendedLifetime(target) {}
    }

    @Test func aRepushIntoARegistryWithImmutableTagsPutsNothing() async throws {
        let (bundle, target, proxy) = try await FaultMatrixTests.bundleAndTarget()
        let first = try await FaultMatrixTests.push(bundle, to: proxy)
        #expect(first.status == 0, "\(first.stderrString)")
        let firstPuts = Self.manifestPuts(proxy).count
        #expect(firstPuts > 40)
        // From now on the registry refuses every manifest PUT, as one with immutable tags
        // refuses to overwrite a tag.
        proxy.setRules([.init(.status(409), methods: ["PUT"], pathContains: "/manifests/")])
        let again = try await FaultMatrixTests.push(bundle, to: proxy)
        #expect(again.status == 0, "\(again.stderrString)")
        #expect(proxy.faultsInjected == 0, "no manifest was put again: \(proxy.log)")
        #expect(again.stdoutString.contains("\"manifestsPresent\" : \(firstPuts)"), "\(again.stdoutString.prefix(600))")
        #expect(try await TargetCheck.expectComplete(target, password: nil, bundle: bundle, modules: TargetCheck.editionModules) > 40)
    }
}

/// The target as d8 takes it (issue 11, item 8): `http://` and `https://` prefixes and a
/// trailing slash, in push and `verify --registry`; a scheme that contradicts `--insecure` is
/// bad input (exit 2) naming both.
@Suite struct TargetSchemeTests {
    @Test func schemesAndTrailingSlashesAreTakenAsD8TakesThem() async throws {
        let (source, _) = try await PullTests.seededEdition()
        let bundle = try TestRegistry.temporaryDirectory("dkp-scheme")
        let pulled = try await PullTests.pull(source, into: bundle, ["--deckhouse-tag", "v1.69.3"])
        #expect(pulled.status == 0, "\(pulled.stderrString)")
        let target = try await TestRegistry.start()
        let url = "http://\(target.host)/system/deckhouse/"
        let pushed = try await CLITests.run(["push", bundle.path, url, "--insecure", "--progress", "none"])
        #expect(pushed.status == 0, "\(pushed.stderrString)")
        let verified = try await CLITests.run(["verify", bundle.path, "--registry", url, "--insecure", "--progress", "none"])
        #expect(verified.status == 0, "\(verified.stderrString)")
        #expect(try await TargetCheck.expectComplete(target, password: nil, bundle: bundle, modules: TargetCheck.editionModules) > 40)

        let plain = try await CLITests.run(["push", bundle.path, url, "--progress", "none"])
        #expect(plain.status == 2 && plain.stderrString.contains("--insecure"), "\(plain.stderrString)")
        let both = try await CLITests.run(["verify", bundle.path, "--registry", "https://\(target.host)/system/deckhouse",
                                           "--insecure", "--progress", "none"])
        #expect(both.status == 2 && both.stderrString.contains("https://") && both.stderrString.contains("--insecure"), "\(both.stderrString)")

        // A tar lost on the way (SHA256SUMS lists it): refused before anything moves, not a push
        // that succeeds without its images.
        let fresh = try await TestRegistry.start()
        let lost = bundle.appendingPathComponent("module-console.tar")
        try FileManager.default.moveItem(at: lost, to: bundle.appendingPathComponent("elsewhere.bak"))
        let incomplete = try await CLITests.run(["push", bundle.path, "\(fresh.host)/system/deckhouse", "--insecure", "--progress", "none"])
        #expect(incomplete.status == 2, "\(incomplete.stderrString)")
        #expect(incomplete.stderrString.contains("lacks module-console.tar, which SHA256SUMS lists: the bundle is incomplete"), "\(incomplete.stderrString)")
        var configuration = RegistryConfiguration()
        configuration.insecure = true
        let tags = try await RegistryClient.with(host: fresh.host, configuration: configuration) { client in
            try? await client.tags(repository: "system/deckhouse")
        }
        #expect(tags == nil, "nothing pushed: \(tags ?? [])")
        withExtendedLifetime(source) {}
    }
}
