import Foundation
import OCI
import Registry
import Testing
import TestSupport

/// One retry policy: an operation (a request, a blob upload, a blob download) makes at most
/// `maxAttempts` attempts in all, however many loops sit inside it, against a real registry
/// behind the fault proxy.
@Suite struct RetryBudgetTests {
    static func client(_ proxy: HTTPFaultProxy, attempts: Int) throws -> RegistryClient {
        var configuration = RegistryConfiguration()
        configuration.insecure = true
        configuration.maxAttempts = attempts
        configuration.initialBackoff = .milliseconds(10)
        return try RegistryClient(host: proxy.host, configuration: configuration)
    }

    @Test func anUploadWhoseRequestsFailMakesItsAttemptsOnceNotSquared() async throws {
        let registry = try await TestRegistry.start()
        // Every upload session refused: the upload's restarts and the POST's own retries
        // used to nest (4 x 4 = 16 POSTs); one budget allows 4 in all.
        let proxy = try await HTTPFaultProxy.start(upstream: registry, rules: [
            .init(.status(503), methods: ["POST"], pathContains: "/blobs/uploads/"),
        ])
        let blob = SyntheticBlob(size: 300_000, seed: 8)
        let descriptor = Descriptor(mediaType: .ociLayerGzip, digest: try await blob.digest(), size: 300_000)
        try await withClient(try Self.client(proxy, attempts: 4)) { client in
            let error = await #expect(throws: (any Error).self) {
                try await client.uploadBlob(repository: "budget/up", descriptor: descriptor) { blob }
            }
            #expect("\(error.map { "\($0)" } ?? "")".contains("503"))
        }
        #expect(proxy.faultsInjected == 4, "\(proxy.log)")
        await proxy.shutdown()
    }

    @Test func aDownloadRefusedOutrightMakesItsAttemptsOnce() async throws {
        let registry = try await TestRegistry.start()
        let seeded = try await withClient(try makeClient(registry)) { client in
            try await ImageSeeder.pushImage(client, repository: "budget/down", tag: "v1", layerSizes: [2 << 20], seed: 9)
        }
        let layer = seeded.layers[0]
        let proxy = try await HTTPFaultProxy.start(upstream: registry, rules: [
            .init(.status(503), methods: ["GET"], pathContains: "/blobs/sha256:"),
        ])
        _ = try await withClient(try Self.client(proxy, attempts: 3)) { client in
            await #expect(throws: (any Error).self) {
                for try await _ in client.blob(repository: "budget/down", descriptor: layer) {}
            }
        }
        #expect(proxy.faultsInjected == 3, "\(proxy.log)")

        // A download that moves between failures goes on: each cut comes after new bytes,
        // so eight cuts do not use up three attempts.
        proxy.setRules([.init(.cutResponse(afterBodyBytes: 100_000...200_000), methods: ["GET"], pathContains: "/blobs/sha256:", limit: 8)])
        let received = try await withClient(try Self.client(proxy, attempts: 3)) { client in
            var count = 0
            for try await chunk in client.blob(repository: "budget/down", descriptor: layer) { count += chunk.readableBytes }
            return count
        }
        #expect(received == 2 << 20)
        #expect(proxy.faultsInjected == 3 + 8, "\(proxy.log)")
        await proxy.shutdown()
    }
}
