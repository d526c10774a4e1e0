import Foundation
import OCI
import Registry
import Testing
import TestSupport

/// Authentication and TLS against real registries: htpasswd Basic over TLS, and distribution's
/// token auth with the test token issuer.
@Suite struct AuthAndTLSTests {
    @Test func basicAuthOverTLSRoundTrip() async throws {
        let registry = try await TestRegistry.start(tls: true, users: ["rw": "pw-basic-1"])
        let client = try makeClient(registry, user: "rw", password: "pw-basic-1")
        try await withClient(client) { client in
            try await client.ping()
            let image = try await ImageSeeder.pushImage(client, repository: "system/deckhouse", tag: "v1.0.0", layerSizes: [1000, 70_000])
            let fetched = try await client.manifest(repository: "system/deckhouse", reference: "v1.0.0")
            #expect(fetched.bytes == image.manifestBytes)
            #expect(fetched.digest == image.manifestDigest)
            let head = try await client.manifestDescriptor(repository: "system/deckhouse", reference: image.manifestDigest.string)
            #expect(head?.digest == image.manifestDigest)
            #expect(head?.size == Int64(image.manifestBytes.count))
            #expect(try await download(client, repository: "system/deckhouse", descriptor: image.layers[1]) == 70_000)
        }
    }

    @Test func wrongPasswordIsOneClearErrorWithoutTheSecret() async throws {
        let registry = try await TestRegistry.start(tls: true, users: ["rw": "right-password"])
        let client = try makeClient(registry, user: "rw", password: "wrong-password-xyz")
        try await withClient(client) { client in
            let error = await #expect(throws: RegistryError.self) { try await client.ping() }
            let text = "\(error!)"
            #expect(text.contains("rejected the credentials of user 'rw'"))
            #expect(text.contains("wrong username or password"))
            #expect(!text.contains("wrong-password-xyz"))
        }
        let anonymous = try makeClient(registry)
        try await withClient(anonymous) { client in
            let error = await #expect(throws: RegistryError.self) { try await client.tags(repository: "a/b") }
            #expect("\(error!)".contains("--registry-login"))
        }
    }

    @Test func untrustedCertificateNamesTheCAOption() async throws {
        let registry = try await TestRegistry.start(tls: true)
        let client = try makeClient(registry) { $0.caFile = nil }
        try await withClient(client) { client in
            let error = await #expect(throws: RegistryError.self) { try await client.ping() }
            guard case .untrustedCertificate = error else { Issue.record("got \(String(describing: error))"); return }
            #expect("\(error!)".contains("--ca-file"))
        }
        // A CA that did not sign the registry's certificate is no better.
        let other = try await TestRegistry.start(tls: true)
        let wrongCA = try makeClient(registry) { $0.caFile = other.caFile }
        try await withClient(wrongCA) { client in
            let error = await #expect(throws: RegistryError.self) { try await client.ping() }
            guard case .untrustedCertificate = error else { Issue.record("got \(String(describing: error))"); return }
        }
        let skipVerify = try makeClient(registry) { $0.caFile = nil; $0.tlsSkipVerify = true }
        try await withClient(skipVerify) { try await $0.ping() }
    }

    @Test func unreadableCAFileIsBadInput() async throws {
        var configuration = RegistryConfiguration()
        configuration.caFile = "/nonexistent/ca.pem"
        let error = #expect(throws: RegistryError.self) { _ = try RegistryClient(host: "127.0.0.1:1", configuration: configuration) }
        #expect(error?.isUsageError == true)
        #expect("\(error!)".contains("/nonexistent/ca.pem"))
    }

    @Test func plainHTTPAndTLSMismatchesSayWhatToPass() async throws {
        let tls = try await TestRegistry.start(tls: true)
        let plainToTLS = try makeClient(tls) { $0.insecure = true }
        try await withClient(plainToTLS) { client in
            let error = await #expect(throws: RegistryError.self) { try await client.ping() }
            #expect("\(error!)".contains("drop --insecure"))
        }
        let plain = try await TestRegistry.start()
        let tlsToPlain = try makeClient(plain) { $0.insecure = false }
        try await withClient(tlsToPlain) { client in
            let error = await #expect(throws: RegistryError.self) { try await client.ping() }
            #expect("\(error!)".contains("--insecure"))
        }
    }

    @Test func unreachableHostsFailFastAndClearly() async throws {
        let refused = try RegistryClient(host: "127.0.0.1:1", configuration: {
            var c = RegistryConfiguration(); c.insecure = true; c.maxAttempts = 2; c.initialBackoff = .milliseconds(10); return c
        }())
        try await withClient(refused) { client in
            let error = await #expect(throws: RegistryError.self) { try await client.ping() }
            #expect("\(error!)".contains("connection refused"))
        }
        let unknown = try RegistryClient(host: "registry.nonexistent.invalid", configuration: RegistryConfiguration())
        try await withClient(unknown) { client in
            let error = await #expect(throws: RegistryError.self) { try await client.ping() }
            #expect("\(error!)".contains("does not resolve"))
        }
    }

    @Test func bearerTokenFlowEndToEnd() async throws {
        let issuer = try await TokenIssuer.start(users: ["rw": "token-pass-1"])
        let registry = try await TestRegistry.start(tls: true, token: issuer)
        let client = try makeClient(registry, user: "rw", password: "token-pass-1")
        try await withClient(client) { client in
            try await client.ping()
            let image = try await ImageSeeder.pushImage(client, repository: "system/deckhouse", tag: "v1", layerSizes: [5000, 6000])
            for _ in 0..<5 {
                _ = try await client.manifest(repository: "system/deckhouse", reference: "v1")
            }
            #expect(try await download(client, repository: "system/deckhouse", descriptor: image.layers[0]) == 5000)
            #expect(try await client.tags(repository: "system/deckhouse") == ["v1"])
        }
        // Tokens are cached per scope: a handful for ping, push and pull, not one per request.
        #expect(issuer.tokensIssued <= 4, "issued \(issuer.tokensIssued) tokens")
        #expect(issuer.requestedScopes.contains { $0.contains("repository:system/deckhouse:pull,push") })
    }

    @Test func bearerWithAccessTokenFieldAndShortExpiry() async throws {
        let issuer = try await TokenIssuer.start(users: ["u": "p-2"], tokenField: .accessToken, expiresIn: 1)
        let registry = try await TestRegistry.start(token: issuer)
        let client = try makeClient(registry, user: "u", password: "p-2")
        try await withClient(client) { client in
            _ = try await ImageSeeder.pushImage(client, repository: "r", tag: "t", layerSizes: [10])
            let before = issuer.tokensIssued
            try await Task.sleep(for: .milliseconds(1500))
            _ = try await client.manifest(repository: "r", reference: "t")
            #expect(issuer.tokensIssued > before, "an expired token is refreshed")
        }
    }

    @Test func bearerWrongPasswordAndAnonymous() async throws {
        let issuer = try await TokenIssuer.start(users: ["rw": "good"], anonymousPull: true)
        let registry = try await TestRegistry.start(tls: true, token: issuer)
        let seeder = try makeClient(registry, user: "rw", password: "good")
        try await withClient(seeder) { _ = try await ImageSeeder.pushImage($0, repository: "pub/img", tag: "v1", layerSizes: [100]) }

        let wrong = try makeClient(registry, user: "rw", password: "bad-secret-77")
        try await withClient(wrong) { client in
            let error = await #expect(throws: RegistryError.self) { _ = try await client.manifest(repository: "pub/img", reference: "v1") }
            #expect("\(error!)".contains("user 'rw'"))
            #expect(!"\(error!)".contains("bad-secret-77"))
        }
        let anonymous = try makeClient(registry)
        try await withClient(anonymous) { client in
            // Anonymous tokens: pulling works, pushing is refused with a clear error.
            let fetched = try await client.manifest(repository: "pub/img", reference: "v1")
            #expect(fetched.mediaType == .ociManifest)
            let error = await #expect(throws: RegistryError.self) {
                try await client.putManifest(repository: "pub/img", reference: "v2", bytes: fetched.bytes, mediaType: fetched.mediaType)
            }
            #expect(error != nil)
        }
    }

    @Test func dockerConfigAuthsAndCredentialHelper() async throws {
        let dir = try TestRegistry.temporaryDirectory("dkp-docker-config")
        let auth = Data("cfg-user:cfg-pass".utf8).base64EncodedString()
        let config = #"{"auths":{"https://one.example:5000":{"auth":"\#(auth)"}},"credHelpers":{"two.example":"dkptest"}}"#
        try config.write(to: dir.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        let helper = dir.appendingPathComponent("docker-credential-dkptest")
        try "#!/bin/sh\nread host\n[ \"$host\" = two.example ] && echo '{\"Username\":\"helper-user\",\"Secret\":\"helper-secret\"}' && exit 0\necho 'credentials not found' >&2; exit 1\n"
            .write(to: helper, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: helper.path)
        setenv("PATH", dir.path + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"), 1)

        let docker = DockerConfig(path: dir.appendingPathComponent("config.json").path)
        #expect(try docker.credential(for: "one.example:5000") == Credential(username: "cfg-user", password: "cfg-pass"))
        #expect(try docker.credential(for: "two.example") == Credential(username: "helper-user", password: "helper-secret"))
        #expect(try docker.credential(for: "three.example") == nil)
        #expect(try DockerConfig(path: dir.appendingPathComponent("missing.json").path).credential(for: "x") == nil)
        try "{not json".write(to: dir.appendingPathComponent("bad.json"), atomically: true, encoding: .utf8)
        #expect(throws: RegistryError.self) { try DockerConfig(path: dir.appendingPathComponent("bad.json").path).credential(for: "x") }
    }
}
