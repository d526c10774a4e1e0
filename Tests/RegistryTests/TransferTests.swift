import Foundation
import NIOCore
import OCI
import Registry
import Streams
import Testing
import TestSupport

/// Manifests, blobs, uploads, mounts, pagination and resumption against a real registry
/// (and, where a registry cannot be made to misbehave, a small scripted HTTP server).
@Suite struct TransferTests {
    @Test func manifestsByTagAndDigestIndexesAndDockerSchema2() async throws {
        let registry = try await TestRegistry.start()
        let client = try makeClient(registry)
        try await withClient(client) { client in
            let a = try await ImageSeeder.pushImage(client, repository: "x/app", tag: "amd", layerSizes: [300], seed: 1)
            let b = try await ImageSeeder.pushImage(client, repository: "x/app", tag: "docker", layerSizes: [400], seed: 2, mediaType: .dockerManifest)
            let indexDigest = try await ImageSeeder.pushIndex(client, repository: "x/app", tag: "multi", images: [a, b])
            let index = try await client.manifest(repository: "x/app", reference: "multi")
            #expect(index.digest == indexDigest)
            guard case let .index(parsed) = index.document else { Issue.record("not an index"); return }
            #expect(parsed.manifests.map(\.digest) == [a.manifestDigest, b.manifestDigest])
            let docker = try await client.manifest(repository: "x/app", reference: b.manifestDigest.string)
            #expect(docker.mediaType == .dockerManifest)
            #expect(docker.bytes == b.manifestBytes)
            #expect(try await client.manifestDescriptor(repository: "x/app", reference: "nope") == nil)
            let error = await #expect(throws: RegistryError.self) { _ = try await client.manifest(repository: "x/app", reference: "nope") }
            #expect("\(error!)".contains("x/app:nope not found"))
            #expect(try await client.blobSize(repository: "x/app", digest: a.layers[0].digest) == 300)
            #expect(try await client.blobSize(repository: "x/other", digest: a.layers[0].digest) == nil)
        }
    }

    @Test func monolithicStreamedAndChunkedUploads() async throws {
        let registry = try await TestRegistry.start()
        for (name, chunk) in [("streamed", nil as Int?), ("chunked", 1 << 20)] {
            let client = try makeClient(registry) {
                $0.monolithicUploadLimit = 64 << 10
                $0.uploadChunkSize = chunk
            }
            try await withClient(client) { client in
                for size: Int64 in [10, 64 << 10, 3 * (1 << 20) + 12345] {
                    let blob = SyntheticBlob(size: size, seed: UInt64(size) + (chunk == nil ? 0 : 99))
                    let descriptor = Descriptor(mediaType: .ociLayerGzip, digest: try await blob.digest(), size: size)
                    let before = client.statistics.requests
                    try await client.uploadBlob(repository: "up/\(name)", descriptor: descriptor) { blob }
                    let requests = client.statistics.requests - before
                    if size > 64 << 10, chunk != nil {
                        #expect(requests >= 5, "POST, 4 PATCHes of 1 MiB, PUT: \(requests)")
                    }
                    #expect(try await client.blobSize(repository: "up/\(name)", digest: descriptor.digest) == size)
                    #expect(try await download(client, repository: "up/\(name)", descriptor: descriptor) == size)
                }
            }
        }
    }

    @Test func crossRepositoryMountSendsNoBytes() async throws {
        let registry = try await TestRegistry.start(tls: true, users: ["rw": "mount-pw"])
        let client = try makeClient(registry, user: "rw", password: "mount-pw")
        try await withClient(client) { client in
            let image = try await ImageSeeder.pushImage(client, repository: "system/deckhouse", tag: "v1", layerSizes: [2 << 20])
            let layer = image.layers[0]
            let uploadedBefore = client.statistics.bytesUploaded
            let outcome = try await client.uploadBlob(repository: "system/deckhouse/modules/foo", descriptor: layer,
                                                      mountFrom: "system/deckhouse") { SyntheticBlob(size: 1, seed: 0) }
            #expect(outcome == .mounted)
            #expect(client.statistics.bytesUploaded == uploadedBefore)
            #expect(client.statistics.blobsMounted == 1)
            #expect(try await client.blobSize(repository: "system/deckhouse/modules/foo", digest: layer.digest) == 2 << 20)
            // A mount from a repository that lacks the blob falls back to a real upload.
            let fresh = SyntheticBlob(size: 5000, seed: 4242)
            let descriptor = Descriptor(mediaType: .ociLayerGzip, digest: try await fresh.digest(), size: 5000)
            #expect(try await client.uploadBlob(repository: "b/c", descriptor: descriptor, mountFrom: "empty/repo") { fresh } == .uploaded)
            #expect(try await client.mountBlob(repository: "d/e", digest: layer.digest, from: "system/deckhouse"))
        }
    }

    @Test func cutConnectionResumesWithRange() async throws {
        let registry = try await TestRegistry.start()
        let seeder = try makeClient(registry)
        let image = try await withClient(seeder) {
            try await ImageSeeder.pushImage($0, repository: "r/big", tag: "v1", layerSizes: [24 << 20])
        }
        let proxy = try await FaultProxy.start(upstream: registry)
        let client = try RegistryClient(host: proxy.host, configuration: {
            var c = RegistryConfiguration(); c.insecure = true; c.initialBackoff = .milliseconds(10); return c
        }())
        proxy.setFault(.cutAfter(bytes: 5 << 20, connections: 2))
        let layer = image.layers[0]
        let total = try await withClient(client) { try await download($0, repository: "r/big", descriptor: layer) }
        #expect(total == layer.size)
        #expect(proxy.cutsPerformed == 2)
        #expect(client.statistics.bytesDownloaded == layer.size)
        // Resumed, not restarted: starting over would have sent the blob plus both 5 MiB cut prefixes.
        #expect(Int64(proxy.bytesToClient) < layer.size + 2 * (5 << 20), "\(proxy.bytesToClient) bytes crossed the proxy")
        try await proxy.shutdown()
    }

    @Test func stalledConnectionHitsTheIdleTimeout() async throws {
        let registry = try await TestRegistry.start()
        let seeder = try makeClient(registry)
        let image = try await withClient(seeder) {
            try await ImageSeeder.pushImage($0, repository: "r/stall", tag: "v1", layerSizes: [8 << 20])
        }
        let proxy = try await FaultProxy.start(upstream: registry)
        let client = try RegistryClient(host: proxy.host, configuration: {
            // 5 attempts without progress and 2 s: on a loaded machine (CI ran this test for 79 s)
            // the idle timeout can also fire between two stalls, more than once (the attempts of
            // a download count from its last byte).
            var c = RegistryConfiguration(); c.insecure = true; c.idleTimeout = .seconds(2); c.maxAttempts = 5
            c.initialBackoff = .milliseconds(10); return c
        }())
        let started = ContinuousClock.now
        // One withClient around both halves: a first half that throws must still shut the client down.
        try await withClient(client) { client in
            // Every connection stalls after 3 MiB: each idle timeout resumes where the last one stopped.
            proxy.setFault(.stall(afterBytes: 3 << 20))
            let size = try await download(client, repository: "r/stall", descriptor: image.layers[0])
            #expect(size == 8 << 20)
            #expect(proxy.stallsPerformed >= 2)
            #expect(ContinuousClock.now - started >= .seconds(2))
            // A registry that never answers: the idle timeout fires, retries run out, one clear error.
            proxy.setFault(.stall(afterBytes: 0))
            let error = await #expect(throws: RegistryError.self) { _ = try await download(client, repository: "r/stall", descriptor: image.layers[0]) }
            #expect("\(error!)".contains("stopped answering"))
        }
        #expect(ContinuousClock.now - started < .seconds(150), "a hang, not a slow machine (a loaded suite took 65 s)")
        try await proxy.shutdown()
    }

    @Test func tagPaginationFollowsLinkHeaders() async throws {
        // distribution 2.8 ignores `n` for tag lists, so a scripted registry serves the pages.
        let server = try await TestHTTPServer.start { request in
            guard request.path == "/v2/p/q/tags/list" else { return .notFound() }
            switch request.query("last") {
            case nil:
                return TestHTTPResponse(status: 200, headers: [("Link", #"</v2/p/q/tags/list?n=2&last=t1>; rel="next""#)],
                                        text: #"{"name":"p/q","tags":["t0","t1"]}"#)
            case "t1"?:
                return TestHTTPResponse(status: 200, headers: [("Link", #"<http://\#(request.header("Host") ?? "")/v2/p/q/tags/list?n=2&last=t3>; rel="next""#)],
                                        text: #"{"name":"p/q","tags":["t2","t3"]}"#)
            default:
                return TestHTTPResponse(status: 200, text: #"{"name":"p/q","tags":["t4"]}"#)
            }
        }
        let client = try RegistryClient(host: server.host, configuration: { var c = RegistryConfiguration(); c.insecure = true; return c }())
        try await withClient(client) { (client: RegistryClient) async throws in
            #expect(try await client.tags(repository: "p/q", pageSize: 2) == ["t0", "t1", "t2", "t3", "t4"])
            #expect(server.requests.count == 3)
            let error = await #expect(throws: RegistryError.self) { _ = try await client.tags(repository: "no/such") }
            #expect("\(error!)".contains("not found"))
        }
        try await server.shutdown()
        // A real registry's (unpaginated) list.
        let registry = try await TestRegistry.start()
        let real = try makeClient(registry)
        try await withClient(real) { client in
            let image = try await ImageSeeder.pushImage(client, repository: "p/q", tag: "t0", layerSizes: [10])
            for i in 1..<4 {
                try await client.putManifest(repository: "p/q", reference: "t\(i)", bytes: image.manifestBytes, mediaType: .ociManifest)
            }
            #expect(try await client.tags(repository: "p/q").sorted() == ["t0", "t1", "t2", "t3"])
        }
    }

    @Test func corruptBlobIsRejectedWithBothDigests() async throws {
        let good = Array(repeating: UInt8(7), count: 1000)
        let digest = SHA256.digest(of: good)
        let server = try await TestHTTPServer.start { request in
            TestHTTPResponse(status: 200, headers: [("Content-Type", "application/octet-stream")],
                             body: Array(repeating: UInt8(8), count: 1000))
        }
        let client = try RegistryClient(host: server.host, configuration: { var c = RegistryConfiguration(); c.insecure = true; return c }())
        try await withClient(client) { client in
            let error = await #expect(throws: RegistryError.self) {
                _ = try await download(client, repository: "a/b", descriptor: Descriptor(mediaType: .ociLayerGzip, digest: digest, size: 1000))
            }
            guard case let .digestMismatch(_, expected, actual)? = error else { Issue.record("got \(String(describing: error))"); return }
            #expect(expected == digest)
            #expect(actual == SHA256.digest(of: Array(repeating: 8, count: 1000)))
        }
        try await server.shutdown()
    }

    @Test func redirectDropsAuthorizationAcrossOrigins() async throws {
        let blob = Array("redirected blob bytes".utf8)
        let digest = SHA256.digest(of: blob)
        let storage = try await TestHTTPServer.start { _ in TestHTTPResponse(status: 200, body: blob) }
        let registry = try await TestHTTPServer.start { request in
            guard request.header("Authorization") != nil else {
                return TestHTTPResponse(status: 401, headers: [("WWW-Authenticate", #"Basic realm="test""#)])
            }
            return TestHTTPResponse(status: 307, headers: [("Location", "http://\(storage.host)/bucket/blob?sig=1")])
        }
        let client = try RegistryClient(host: registry.host, configuration: {
            var c = RegistryConfiguration(); c.insecure = true
            c.credential = Credential(username: "u", password: "redirect-secret"); return c
        }())
        let size = try await withClient(client) {
            try await download($0, repository: "a/b", descriptor: Descriptor(mediaType: .ociLayerGzip, digest: digest, size: Int64(blob.count)))
        }
        #expect(size == Int64(blob.count))
        #expect(registry.requests.last?.header("Authorization") != nil)
        #expect(storage.requests.count == 1)
        #expect(storage.requests.first?.header("Authorization") == nil)
        try await storage.shutdown()
        try await registry.shutdown()
    }

    @Test func retriesOn503And429HonouringRetryAfter() async throws {
        let counter = Counter()
        let server = try await TestHTTPServer.start { request in
            switch counter.next() {
            case 0: return TestHTTPResponse(status: 503)
            case 1: return TestHTTPResponse(status: 429, headers: [("Retry-After", "1")])
            default: return TestHTTPResponse(status: 200, headers: [("Content-Type", "application/json")], text: "{}")
            }
        }
        let client = try RegistryClient(host: server.host, configuration: {
            var c = RegistryConfiguration(); c.insecure = true; c.initialBackoff = .milliseconds(10); return c
        }())
        let started = ContinuousClock.now
        try await withClient(client) { try await $0.ping() }
        #expect(ContinuousClock.now - started >= .milliseconds(950))
        #expect(client.statistics.retries == 2)
        // Out of attempts: the registry's status is reported.
        server.setHandler { _ in TestHTTPResponse(status: 500, headers: [("Content-Type", "application/json")],
                                                  text: #"{"errors":[{"code":"UNKNOWN","message":"disk on fire"}]}"#) }
        let impatient = try RegistryClient(host: server.host, configuration: {
            var c = RegistryConfiguration(); c.insecure = true; c.maxAttempts = 2; c.initialBackoff = .milliseconds(10); return c
        }())
        try await withClient(impatient) { client in
            let error = await #expect(throws: RegistryError.self) { try await client.ping() }
            #expect("\(error!)".contains("UNKNOWN: disk on fire"))
        }
        try await server.shutdown()
    }

    @Test func chunkedUploadHonoursMinimumChunkLength() async throws {
        // A scripted registry that demands 2 MiB chunks and records each PATCH's size.
        let sizes = Recorder()
        let server = try await TestHTTPServer.start { request in
            switch request.method {
            case "POST": return TestHTTPResponse(status: 202, headers: [("Location", "/v2/a/b/blobs/uploads/1"), ("OCI-Chunk-Min-Length", "\(2 << 20)")])
            case "PATCH": sizes.add(request.body.count); return TestHTTPResponse(status: 202, headers: [("Location", "/v2/a/b/blobs/uploads/1")])
            case "PUT": return TestHTTPResponse(status: 201)
            default: return TestHTTPResponse(status: 404)
            }
        }
        let blob = SyntheticBlob(size: 5 << 20, seed: 5)
        let descriptor = Descriptor(mediaType: .ociLayerGzip, digest: try await blob.digest(), size: 5 << 20)
        let client = try RegistryClient(host: server.host, configuration: {
            var c = RegistryConfiguration(); c.insecure = true; c.uploadChunkSize = 1 << 20; c.monolithicUploadLimit = 1024; return c
        }())
        _ = try await withClient(client) { try await $0.uploadBlob(repository: "a/b", descriptor: descriptor) { blob } }
        #expect(sizes.values == [2 << 20, 2 << 20, 1 << 20])
        try await server.shutdown()
    }

    /// One 1 GiB blob up and down in one stream each: memory must not follow the blob size.
    @Test func oneGibibyteBlobStreamsInBoundedMemory() async throws {
        let registry = try await TestRegistry.start()
        let client = try makeClient(registry)
        let size: Int64 = 1 << 30
        let blob = SyntheticBlob(size: size, seed: 77)
        let descriptor = Descriptor(mediaType: .ociLayerGzip, digest: try await blob.digest(), size: size)
        let growth = try await residentGrowth {
            try await withClient(client) { client in
                try await client.uploadBlob(repository: "huge/one", descriptor: descriptor) { blob }
                #expect(try await client.blobSize(repository: "huge/one", digest: descriptor.digest) == size)
                #expect(try await download(client, repository: "huge/one", descriptor: descriptor) == size)
            }
        }
        #expect(growth < 512 << 20, "resident memory rose by \(growth >> 20) MiB while moving a 1024 MiB blob")
    }
}

final class Counter: Sendable {
    private let value = Locked(0)
    func next() -> Int { value.withLock { v in defer { v += 1 }; return v } }
}

final class Recorder: Sendable {
    private let items = Locked([Int]())
    func add(_ n: Int) { items.withLock { $0.append(n) } }
    var values: [Int] { items.withLock { $0 } }
}

import Synchronization
final class Locked<T: Sendable>: Sendable {
    private let mutex: Mutex<T>
    init(_ value: T) { mutex = Mutex(value) }
    func withLock<R>(_ body: (inout T) -> R) -> R { mutex.withLock { body(&$0) } }
}
