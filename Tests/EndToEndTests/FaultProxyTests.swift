import Foundation
import NIOCore
import OCI
import Registry
import Synchronization
import Testing
import TestSupport

/// The byte-level `FaultProxy`'s pacing (latency, bandwidth cap) and its client→upstream
/// faults (cuts at fixed or seeded random offsets, holding at a named request), against a
/// real registry and the project's own registry client.
@Suite struct FaultProxyTests {
    static var configuration: RegistryConfiguration {
        var configuration = RegistryConfiguration()
        configuration.insecure = true
        configuration.initialBackoff = .milliseconds(10)
        return configuration
    }

    static func client(_ host: String) throws -> RegistryClient {
        try RegistryClient(host: host, configuration: configuration)
    }

    /// Runs `body` with a client of `host`, shut down afterwards whatever happens.
    static func using<T: Sendable>(_ host: String, _ body: (RegistryClient) async throws -> T) async throws -> T {
        try await RegistryClient.with(host: host, configuration: configuration, body)
    }

    /// A registry holding `x/app:v1` with one layer of `layerSize` bytes.
    static func registryWithImage(layerSize: Int64) async throws -> (TestRegistry, SeededImage) {
        let registry = try await TestRegistry.start()
        let image = try await using(registry.host) {
            try await ImageSeeder.pushImage($0, repository: "x/app", tag: "v1", layerSizes: [layerSize], seed: 3)
        }
        return (registry, image)
    }

    /// Downloads a blob (the client checks its digest and size, so reordered or lost bytes fail).
    static func download(_ client: RegistryClient, _ repository: String, _ descriptor: Descriptor) async throws -> Int64 {
        var total: Int64 = 0
        for try await buffer in client.blob(repository: repository, descriptor: descriptor) {
            total += Int64(buffer.readableBytes)
        }
        return total
    }

    @Test func latencyAndBandwidthCapSetAMinimumTimeAndKeepEveryByteInOrder() async throws {
        let (registry, image) = try await Self.registryWithImage(layerSize: 2 << 20)
        let proxy = try await FaultProxy.start(upstream: registry, latency: .milliseconds(300))
        let layer = image.layers[0]
        try await Self.using(proxy.host) { client in
        // Latency: every read waits 300 ms, so even a small manifest takes that long.
        var started = ContinuousClock.now
        let manifest = try await client.manifest(repository: "x/app", reference: "v1")
        #expect(manifest.digest == image.manifestDigest)
        #expect(ContinuousClock.now - started >= .milliseconds(300))
        started = ContinuousClock.now
        #expect(try await Self.download(client, "x/app", layer) == layer.size, "digest checked by the client: order kept")
        #expect(ContinuousClock.now - started >= .milliseconds(300))

        // Bandwidth cap: 2 MiB at 4 MiB/s takes at least half a second.
        proxy.latency = .zero
        proxy.bytesPerSecond = 4 << 20
        let before = proxy.bytesToClient
        started = ContinuousClock.now
        #expect(try await Self.download(client, "x/app", layer) == layer.size)
        #expect(ContinuousClock.now - started >= .milliseconds(450))
        #expect(proxy.bytesToClient - before >= 2 << 20)

        // Back to plain forwarding.
        proxy.bytesPerSecond = nil
        #expect(try await Self.download(client, "x/app", layer) == layer.size)
        #expect(proxy.cutsPerformed == 0 && proxy.stallsPerformed == 0)
        }
        try await proxy.shutdown()
    }

    /// Uploads `blob`, calling the client again after a failure, up to `attempts` times;
    /// returns the errors of the failed calls.
    static func upload(_ client: RegistryClient, _ repository: String, _ blob: SyntheticBlob, attempts: Int) async throws -> [any Error] {
        let descriptor = Descriptor(mediaType: .ociLayerGzip, digest: try await blob.digest(), size: blob.size)
        var errors: [any Error] = []
        while true {
            do {
                try await client.uploadBlob(repository: repository, descriptor: descriptor) { blob }
                return errors
            } catch {
                errors.append(error)
                if errors.count >= attempts { throw error }
            }
        }
    }

    @Test func pacedUploadsTakeTheRateAndArriveWhole() async throws {
        let (registry, _) = try await Self.registryWithImage(layerSize: 1024)
        let proxy = try await FaultProxy.start(upstream: registry, bytesPerSecond: 4 << 20)
        let blob = SyntheticBlob(size: 2 << 20, seed: 78)
        try await Self.using(proxy.host) { client in
            // Without `pacesUploads` only responses are paced (no upper bound on time is asserted:
            // the suite runs loaded).
            let fastErrors = try await Self.upload(client, "x/fast", blob, attempts: 1)
            #expect(fastErrors.isEmpty, "\(fastErrors)")
            // With it, 2 MiB at 4 MiB/s take at least half a second, and the registry gets every byte
            // in order (it checks the digest).
            proxy.pacesUploads = true
            let before = proxy.bytesFromClient
            var started = ContinuousClock.now
            let pacedErrors = try await Self.upload(client, "x/paced", blob, attempts: 1)
            #expect(pacedErrors.isEmpty, "\(pacedErrors)")
            #expect(ContinuousClock.now - started >= .milliseconds(450))
            #expect(proxy.bytesFromClient - before >= 2 << 20)
            // The link cap alone paces uploads as well (the link's other side, at its own rate).
            proxy.bytesPerSecond = nil
            proxy.linkBytesPerSecond = 4 << 20
            started = ContinuousClock.now
            let linkErrors = try await Self.upload(client, "x/link", blob, attempts: 1)
            #expect(linkErrors.isEmpty, "\(linkErrors)")
            #expect(ContinuousClock.now - started >= .milliseconds(450))
        }
        let digest = try await blob.digest()
        let size = try await Self.using(registry.host) { try await $0.blobSize(repository: "x/link", digest: digest) }
        #expect(size == blob.size)
        try await proxy.shutdown()
    }

    @Test func clientCutMidUploadIsStartedAgainAndTheBlobArrivesWhole() async throws {
        let (registry, _) = try await Self.registryWithImage(layerSize: 1024)
        let proxy = try await FaultProxy.start(upstream: registry, clientFault: .cutAfter(bytes: 1_000_000, connections: 1))
        let blob = SyntheticBlob(size: 3 << 20, seed: 77)
        let errors = try await Self.using(proxy.host) { client in
            try await Self.upload(client, "x/upload", blob, attempts: 1).map { "\($0)" }
        }
        #expect(errors.isEmpty, "the client starts a cut upload again by itself: \(errors)")
        #expect(proxy.clientCutsPerformed == 1)
        // The cut attempt carried 1 MB (request line and headers included), the second all of the blob.
        #expect(proxy.bytesFromClient >= Int(blob.size) + 900_000, "\(proxy.bytesFromClient)")
        #expect(proxy.bytesFromClient <= Int(blob.size) + 1_000_000 + 64 << 10, "\(proxy.bytesFromClient)")
        let digest = try await blob.digest()
        let size = try await Self.using(registry.host) { try await $0.blobSize(repository: "x/upload", digest: digest) }
        #expect(size == blob.size)
        try await proxy.shutdown()
    }

    @Test func seededRandomCutsDrawTheSameOffsets() async throws {
        let (registry, image) = try await Self.registryWithImage(layerSize: 3 << 20)
        let blob = SyntheticBlob(size: 3 << 20, seed: 78)
        var clientOffsets: [[Int]] = []
        var serverOffsets: [[Int]] = []
        for (run, seed) in [(0, UInt64(42)), (1, 42), (2, 43)] {
            let proxy = try await FaultProxy.start(upstream: registry, fault: .cutWithin(100_000...2_000_000, connections: 2, seed: seed))
            try await Self.using(proxy.host) { client in
                // The download resumes after each cut by itself.
                #expect(try await Self.download(client, "x/app", image.layers[0]) == image.layers[0].size)
                proxy.clientFault = .cutWithin(100_000...2_000_000, connections: 2, seed: seed)
                _ = try await Self.upload(client, "x/random\(run)", blob, attempts: 4)
            }
            #expect(proxy.cutsPerformed >= 1 && proxy.clientCutsPerformed >= 1)
            #expect(proxy.cutOffsets.allSatisfy { (100_000...2_000_000).contains($0) })
            #expect(proxy.clientCutOffsets.allSatisfy { (100_000...2_000_000).contains($0) })
            clientOffsets.append(proxy.clientCutOffsets)
            serverOffsets.append(proxy.cutOffsets)
            try await proxy.shutdown()
        }
        // Offsets come from the seeded sequence in the order connections claim them: the same
        // seed gives the same sequence (one run may claim fewer than the other), another seed another.
        func samePrefix(_ a: [Int], _ b: [Int]) -> Bool { zip(a, b).allSatisfy(==) && !a.isEmpty && !b.isEmpty }
        #expect(samePrefix(clientOffsets[0], clientOffsets[1]), "\(clientOffsets)")
        #expect(samePrefix(serverOffsets[0], serverOffsets[1]), "\(serverOffsets)")
        #expect(clientOffsets[2].first != clientOffsets[0].first, "\(clientOffsets)")
        #expect(serverOffsets[2].first != serverOffsets[0].first, "\(serverOffsets)")
    }

    @Test func holdAtFreezesEveryRequestFromTheNamedOne() async throws {
        let (registry, image) = try await Self.registryWithImage(layerSize: 1024)
        _ = try await Self.using(registry.host) {
            try await ImageSeeder.pushImage($0, repository: "x/app", tag: "v2", layerSizes: [2048], seed: 4)
        }

        let proxy = try await FaultProxy.start(upstream: registry, clientFault: .holdAt(pattern: "/manifests/v2", occurrence: 1))
        let client = try Self.client(proxy.host)
        let other = try Self.client(proxy.host)
        do {
            #expect(try await client.manifest(repository: "x/app", reference: "v1").digest == image.manifestDigest)
            #expect(proxy.patternMatches == 0 && !proxy.isHolding)

            let finished = Finished()
            let held = Task {
                _ = try await client.manifest(repository: "x/app", reference: "v2")
                finished.add()
            }
            var waited = 0
            while !proxy.isHolding && waited < 500 {
                try await Task.sleep(for: .milliseconds(20))
                waited += 1
            }
            #expect(proxy.isHolding)
            #expect(proxy.patternMatches == 1)
            // From then on nothing reaches the registry, on this connection or a new one.
            let afterwards = Task {
                _ = try await other.manifest(repository: "x/app", reference: "v1")
                finished.add()
            }
            try await Task.sleep(for: .milliseconds(500))
            #expect(finished.count == 0, "held requests do not complete")

            // Released (a new client fault) and the held connections closed: the clients retry and finish.
            proxy.clientFault = .none
            proxy.closeAllConnections()
            try await held.value
            try await afterwards.value
            #expect(finished.count == 2)
        } catch {
            await client.shutdown()
            await other.shutdown()
            throw error
        }
        await client.shutdown()
        await other.shutdown()
        try await proxy.shutdown()
    }
}

/// Counts finished requests across tasks.
private final class Finished: Sendable {
    private let value = Mutex(0)
    func add() { value.withLock { $0 += 1 } }
    var count: Int { value.withLock { $0 } }
}
