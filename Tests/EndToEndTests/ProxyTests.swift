import Foundation
import OCI
import Registry
import Testing
import TestSupport

/// The operator's network (issue 10): every request goes through the proxy the environment or
/// `--proxy` names (a real tinyproxy, with BasicAuth), `NO_PROXY` sends hosts direct, the
/// Kubernetes API follows `proxy-url`, and the system trust follows `SSL_CERT_FILE`/`SSL_CERT_DIR`.
/// The proxy's own log is the proof that requests went through it.
@Suite struct ProxyTests {
    static let proxyUser = "mirror-user"
    static let proxyPassword = "pr0xy-S3cret-41"

    /// A TLS registry seeded with the synthetic edition (its CA in `registry.caFile`).
    static func tlsEdition() async throws -> TestRegistry {
        let registry = try await TestRegistry.start(tls: true)
        var configuration = RegistryConfiguration()
        configuration.caFile = registry.caFile
        var options = EditionSeeder.Options()
        options.versions = ["v1.68.4", "v1.69.3"]
        options.channels = ["stable": "v1.68.4", "early-access": "v1.69.3"]
        _ = try await RegistryClient.with(host: registry.host, configuration: configuration) { client in
            try await EditionSeeder(client: client, options: options).seed()
        }
        return registry
    }

    static func connects(_ proxy: TestProxy, to host: String) -> Int {
        proxy.requests.filter { $0 == "CONNECT \(host)" }.count
    }

    @Test func pullAndPushGoThroughAnAuthenticatedProxy() async throws {
        let source = try await Self.tlsEdition()
        let target = try await TestRegistry.start(tls: true, users: ["rw": "target-pass-9"])
        let proxy = try await TestProxy.start(user: "\(Self.proxyUser):\(Self.proxyPassword)")
        let closed = try await SecurityTests.closedPort()
        let bundle = try TestRegistry.temporaryDirectory("dkp-bundle")

        // HTTPS_PROXY (uppercase only) carries the pull, credentials in the URL.
        let pull = try await CLITests.run(["pull", bundle.path, "--source", "\(source.host)/deckhouse/ee", "--ca-file", source.caFile!,
                                           "--deckhouse-tag", "v1.69.3", "--no-security-db", "--progress", "none"],
                                          environment: ["HTTPS_PROXY": proxy.url])
        #expect(pull.status == 0, "\(pull.stderrString)\n\(proxy.log)")
        #expect(Self.connects(proxy, to: source.host) >= 1, "\(proxy.requests)")
        #expect(proxy.requests.allSatisfy { $0 == "CONNECT \(source.host)" }, "\(proxy.requests)")
        #expect(FileManager.default.fileExists(atPath: bundle.appendingPathComponent("platform.tar").path))

        // --proxy overrides a variable that points at nothing; the push goes through the proxy.
        let before = proxy.requests.count
        let push = try await CLITests.run(["push", bundle.path, "\(target.host)/system/deckhouse", "--ca-file", target.caFile!,
                                           "-u", "rw", "-p", "target-pass-9", "--proxy", proxy.url, "--progress", "none"],
                                          environment: ["HTTPS_PROXY": "http://127.0.0.1:\(closed)", "https_proxy": "http://127.0.0.1:\(closed)"])
        #expect(push.status == 0, "\(push.stderrString)\n\(proxy.log)")
        #expect(proxy.requests.dropFirst(before).contains("CONNECT \(target.host)"))
        for output in [pull, push] {
            #expect(!(output.stdoutString + output.stderrString).contains(Self.proxyPassword))
        }
    }

    @Test func plainHTTPRegistryThroughTheLowercaseVariable() async throws {
        let registry = try await TestRegistry.start()
        try await ImageSeeder.seedSmallImage(registry: registry, repository: "demo/app", tag: "v1")
        let proxy = try await TestProxy.start()
        let closed = try await SecurityTests.closedPort()
        // http_proxy wins over HTTP_PROXY (which points at a closed port), as curl reads them.
        let tags = try await CLITests.run(["tags", "\(registry.host)/demo/app", "--insecure"],
                                          environment: ["http_proxy": proxy.url, "HTTP_PROXY": "http://127.0.0.1:\(closed)"])
        #expect(tags.status == 0, "\(tags.stderrString)")
        #expect(tags.stdoutString.contains("v1"))
        #expect(Self.connects(proxy, to: registry.host) >= 1, "\(proxy.requests)")
    }

    @Test func aRefusedProxyIsOneClearLineWithoutSecrets() async throws {
        let registry = try await TestRegistry.start(tls: true)
        let proxy = try await TestProxy.start(user: "\(Self.proxyUser):\(Self.proxyPassword)")
        let wrong = "http://\(Self.proxyUser):not-\(Self.proxyPassword)@127.0.0.1:\(proxy.port)"
        let output = try await CLITests.run(["tags", "\(registry.host)/demo/app", "--ca-file", registry.caFile!, "--retries", "1"],
                                            environment: ["HTTPS_PROXY": wrong])
        #expect(output.status == 1)
        let stderr = output.stderrString
        // tinyproxy answers a CONNECT with wrong credentials with 401 (not 407): the message covers both.
        #expect(stderr.contains("the proxy http://m***@127.0.0.1:\(proxy.port) refused to open a tunnel"), "\(stderr)")
        #expect(stderr.contains("check the credentials in the proxy URL"), "\(stderr)")
        #expect(stderr.split(separator: "\n").map { $0.prefix(6) } == ["error:", "hint: "], "what failed, what to do: \(stderr)")
        #expect(!stderr.contains(Self.proxyPassword) && !(output.stdoutString).contains(Self.proxyPassword))

        let closed = try await SecurityTests.closedPort()
        let unreachable = try await CLITests.run(["tags", "\(registry.host)/demo/app", "--ca-file", registry.caFile!, "--retries", "1"],
                                                 environment: ["HTTPS_PROXY": "http://127.0.0.1:\(closed)"])
        #expect(unreachable.status == 1)
        #expect(unreachable.stderrString.contains("cannot reach the proxy http://127.0.0.1:\(closed)"), "\(unreachable.stderrString)")
        #expect(unreachable.stderrString.contains("NO_PROXY"))

        let bad = try await CLITests.run(["tags", "\(registry.host)/demo/app", "--proxy", "https://u:\(Self.proxyPassword)@proxy:3128"])
        #expect(bad.status == 2)
        #expect(bad.stderrString.contains("--proxy is not a usable proxy URL"), "\(bad.stderrString)")
        #expect(!bad.stderrString.contains(Self.proxyPassword))
    }

    @Test func noProxySendsNamedHostsDirect() async throws {
        let registry = try await TestRegistry.start()
        try await ImageSeeder.seedSmallImage(registry: registry, repository: "demo/app", tag: "v1")
        let closed = try await SecurityTests.closedPort()
        for noProxy in ["127.0.0.1", "127.0.0.0/8", "127.0.0.1:\(registry.port)", "*"] {
            let output = try await CLITests.run(["tags", "\(registry.host)/demo/app", "--insecure", "--retries", "1"],
                                                environment: ["HTTP_PROXY": "http://127.0.0.1:\(closed)", "NO_PROXY": noProxy])
            #expect(output.status == 0, "NO_PROXY=\(noProxy): \(output.stderrString)")
        }
        // A NO_PROXY entry for another port does not match: the dead proxy is tried, and named.
        let other = try await CLITests.run(["tags", "\(registry.host)/demo/app", "--insecure", "--retries", "1"],
                                           environment: ["HTTP_PROXY": "http://127.0.0.1:\(closed)", "NO_PROXY": "127.0.0.1:1"])
        #expect(other.status == 1)
        #expect(other.stderrString.contains("proxy"), "\(other.stderrString)")
    }

    @Test func theKubernetesAPIFollowsProxyURLAndTheVariables() async throws {
        let api = try await FakeKubernetes.start(objects: FakeClusterObjects(), token: "kube-token-5")
        let proxy = try await TestProxy.start(user: "\(Self.proxyUser):\(Self.proxyPassword)")
        let home = try TestRegistry.temporaryDirectory("dkp-kube")
        let apiHost = String(api.url.dropFirst("http://".count))
        func kubeconfig(_ name: String, proxyURL: String?) throws -> String {
            let file = home.appendingPathComponent(name)
            try """
            apiVersion: v1
            kind: Config
            current-context: test
            clusters: [{name: c, cluster: {server: "\(api.url)"\(proxyURL.map { ", proxy-url: \"\($0)\"" } ?? "")}}]
            users: [{name: u, user: {token: kube-token-5}}]
            contexts: [{name: test, context: {cluster: c, user: u}}]
            """.write(to: file, atomically: true, encoding: .utf8)
            return file.path
        }
        // detect reads the deployment through the API; the registry image read fails later (example.com
        // is not reachable from here), so only the API's path through the proxy is checked.
        let viaKubeconfig = try await CLITests.run(["detect", "--kubeconfig", try kubeconfig("with-proxy-url", proxyURL: proxy.url)])
        #expect(Self.connects(proxy, to: apiHost) >= 1, "\(viaKubeconfig.stderrString)\n\(proxy.requests)")
        #expect(!(viaKubeconfig.stdoutString + viaKubeconfig.stderrString).contains(Self.proxyPassword))

        let before = proxy.requests.count
        _ = try await CLITests.run(["detect", "--kubeconfig", try kubeconfig("plain", proxyURL: nil)],
                                   environment: ["HTTP_PROXY": proxy.url])
        #expect(proxy.requests.dropFirst(before).contains("CONNECT \(apiHost)"), "\(proxy.requests)")

        let broken = try await CLITests.run(["detect", "--kubeconfig", try kubeconfig("broken", proxyURL: "ftp://proxy:21")])
        #expect(broken.status == 2)
        #expect(broken.stderrString.contains("proxy-url is not a usable proxy URL"), "\(broken.stderrString)")
    }

    @Test func systemTrustFollowsSSLCertFileAndDir() async throws {
        let registry = try await TestRegistry.start(tls: true)
        try await ImageSeeder.seedSmallImage(registry: registry, repository: "demo/app", tag: "v1", caFile: registry.caFile)
        let command = ["tags", "\(registry.host)/demo/app", "--retries", "1"]

        let untrusted = try await CLITests.run(command)
        #expect(untrusted.status == 1)
        #expect(untrusted.stderrString.contains("certificate"), "\(untrusted.stderrString)")

        let viaFile = try await CLITests.run(command, environment: ["SSL_CERT_FILE": registry.caFile!])
        #expect(viaFile.status == 0, "\(viaFile.stderrString)")

        let directory = try TestRegistry.temporaryDirectory("dkp-certs")
        try FileManager.default.copyItem(atPath: registry.caFile!, toPath: directory.appendingPathComponent("registry-ca.pem").path)
        let viaDir = try await CLITests.run(command, environment: ["SSL_CERT_DIR": "/nonexistent:\(directory.path)"])
        #expect(viaDir.status == 0, "\(viaDir.stderrString)")

        // SSL_CERT_FILE replaces the system file: a file with another CA loses the registry's trust,
        // and --ca-file adds it back.
        let otherCA = try await TestRegistry.start(tls: true)
        let replaced = try await CLITests.run(command, environment: ["SSL_CERT_FILE": otherCA.caFile!])
        #expect(replaced.status == 1)
        let added = try await CLITests.run(command + ["--ca-file", registry.caFile!], environment: ["SSL_CERT_FILE": otherCA.caFile!])
        #expect(added.status == 0, "\(added.stderrString)")

        let missing = try await CLITests.run(command, environment: ["SSL_CERT_FILE": "/nonexistent/ca.pem"])
        #expect(missing.status == 2)
        #expect(missing.stderrString.contains("SSL_CERT_FILE names /nonexistent/ca.pem"), "\(missing.stderrString)")
    }
}
