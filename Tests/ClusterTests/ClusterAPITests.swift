import Foundation
import Testing
import TestSupport

@testable import Cluster

@Suite("Kubernetes API client against a fake API server")
struct ClusterAPITests {
    func config(_ fake: FakeKubernetes, user: [String]) throws -> Kubeconfig {
        try Kubeconfig(yaml: clusterKubeconfig(server: fake.url, user: user), path: "/tmp/kubeconfig-test")
    }

    /// The legacy oidc auth-provider (dex-k8s-authenticator's kubeconfig): a valid id-token is
    /// the bearer; an expired one is not refreshed here (Dex rotates refresh tokens, and the
    /// kubeconfig is not written back): the error says to let kubectl refresh it. No token or
    /// secret shows.
    @Test func anOIDCAuthProvidersIDTokenIsUsedWhileValid() async throws {
        func jwt(expiresIn seconds: Int) -> String {
            func part(_ json: String) -> String {
                Data(json.utf8).base64EncodedString().replacingOccurrences(of: "=", with: "")
                    .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            }
            return part(#"{"alg":"RS256"}"#) + "." + part(#"{"sub":"op","exp":\#(Int(Date().timeIntervalSince1970) + seconds)}"#) + ".c2ln"
        }
        let valid = jwt(expiresIn: 3600), expired = jwt(expiresIn: -60)
        func config(_ fake: FakeKubernetes, idToken: String) throws -> Kubeconfig {
            try Kubeconfig(yaml: clusterKubeconfig(server: fake.url, user: [
                "auth-provider:", "  name: oidc", "  config:", "    client-id: kubeconfig-generator", "    client-secret: oidc-secret-1",
                "    id-token: \(idToken)", "    idp-issuer-url: https://dex.example.com/", "    refresh-token: rt-123",
            ]), path: "/tmp/kubeconfig-oidc")
        }
        let fake = try await FakeKubernetes.start(token: valid)
        let deployment = try await KubeClient.with(kubeconfig: try await config(fake, idToken: valid).resolvingCredentials()) { try await $0.deckhouseDeployment() }
        #expect(deployment.name == "deckhouse")
        let error = await #expect(throws: ClusterError.self) { _ = try await config(fake, idToken: expired).resolvingCredentials() }
        let message = error.map { "\($0)" } ?? ""
        #expect(message.contains("expired at") && message.contains("run any kubectl command with this kubeconfig"), "\(message)")
        #expect(error?.isUsageError == false)
        for secret in ["oidc-secret-1", "rt-123", expired] { #expect(!message.contains(secret)) }
        try await fake.shutdown()
    }

    /// The token an exec plugin prints is the one the API server gets.
    @Test func anExecPluginsTokenReachesTheAPIServer() async throws {
        let fake = try await FakeKubernetes.start(token: "exec-api-token-5")
        let scratch = try ClusterScratch()
        let plugin = try scratch.write("plugin", "#!/bin/sh\nprintf '{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\"kind\":\"ExecCredential\",\"status\":{\"token\":\"exec-api-token-5\"}}'\n")
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: plugin)
        let yaml = clusterKubeconfig(server: fake.url, user: ["exec:", "  apiVersion: client.authentication.k8s.io/v1beta1", "  command: \(plugin)"])
        let config = try await Kubeconfig(yaml: yaml, path: scratch.url.appendingPathComponent("config").path).resolvingCredentials()
        let deployment = try await KubeClient.with(kubeconfig: config) { try await $0.deckhouseDeployment() }
        #expect(deployment.name == "deckhouse")
        try await fake.shutdown()
    }

    /// A plugin that prints `tok-N` on its Nth run (counted in a file beside it), with the
    /// `expirationTimestamp` line `expiry(N)` gives (none when it gives nil).
    func countingPlugin(_ scratch: ClusterScratch, expiry: (Int) -> String?) throws -> (config: String, runs: @Sendable () -> Int) {
        let counter = scratch.url.appendingPathComponent("runs").path
        var cases = ""
        for run in 1...4 {
            let stamp = expiry(run).map { #","expirationTimestamp":"\#($0)""# } ?? ""
            cases += "  \(run)) printf '%s' '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{\"token\":\"tok-\(run)\"\(stamp)}}' ;;\n"
        }
        let plugin = try scratch.write("plugin", """
            #!/bin/sh
            n=$(( $(cat \(counter) 2>/dev/null || echo 0) + 1 )); echo $n > \(counter)
            case $n in
            \(cases)esac

            """)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: plugin)
        let yaml = clusterKubeconfig(server: "SERVER", user: ["exec:", "  apiVersion: client.authentication.k8s.io/v1", "  command: \(plugin)",
                                                            "  interactiveMode: Never"])
        return (yaml, { Int((try? String(contentsOfFile: counter, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0 })
    }

    /// A token the API server stops taking (revoked, or expired before the plugin said) is
    /// renewed once from the plugin, as client-go does on a 401; static ones are not.
    @Test func aRefusedExecTokenIsRenewedFromThePluginOnce() async throws {
        let fake = try await FakeKubernetes.start(token: "tok-1")
        let scratch = try ClusterScratch()
        let (yaml, runs) = try countingPlugin(scratch) { _ in nil }
        let config = try await Kubeconfig(yaml: yaml.replacingOccurrences(of: "SERVER", with: fake.url),
                                          path: scratch.url.appendingPathComponent("config").path).resolvingCredentials()
        let client = try KubeClient(kubeconfig: config)
        do {
            _ = try await client.deckhouseDeployment()
            #expect(runs() == 1)
            fake.accept(token: "tok-2")
            _ = try await client.deckhouseDeployment()
            #expect(runs() == 2, "one renewal after the 401")
            _ = try await client.deckhouseDeployment()
            #expect(runs() == 2, "the renewed token is kept")
            // The plugin's next token is refused too: one more run, then the 401 stands.
            fake.accept(token: "tok-9")
            let error = await #expect(throws: ClusterError.self) { _ = try await client.deckhouseDeployment() }
            #expect(runs() == 3)
            if case .unauthorized? = error {} else { Issue.record("expected a 401, got \(String(describing: error))") }
            #expect(!"\(String(describing: error))".contains("tok-"))
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
        let sent = fake.requests.map { $0.header("Authorization") ?? "" }
        #expect(sent == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2", "Bearer tok-2", "Bearer tok-2", "Bearer tok-3"], "\(sent)")

        // A static token gets no second try.
        fake.accept(token: "other")
        let staticClient = try KubeClient(kubeconfig: try self.config(fake, user: ["token: static-1"]))
        let before = fake.requests.count
        await #expect(throws: ClusterError.self) { _ = try await staticClient.deckhouseDeployment() }
        await staticClient.shutdown()
        #expect(fake.requests.count == before + 1)
        try await fake.shutdown()
    }

    /// Once the plugin's `expirationTimestamp` has passed, it runs again before the next request.
    @Test func anExpiredExecTokenIsRenewedBeforeItIsSent() async throws {
        let fake = try await FakeKubernetes.start(token: "tok-2")
        let scratch = try ClusterScratch()
        let (yaml, runs) = try countingPlugin(scratch) { $0 == 1 ? "2020-01-01T00:00:00Z" : "2099-01-01T00:00:00.250000000Z" }
        let config = try await Kubeconfig(yaml: yaml.replacingOccurrences(of: "SERVER", with: fake.url),
                                          path: scratch.url.appendingPathComponent("config").path).resolvingCredentials()
        #expect(config.credentials.expires == ISO8601DateFormatter().date(from: "2020-01-01T00:00:00Z"))
        let client = try KubeClient(kubeconfig: config)
        do {
            for _ in 0..<3 { _ = try await client.deckhouseDeployment() }
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
        #expect(runs() == 2)
        #expect(fake.requests.map { $0.header("Authorization") ?? "" } == Array(repeating: "Bearer tok-2", count: 3))
        try await fake.shutdown()
    }

    @Test func readsTheThreeObjectsWithABearerToken() async throws {
        var objects = FakeClusterObjects()
        objects.deckhouseImage = "registry.example.com/system/deckhouse:v1.69.3"
        objects.registrySecret = ["address": "registry.example.com", "path": "/system/deckhouse", "scheme": "https", "ca": "PEM"]
        objects.moduleConfigEdition = "EE"
        let fake = try await FakeKubernetes.start(objects: objects, token: "good-token")
        let client = try KubeClient(kubeconfig: try config(fake, user: ["token: good-token"]))
        do {
            let deployment = try await client.deckhouseDeployment()
            #expect(deployment.name == "deckhouse")
            #expect(deployment.containers.map(\.name) == ["deckhouse", "kube-rbac-proxy"])
            #expect(deployment.containers.first?.image == "registry.example.com/system/deckhouse:v1.69.3")
            let secret = try await client.deckhouseRegistrySecret()
            #expect(secret.string("address") == "registry.example.com")
            #expect(secret.string("ca") == "PEM")
            #expect(secret.description == "Secret(deckhouse-registry, keys: address, ca, path, scheme)")
            let moduleConfig = try await client.deckhouseModuleConfig()
            #expect(moduleConfig.licenseEdition == "EE")
            #expect(moduleConfig.releaseChannel == "Stable")
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
        let paths = fake.requests.map(\.path)
        #expect(paths == [FakeClusterObjects.deploymentPath, FakeClusterObjects.secretPath, FakeClusterObjects.moduleConfigPath])
        #expect(fake.requests.allSatisfy { $0.header("Authorization") == "Bearer good-token" && $0.header("Accept") == "application/json" })
        try await fake.shutdown()
    }

    @Test func basicAuthUser() async throws {
        let fake = try await FakeKubernetes.start(token: nil, basic: ("admin", "hunter2"))
        let deployment = try await KubeClient.with(kubeconfig: try config(fake, user: ["username: admin", "password: hunter2"])) {
            try await $0.deckhouseDeployment()
        }
        #expect(deployment.containers.first?.name == "deckhouse")
        try await fake.shutdown()
    }

    @Test func wrongTokenIsAClearErrorWithoutTheToken() async throws {
        let fake = try await FakeKubernetes.start(token: "right-token")
        let error = await #expect(throws: ClusterError.self) {
            _ = try await ClusterDetector.detect(kubeconfig: try config(fake, user: ["token: wrong-token-0123456789"]), options: clusterTestOptions())
        }
        let text = error?.description ?? ""
        #expect(text == "the API server \(fake.url) refused the credentials of kubeconfig user 'dkp-test-user' (401 Unauthorized); the token or client certificate in /tmp/kubeconfig-test is wrong or expired: get a fresh kubeconfig")
        #expect(!text.contains("wrong-token"))
        #expect(error?.isUsageError == false)
        try await fake.shutdown()
    }

    @Test func noDeploymentMeansNotADeckhouseCluster() async throws {
        var objects = FakeClusterObjects()
        objects.deckhouseImage = nil
        let fake = try await FakeKubernetes.start(objects: objects, token: "t")
        let error = await #expect(throws: ClusterError.self) {
            _ = try await ClusterDetector.detect(kubeconfig: try config(fake, user: ["token: t"]), options: clusterTestOptions())
        }
        #expect(error?.description == "deployment d8-system/deckhouse not found: is this a Deckhouse cluster? (check the kubeconfig's context)")
        try await fake.shutdown()
    }

    @Test func forbiddenNamesTheObjectAndTheUser() async throws {
        var objects = FakeClusterObjects()
        objects.forbiddenPaths = [FakeClusterObjects.deploymentPath]
        let fake = try await FakeKubernetes.start(objects: objects, token: "t")
        let error = await #expect(throws: ClusterError.self) {
            try await KubeClient.with(kubeconfig: try config(fake, user: ["token: t"])) { _ = try await $0.deckhouseDeployment() }
        }
        let text = error?.description ?? ""
        #expect(text.hasPrefix("the API server \(fake.url) does not let kubeconfig user 'dkp-test-user' read deployment d8-system/deckhouse (403 Forbidden: deployments.apps \"deckhouse\" is forbidden: User \"system:serviceaccount:default:reader\""))
        #expect(text.hasSuffix("use a kubeconfig with read access to it (e.g. the cluster admin's)"))
        try await fake.shutdown()
    }

    @Test func apiServerNotListening() async throws {
        let config = try Kubeconfig(yaml: clusterKubeconfig(server: "https://127.0.0.1:1", user: ["token: t"]), path: "/k")
        let error = await #expect(throws: ClusterError.self) {
            try await KubeClient.with(kubeconfig: config) { _ = try await $0.deckhouseDeployment() }
        }
        #expect(error?.description == "cannot reach the API server https://127.0.0.1:1: connection refused; check the server of cluster 'dkp-test-cluster' in /k and that the API server is reachable from here")
    }
}

@Suite("Kubernetes API over TLS with client certificates (openssl s_server)")
struct ClusterTLSTests {
    static func objects() -> FakeClusterObjects {
        var objects = FakeClusterObjects()
        objects.deckhouseImage = "\(clusterUnreachableRegistry)/deckhouse/ee:v1.70.1"
        objects.registrySecret = ["address": clusterUnreachableRegistry, "path": "/deckhouse/ee", "scheme": "https"]
        objects.moduleConfigEdition = "ee"
        return objects
    }

    @Test func clientCertificateAndCAData() async throws {
        let server = try await FakeKubernetesTLS.start(objects: Self.objects())
        defer { server.stop() }
        let certificates = server.certificates
        let yaml = clusterKubeconfig(server: server.url, cluster: [
            "certificate-authority-data: \(clusterBase64(try certificates.read(certificates.caFile)))",
        ], user: [
            "client-certificate-data: \(clusterBase64(try certificates.read(certificates.clientCertificateFile)))",
            "client-key-data: \(clusterBase64(try certificates.read(certificates.clientKeyFile)))",
        ])
        let config = try Kubeconfig(yaml: yaml, path: "/k")
        let info = try await ClusterDetector.detect(kubeconfig: config, options: clusterTestOptions(official: [clusterUnreachableRegistry]))
        #expect(info == ClusterInfo(tag: "v1.70.1", edition: "ee", image: "\(clusterUnreachableRegistry)/deckhouse/ee:v1.70.1",
                                    registry: "\(clusterUnreachableRegistry)/deckhouse/ee", editionSource: "registry path"))
    }

    @Test func clientCertificateAndCAFiles() async throws {
        let server = try await FakeKubernetesTLS.start(objects: Self.objects())
        defer { server.stop() }
        let certificates = server.certificates
        let scratch = try ClusterScratch()
        let path = try scratch.write("config", clusterKubeconfig(server: server.url, cluster: [
            "certificate-authority: \(certificates.caFile)",
        ], user: [
            "client-certificate: \(certificates.clientCertificateFile)",
            "client-key: \(certificates.clientKeyFile)",
        ]))
        let config = try Kubeconfig.load(path: path, environment: [:])
        let moduleConfig = try await KubeClient.with(kubeconfig: config) { try await $0.deckhouseModuleConfig() }
        #expect(moduleConfig.licenseEdition == "ee")
    }

    @Test func insecureSkipTLSVerifyStillSendsTheClientCertificate() async throws {
        let server = try await FakeKubernetesTLS.start(objects: Self.objects())
        defer { server.stop() }
        let certificates = server.certificates
        let yaml = clusterKubeconfig(server: server.url, cluster: ["insecure-skip-tls-verify: true"], user: [
            "client-certificate-data: \(clusterBase64(try certificates.read(certificates.clientCertificateFile)))",
            "client-key-data: \(clusterBase64(try certificates.read(certificates.clientKeyFile)))",
        ])
        let deployment = try await KubeClient.with(kubeconfig: try Kubeconfig(yaml: yaml, path: "/k")) { try await $0.deckhouseDeployment() }
        #expect(deployment.containers.first?.image == "\(clusterUnreachableRegistry)/deckhouse/ee:v1.70.1")
    }

    @Test func withoutAClientCertificateTheHandshakeFails() async throws {
        let server = try await FakeKubernetesTLS.start(objects: Self.objects())
        defer { server.stop() }
        let certificates = server.certificates
        let yaml = clusterKubeconfig(server: server.url, cluster: [
            "certificate-authority-data: \(clusterBase64(try certificates.read(certificates.caFile)))",
        ], user: ["token: only-a-token-42"])
        let error = await #expect(throws: ClusterError.self) {
            try await KubeClient.with(kubeconfig: try Kubeconfig(yaml: yaml, path: "/k")) { _ = try await $0.deckhouseDeployment() }
        }
        let text = error?.description ?? ""
        #expect(text.hasPrefix("cannot reach the API server \(server.url): "))
        #expect(text.contains("check the client certificate of user 'dkp-test-user' in /k (token)"))
        #expect(!text.contains("only-a-token-42"))
    }

    @Test func anUntrustedServerCertificate() async throws {
        let server = try await FakeKubernetesTLS.start(objects: Self.objects())
        defer { server.stop() }
        let certificates = server.certificates
        let yaml = clusterKubeconfig(server: server.url, cluster: [
            "certificate-authority-data: \(clusterBase64(try certificates.read(certificates.otherCAFile)))",
        ], user: [
            "client-certificate-data: \(clusterBase64(try certificates.read(certificates.clientCertificateFile)))",
            "client-key-data: \(clusterBase64(try certificates.read(certificates.clientKeyFile)))",
        ])
        let error = await #expect(throws: ClusterError.self) {
            try await KubeClient.with(kubeconfig: try Kubeconfig(yaml: yaml, path: "/k")) { _ = try await $0.deckhouseDeployment() }
        }
        #expect(error?.description == "cannot reach the API server \(server.url): its TLS certificate is not trusted; check certificate-authority-data of cluster 'dkp-test-cluster' in /k (or set insecure-skip-tls-verify: true in the cluster entry)")
    }

    @Test func aClientKeyThatIsNotAKey() async throws {
        let yaml = clusterKubeconfig(server: "https://127.0.0.1:1", user: [
            "client-certificate-data: \(clusterBase64("garbage"))", "client-key-data: \(clusterBase64("more garbage"))",
        ])
        let error = #expect(throws: ClusterError.self) { _ = try KubeClient(kubeconfig: try Kubeconfig(yaml: yaml, path: "/k")) }
        #expect(error?.description == "kubeconfig /k: the client certificate of user 'dkp-test-user' is not a PEM certificate")
        #expect(error?.isUsageError == true)
    }
}
