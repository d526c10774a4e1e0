import Foundation
import OCI
import Streams
@testable import Registry
import Testing
import TestSupport

/// Answers that go missing, wander or wait: a commit the gateway timed out on, a token
/// service that fails or redirects, an upload URL on another origin or on plain HTTP, a
/// server's `Retry-After` on a streamed upload, a registry without manifest HEAD. Each against
/// a real registry (or issuer, or nginx), with the fault proxy or a scripted server in between.
@Suite struct RecoveryTests {
    private static func blob(_ size: Int64, seed: UInt64) async throws -> (SyntheticBlob, Descriptor) {
        let blob = SyntheticBlob(size: size, seed: seed)
        return (blob, Descriptor(mediaType: .ociLayerGzip, digest: try await blob.digest(), size: size))
    }

    private static func client(_ proxy: HTTPFaultProxy, _ adjust: (inout RegistryConfiguration) -> Void = { _ in }) throws -> RegistryClient {
        var configuration = RegistryConfiguration()
        configuration.insecure = true
        configuration.initialBackoff = .milliseconds(20)
        configuration.maxBackoff = .milliseconds(200)
        adjust(&configuration)
        return try RegistryClient(host: proxy.host, configuration: configuration)
    }

    /// A scripted registry that wants Basic credentials and opens every upload at `location`
    /// (another origin), and a client of it with `password`.
    private static func registryUploadingElsewhere(_ location: String, password: String) async throws -> (TestHTTPServer, RegistryClient) {
        let registry = try await TestHTTPServer.start { request in
            guard request.header("Authorization") != nil else {
                return TestHTTPResponse(status: 401, headers: [("WWW-Authenticate", #"Basic realm="test""#)])
            }
            return TestHTTPResponse(status: 202, headers: [("Location", location)])
        }
        let client = try RegistryClient(host: registry.host, configuration: {
            var c = RegistryConfiguration(); c.insecure = true
            c.credential = Credential(username: "u", password: password); return c
        }())
        return (registry, client)
    }

    /// The registry commits the blob, the gateway answers 504: the closing PUT is retried, the
    /// registry no longer knows the session (404), and the upload asks whether the blob is
    /// there before starting over. Either way no byte goes twice.
    @Test func aCommitTheGatewayTimedOutOnCountsAsStored() async throws {
        let registry = try await TestRegistry.start()
        let proxy = try await HTTPFaultProxy.start(upstream: registry)
        let client = try Self.client(proxy)
        try await withClient(client) { client in
            // 5 MiB: a streamed PATCH and a closing PUT; 1 MiB: one PUT carrying the bytes.
            for (size, repository) in [(Int64(5 << 20), "gateway/streamed"), (Int64(1 << 20), "gateway/monolithic")] {
                let (blob, descriptor) = try await Self.blob(size, seed: UInt64(size))
                proxy.setRules([.init(.replaceStatus(504), methods: ["PUT"], pathContains: "/blobs/uploads/", limit: 1)])
                let before = client.statistics.bytesUploaded
                let faultsBefore = proxy.faultsInjected
                let outcome = try await client.uploadBlob(repository: repository, descriptor: descriptor) { blob }
                #expect(outcome == .uploaded)
                #expect(proxy.faultsInjected == faultsBefore + 1, "\(proxy.log)")
                #expect(client.statistics.bytesUploaded - before == size, "the bytes went once")
                #expect(proxy.requestLines.contains("HEAD /v2/\(repository)/blobs/\(descriptor.digest)"), "\(proxy.requestLines)")
                #expect(try await client.blobSize(repository: repository, digest: descriptor.digest) == size)
            }
        }
        await proxy.shutdown()
    }

    /// The answer to the closing PUT never comes: the idle timeout fires, the retried PUT
    /// finds the session gone, and the blob is found stored.
    @Test func aCommitWhoseAnswerNeverComesCountsAsStored() async throws {
        let registry = try await TestRegistry.start()
        let proxy = try await HTTPFaultProxy.start(upstream: registry, rules: [
            .init(.withholdResponse, methods: ["PUT"], pathContains: "/blobs/uploads/", limit: 1),
        ])
        // 5 s and 20 attempts, as the stall tests elsewhere: on a loaded machine the idle timeout
        // may also cut a PATCH that was only slow (CI saw one cut after 2 MiB at 2 s).
        let client = try Self.client(proxy) { $0.idleTimeout = .seconds(5); $0.maxAttempts = 20 }
        let (blob, descriptor) = try await Self.blob(5 << 20, seed: 51)
        let outcome = try await withClient(client) { try await $0.uploadBlob(repository: "withheld/x", descriptor: descriptor) { blob } }
        #expect(outcome == .uploaded)
        #expect(proxy.faultsInjected == 1)
        // Starting over after the withheld answer would have sent the whole blob twice.
        #expect(client.statistics.bytesUploaded < 2 * (5 << 20), "\(client.statistics.bytesUploaded) bytes sent")
        await proxy.shutdown()
    }

    /// A streamed upload answered 429 with `Retry-After: 2` cannot be retried on the spot; the
    /// upload starts again, and waits the two seconds the server asked for first.
    @Test func aRestartedUploadWaitsAsTheServerAsked() async throws {
        let registry = try await TestRegistry.start()
        let proxy = try await HTTPFaultProxy.start(upstream: registry, rules: [
            .init(.status(429, retryAfter: "2"), methods: ["PUT"], pathContains: "/blobs/uploads/", limit: 1),
        ])
        let client = try Self.client(proxy) { $0.maxBackoff = .seconds(1) }
        let (blob, descriptor) = try await Self.blob(100_000, seed: 52)
        let started = ContinuousClock.now
        let outcome = try await withClient(client) { try await $0.uploadBlob(repository: "busy/x", descriptor: descriptor) { blob } }
        #expect(outcome == .uploaded)
        #expect(proxy.faultsInjected == 1)
        #expect(ContinuousClock.now - started >= .milliseconds(1900), "waited \(ContinuousClock.now - started)")
        await proxy.shutdown()
    }

    /// The token service fails twice (503, then 429 with `Retry-After: 1`) on the way to the
    /// first token: both are retried, within the request's budget, and the pull goes on. A 401
    /// from it (a wrong password) is final: no retry.
    @Test func tokenServiceFailuresAreRetriedButARefusalIsNot() async throws {
        let issuer = try await TokenIssuer.start(users: ["rw": "token-retry-3"])
        let front = try await HTTPFaultProxy.start(upstreamPort: issuer.server.port, rules: [
            .init(.status(503), methods: ["GET"], pathContains: "/token", limit: 1),
            .init(.status(429, retryAfter: "1"), methods: ["GET"], pathContains: "/token", limit: 1),
        ])
        let registry = try await TestRegistry.start(tls: true, token: issuer, realm: "http://\(front.host)/token")
        let client = try makeClient(registry, user: "rw", password: "token-retry-3") { $0.maxBackoff = .seconds(1) }
        let started = ContinuousClock.now
        try await withClient(client) { client in
            try await client.ping()
            _ = try await ImageSeeder.pushImage(client, repository: "tokens/app", tag: "v1", layerSizes: [1000])
            #expect(try await client.manifestDescriptor(repository: "tokens/app", reference: "v1") != nil)
        }
        #expect(front.faultsInjected == 2, "\(front.log)")
        #expect(ContinuousClock.now - started >= .milliseconds(950), "Retry-After of the token service was honoured")
        #expect(client.statistics.retries >= 2)

        let wrong = try makeClient(registry, user: "rw", password: "not-the-password-9")
        try await withClient(wrong) { client in
            let error = await #expect(throws: RegistryError.self) { try await client.ping() }
            #expect("\(error!)".contains("user 'rw'") && !"\(error!)".contains("not-the-password-9"), "\(error!)")
        }
        #expect(wrong.statistics.retries == 0)
        await front.shutdown()
    }

    /// The realm redirects (Harbor behind a proxy that moves http:// to https://, here to
    /// another port of the same host): the redirect is followed with the credentials.
    @Test func aRedirectingTokenServiceIsFollowed() async throws {
        let issuer = try await TokenIssuer.start(users: ["rw": "token-redirect-4"])
        let redirector = try await TestHTTPServer.start { request in
            let query = request.uri.split(separator: "?", maxSplits: 1).dropFirst().first.map { "?\($0)" } ?? ""
            return TestHTTPResponse(status: 307, headers: [("Location", "\(issuer.realm)\(query)")])
        }
        let registry = try await TestRegistry.start(token: issuer, realm: "http://\(redirector.host)/auth")
        let client = try makeClient(registry, user: "rw", password: "token-redirect-4")
        try await withClient(client) { client in
            _ = try await ImageSeeder.pushImage(client, repository: "redirected/app", tag: "v1", layerSizes: [100])
        }
        #expect(!redirector.requests.isEmpty)
        #expect(issuer.tokensIssued >= 1)
        try await redirector.shutdown()
    }

    @Test func tokenCredentialsStayOnTheRealmsHostAndOffPlainHTTP() {
        #expect(TokenService.keepsCredentials(from: "http://a.example/token", to: "https://a.example:8443/token?x=1"))
        #expect(TokenService.keepsCredentials(from: "https://a.example/token", to: "https://A.example/t"))
        #expect(!TokenService.keepsCredentials(from: "https://a.example/token", to: "http://a.example/token"))
        #expect(!TokenService.keepsCredentials(from: "https://a.example/token", to: "https://b.example/token"))
    }

    /// An upload `Location` on another origin gets no credentials (Go's registry clients send
    /// none there either); the upload still completes.
    @Test func anUploadLocationOnAnotherOriginGetsNoCredentials() async throws {
        let elsewhere = try await TestHTTPServer.start { request in
            request.method == "PUT" ? TestHTTPResponse(status: 201) : TestHTTPResponse(status: 404)
        }
        let (registry, client) = try await Self.registryUploadingElsewhere("http://\(elsewhere.host)/upload/1?state=abc", password: "location-secret-5")
        let (blob, descriptor) = try await Self.blob(1000, seed: 53)
        _ = try await withClient(client) { try await $0.uploadBlob(repository: "a/b", descriptor: descriptor) { blob } }
        #expect(registry.requests.last?.header("Authorization") != nil)
        #expect(elsewhere.requests.count == 1)
        #expect(elsewhere.requests.first?.header("Authorization") == nil)
        #expect(elsewhere.requests.first?.query("digest") == descriptor.digest.string)
        #expect(elsewhere.requests.first?.query("state") == "abc")
        try await elsewhere.shutdown()
        try await registry.shutdown()
    }

    /// An upload `Location` on another origin that wants credentials: one line saying the
    /// registry named another address, not "check the password".
    @Test func anUploadLocationOnAnotherOriginThatWantsCredentialsSaysSo() async throws {
        let elsewhere = try await TestHTTPServer.start { _ in
            TestHTTPResponse(status: 401, headers: [("WWW-Authenticate", #"Basic realm="elsewhere""#)])
        }
        let (registry, client) = try await Self.registryUploadingElsewhere("http://\(elsewhere.host)/upload/2", password: "elsewhere-secret-6")
        let (blob, descriptor) = try await Self.blob(1000, seed: 55)
        try await withClient(client) { client in
            let error = await #expect(throws: RegistryError.self) {
                try await client.uploadBlob(repository: "a/b", descriptor: descriptor) { blob }
            }
            #expect("\(error!)".contains("another origin") && "\(error!)".contains("external or base URL"), "\(error!)")
            #expect(!"\(error!)".contains("elsewhere-secret-6"))
        }
        #expect(elsewhere.requests.allSatisfy { $0.header("Authorization") == nil })
        try await elsewhere.shutdown()
        try await registry.shutdown()
    }

    /// Behind a TLS proxy that does not pass `X-Forwarded-Proto`, a plain-HTTP registry names
    /// http:// upload URLs: the upload is refused with what to fix, before any byte is sent.
    @Test func aPlainHTTPUploadURLFromAnHTTPSRegistryIsRefused() async throws {
        let registry = try await TestRegistry.start()
        let ingress = try await TestIngress.start(upstream: registry, forwardedProto: false)
        var configuration = RegistryConfiguration()
        configuration.caFile = ingress.caFile
        let client = try RegistryClient(host: ingress.host, configuration: configuration)
        let (blob, descriptor) = try await Self.blob(1000, seed: 54)
        try await withClient(client) { client in
            let error = await #expect(throws: RegistryError.self) {
                try await client.uploadBlob(repository: "downgrade/x", descriptor: descriptor) { blob }
            }
            #expect("\(error!)".contains("plain-HTTP URL") && "\(error!)".contains("X-Forwarded-Proto"), "\(error!)")
        }
        #expect(!ingress.requests.contains { $0.hasPrefix("PUT") || $0.hasPrefix("PATCH") }, "\(ingress.requests)")
    }

    /// A registry that answers a manifest HEAD with 405 (or 501, which is not retried) is asked
    /// with GET, and after the first such answer with GET only; a missing tag is still nil.
    @Test(arguments: [405, 501])
    func aRegistryWithoutManifestHEADIsAskedWithGET(status: Int) async throws {
        let registry = try await TestRegistry.start(tls: true)
        let seeder = try makeClient(registry)
        let image = try await withClient(seeder) {
            try await ImageSeeder.pushImage($0, repository: "nohead/app", tag: "v1", layerSizes: [100])
        }
        let ingress = try await TestIngress.start(upstream: registry, manifestHeadStatus: status)
        var configuration = RegistryConfiguration()
        configuration.caFile = ingress.caFile
        let client = try RegistryClient(host: ingress.host, configuration: configuration)
        let found = try await withClient(client) { client in
            [try await client.manifestDescriptor(repository: "nohead/app", reference: "v1"),
             try await client.manifestDescriptor(repository: "nohead/app", reference: "v2"),
             try await client.manifestDescriptor(repository: "nohead/app", reference: "v1")]
        }
        #expect(found.map { $0?.digest } == [image.manifestDigest, nil, image.manifestDigest])
        let heads = ingress.requests.filter { $0.hasPrefix("HEAD") && $0.contains("/manifests/") }
        #expect(heads.count == 1 && heads[0].split(separator: " ")[2] == "\(status)", "\(ingress.requests)")
    }

    /// A mirror that announces a wrong `Docker-Content-Digest` for a tag: the bytes' own digest
    /// is used (Go's clients do not check the header); by digest the bytes must match the reference.
    @Test func aWrongDigestHeaderForATagIsNotFatal() async throws {
        let manifest = Array(#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:\#(String(repeating: "a", count: 64))","size":2},"layers":[]}"#.utf8)
        let wrong = "sha256:" + String(repeating: "b", count: 64)
        let server = try await TestHTTPServer.start { _ in
            TestHTTPResponse(status: 200, headers: [("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
                                                    ("Docker-Content-Digest", wrong)], body: manifest)
        }
        let client = try RegistryClient(host: server.host, configuration: { var c = RegistryConfiguration(); c.insecure = true; return c }())
        try await withClient(client) { client in
            let fetched = try await client.manifest(repository: "m/app", reference: "v1")
            #expect(fetched.digest == SHA256.digest(of: manifest))
            await #expect(throws: RegistryError.self) { _ = try await client.manifest(repository: "m/app", reference: wrong) }
        }
        try await server.shutdown()
    }
}
