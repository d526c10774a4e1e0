import Foundation
import Testing
import TestSupport

/// Large blobs come in `Range` parts at once, hashed in order, and a re-run resumes inside a
/// blob from the journal (issue 10, items 3 and 4). Checked against the real registry, through
/// proxies that count `Range` requests, drop them, or slow the wire so a run can be killed in
/// the middle of a blob.
@Suite struct RangedPullTests {
    /// An edition whose platform images share one large base layer.
    static func source(baseLayer: Int64) async throws -> TestRegistry {
        try await PullTests.seededEdition {
            $0.baseLayerSize = baseLayer
            $0.imageLayerSize = 64 << 10
            $0.modules = [:]
            $0.packages = [:]
        }.0
    }

    static func pull(_ host: String, _ directory: URL, _ extra: [String] = []) async throws -> TestProcess.Output {
        try await CLITests.run(["pull", directory.path, "--source", "\(host)/deckhouse/ee", "--insecure", "--deckhouse-tag", "v1.69.3",
                                "--no-modules", "--no-security-db", "--json", "--progress", "none"] + extra)
    }

    static func checkBundle(_ directory: URL) async throws {
        let verify = try await CLITests.run(["verify", directory.path])
        #expect(verify.status == 0, "\(verify.stdoutString) \(verify.stderrString)")
        let folder = try await PullTests.extract([directory.appendingPathComponent("platform.tar")])
        #expect(try PullTests.checkLayouts(folder) > 0)
    }

    @Test func aLargeBlobComesInParallelRangesAndVerifies() async throws {
        let registry = try await Self.source(baseLayer: 40 << 20)
        let proxy = try await HTTPFaultProxy.start(upstream: registry)
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        let output = try await Self.pull(proxy.host, directory)
        #expect(output.status == 0, "\(output.stderrString)")
        // 40 MiB in parts of 16 MiB: three Range requests for the base layer (the small blobs go whole).
        #expect(proxy.rangedRequests == 3, "Range requests: \(proxy.rangedRequests)")
        try await Self.checkBundle(directory)
        await proxy.shutdown()
    }

    @Test func aRegistryThatIgnoresRangesGetsOneStream() async throws {
        let registry = try await Self.source(baseLayer: 40 << 20)
        let proxy = try await HTTPFaultProxy.start(upstream: registry, rules: [.init(.dropRange, methods: ["GET"], pathContains: "/blobs/")])
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        let output = try await Self.pull(proxy.host, directory)
        #expect(output.status == 0, "\(output.stderrString)")
        #expect(proxy.faultsInjected >= 1)
        try await Self.checkBundle(directory)
        // Every part but the one that takes over is dropped: the layer crosses the wire about once.
        let result = try JSONDecoder().decode(PullTests.PullResult.self, from: Data(output.stdout))
        #expect(result.bytesTransferred < Int64(40 << 20) * 2, "\(result.bytesTransferred) bytes for a 40 MiB layer")
        await proxy.shutdown()
    }

    @Test func aPullKilledInsideABlobResumesThere() async throws {
        let registry = try await Self.source(baseLayer: 48 << 20)
        // 12 MB/s per connection: the 48 MiB layer takes seconds, so the kill lands inside it.
        let proxy = try await FaultProxy.start(upstream: registry, bytesPerSecond: 12_000_000)
        let directory = try TestRegistry.temporaryDirectory("dkp-bundle")
        let run = try BackgroundRun(["pull", directory.path, "--source", "\(proxy.host)/deckhouse/ee", "--insecure",
                                     "--deckhouse-tag", "v1.69.3", "--no-modules", "-j", "4", "--progress", "json"])
        try await run.wait(until: "8 MiB inside the large blob are journaled") {
            ((try? InterruptTests.journaledRanges(directory).values.flatMap(\.values).reduce(0, +)) ?? 0) >= 8 << 20
        }
        _ = try await run.interrupt(SIGKILL)
        #expect(run.process.terminationReason == .uncaughtSignal)
        let onDisk = try InterruptTests.journaledRanges(directory).values.flatMap(\.values).reduce(0, +)
        #expect(onDisk >= 8 << 20, "journaled bytes inside blobs: \(onDisk)")
        proxy.bytesPerSecond = nil
        // The re-run fetches exactly what the journal does not hold: missing + the fixed cost.
        let missing = try await InterruptTests.resumeAndCheckPull(proxy, directory, jobs: 4, label: "inside a blob SIGKILL")
        #expect(missing < Int64(48 << 20), "the journaled part of the layer is not fetched again (missing \(missing))")
        try await proxy.shutdown()
    }
}
