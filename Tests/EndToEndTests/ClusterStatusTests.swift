import Foundation
import Testing
import TestSupport

/// `dkp-mirror status` against FakeKubernetes serving recorded registry-state secrets
/// (testdata/cluster, issue 14 item 2).
@Suite struct ClusterStatusTests {
    /// A kubeconfig for the TLS fake: its CA as data, the client certificate and key as data.
    static func tlsKubeconfig(_ server: FakeKubernetesTLS) throws -> String {
        let certificates = server.certificates
        func data(_ path: String) throws -> String { Data(try certificates.read(path)).base64EncodedString() }
        let path = try TestRegistry.temporaryDirectory("dkp-kubeconfig").appendingPathComponent("config").path
        try """
            apiVersion: v1
            kind: Config
            clusters:
            - name: tls
              cluster:
                server: \(server.url)
                certificate-authority-data: \(try data(certificates.caFile))
            contexts:
            - name: tls
              context: {cluster: tls, user: admin}
            current-context: tls
            users:
            - name: admin
              user:
                client-certificate-data: \(try data(certificates.clientCertificateFile))
                client-key-data: \(try data(certificates.clientKeyFile))
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static func fake(state: String) async throws -> FakeKubernetes {
        var objects = FakeClusterObjects()
        objects.extraObjects = try ClusterFixtures.objects(state: state)
        return try await FakeKubernetes.start(objects: objects)
    }

    @Test func aSwitchInProgressOverTLSWithAClientCertificate() async throws {
        var objects = FakeClusterObjects()
        objects.extraObjects = try ClusterFixtures.objects()
        let server = try await FakeKubernetesTLS.start(objects: objects)
        defer { server.stop() }
        let config = try Self.tlsKubeconfig(server)
        let out = try await CLITests.run(["status", "--kubeconfig", config])
        #expect(out.status == 1, "\(out.stdoutString) \(out.stderrString)")
        let text = out.stdoutString
        #expect(text.hasPrefix("mode: Direct\ntarget_mode: Local\ncondition RegistryContainsRequiredImages: status False, reason Processing\n"), "\(text)")
        // The message verbatim, line by line, as the cluster wrote it.
        #expect(text.contains("\n  Mode: Default\n  master-1: 0 of 166 items processed, 166 items with errors:\n"
            + "  - source: module/control-plane-manager/control-plane-manager133\n"
            + "    image: 10.128.0.5:5001/system/deckhouse@sha256:00202db19b40930f764edab5695f450cf709d50736e012055393447b3379414a\n"), "\(text)")
        #expect(text.contains("\n    ...and more\ncondition Ready: status False, reason Processing\n"), "\(text)")
        #expect(text.hasSuffix("switch not done: mode is Direct, target_mode is Local; condition Ready is False (Processing); "
            + "condition RegistryContainsRequiredImages is False (Processing)\n"), "\(text)")

        // The finished switch, the same server: exit 0.
        try server.serve(path: ClusterFixtures.registryStatePath, body: try ClusterFixtures.text("registry-state-done.json"))
        let done = try await CLITests.run(["status", "--kubeconfig", config])
        #expect(done.status == 0, "\(done.stdoutString) \(done.stderrString)")
        #expect(done.stdoutString.contains("condition RegistryContainsRequiredImages: status True, reason Ready\n  Mode: Default\n  master-1: all 166 items are checked\n"))
        #expect(done.stdoutString.hasSuffix("condition Ready: status True\nswitch done: mode Local, Ready is True\n"), "\(done.stdoutString)")
    }

    struct StatusJSON: Decodable {
        struct Condition: Decodable { var type: String; var status: String; var reason: String; var message: String }
        var mode: String; var target_mode: String; var done: Bool; var conditions: [Condition]
    }

    @Test func jsonWithABearerTokenCarriesTheMessageExactly() async throws {
        let fake = try await Self.fake(state: "registry-state-switching.json")
        let config = try VerifyClusterListTests.kubeconfig(fake)
        let out = try await CLITests.run(["status", "--kubeconfig", config, "--json"])
        #expect(out.status == 1)
        let state = try JSONDecoder().decode(StatusJSON.self, from: Data(out.stdout))
        #expect(state.mode == "Direct" && state.target_mode == "Local" && !state.done)
        let images = try #require(state.conditions.first { $0.type == "RegistryContainsRequiredImages" })
        #expect(images.message.hasPrefix("Mode: Default\nmaster-1: 0 of 166 items processed, 166 items with errors:\n- source: "))
        #expect(images.message.hasSuffix("use GET for details)\n\n  ...and more"), "\(images.message)")
        #expect(fake.requests.allSatisfy { $0.header("Authorization") == "Bearer fake-token-7f3a" })
        try await fake.shutdown()
    }

    @Test func waitSeesTheSwitchFinishAndPrintsOnlyChanges() async throws {
        let fake = try await Self.fake(state: "registry-state-switching.json")
        let config = try VerifyClusterListTests.kubeconfig(fake)
        let checked = try ClusterFixtures.text("registry-state-images-checked.json")
        let done = try ClusterFixtures.text("registry-state-done.json")
        // The cluster moves on while status waits: images checked after two reads of the state, done two reads later.
        @Sendable func reads() -> Int { fake.requests.filter { $0.path == ClusterFixtures.registryStatePath }.count }
        @Sendable func waitForReads(_ count: Int) async throws {
            while reads() < count { try await Task.sleep(for: .milliseconds(20)) }
        }
        let mover = Task {
            try await waitForReads(2)
            fake.update { $0.extraObjects[ClusterFixtures.registryStatePath] = checked }
            try await waitForReads(reads() + 2)
            fake.update { $0.extraObjects[ClusterFixtures.registryStatePath] = done }
        }
        let out = try await CLITests.run(["status", "--kubeconfig", config, "--wait", "--wait-timeout", "30s", "--poll-interval", "100ms"])
        mover.cancel()
        #expect(out.status == 0, "\(out.stdoutString) \(out.stderrString)")
        let text = out.stdoutString
        #expect(text.components(separatedBy: "mode: Direct\n").count == 2, "printed once: \(text)")
        #expect(text.components(separatedBy: " changed:\n").count == 3, "two changes: \(text)")
        #expect(text.contains(" changed:\ncondition RegistryContainsRequiredImages: status True, reason Ready\n  Mode: Default\n  master-1: all 166 items are checked\nswitch not done: "), "\(text)")
        #expect(text.hasSuffix(" changed:\nmode: Local\ncondition Ready: status True\nswitch done: mode Local, Ready is True\n"), "\(text)")
        #expect(fake.requests.count > 4, "polled")

        // --json with --wait: one object a line per change.
        fake.update { $0.extraObjects[ClusterFixtures.registryStatePath] = checked }
        let json = try await CLITests.run(["status", "--kubeconfig", config, "--wait", "--wait-timeout", "1s", "--poll-interval", "100ms", "--json"])
        #expect(json.status == 1)
        let lines = json.stdoutString.split(separator: "\n")
        #expect(lines.count == 1, "no change, one line: \(json.stdoutString)")
        #expect(try JSONDecoder().decode(StatusJSON.self, from: Data(lines[0].utf8)).done == false)
        #expect(json.stderrString.contains("gave up after --wait-timeout 1s, still waiting for the switch to finish: mode is Direct, target_mode is Local; condition Ready is False (Processing)"), "\(json.stderrString)")
        try await fake.shutdown()
    }

    /// `status --wait` with an exec plugin (kubelogin's kind): when the token it gave expires,
    /// the plugin runs again; when that run fails, waiting stops at once with the plugin's
    /// failure rather than running it again at every poll.
    @Test func waitingRenewsAnExpiringExecTokenAndStopsWhenThePluginFails() async throws {
        let fake = try await Self.fake(state: "registry-state-switching.json")
        fake.accept(token: "exec-tok-1")
        let directory = try TestRegistry.temporaryDirectory("dkp-kubeconfig-exec")
        let counter = directory.appendingPathComponent("runs").path
        let plugin = directory.appendingPathComponent("login.sh").path
        // Run 1: a token that expires in 4 s (time for the first polls on a loaded machine). Run 2: the login fails.
        try """
            #!/bin/sh
            n=$(( $(cat \(counter) 2>/dev/null || echo 0) + 1 )); echo $n > \(counter)
            if [ $n -gt 1 ]; then echo "plugin-login-needed run $n" >&2; exit 1; fi
            expires=$(date -u -d @$(( $(date +%s) + 4 )) +%Y-%m-%dT%H:%M:%SZ)
            printf '{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"exec-tok-1","expirationTimestamp":"%s"}}' "$expires"

            """.write(toFile: plugin, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: plugin)
        let config = directory.appendingPathComponent("config").path
        try """
            apiVersion: v1
            kind: Config
            clusters:
            - {name: fake, cluster: {server: \(fake.url)}}
            contexts:
            - {name: fake, context: {cluster: fake, user: oidc}}
            current-context: fake
            users:
            - name: oidc
              user:
                exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: \(plugin)}
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let started = ContinuousClock.now
        let out = try await CLITests.run(["status", "--kubeconfig", config, "--wait", "--wait-timeout", "60s", "--poll-interval", "100ms"])
        let elapsed = ContinuousClock.now - started
        #expect(out.status == 1, "\(out.stderrString)")
        #expect(out.stdoutString.contains("target_mode: Local"), "the first polls went through: \(out.stdoutString)")
        #expect(out.stderrString.contains("exited with status 1"), "\(out.stderrString)")
        #expect(out.stderrString.components(separatedBy: "plugin-login-needed").count == 2, "the failed plugin ran once: \(out.stderrString)")
        #expect(!out.stderrString.contains("exec-tok-1"))
        #expect(elapsed < .seconds(30), "stopped, not waited out: \(elapsed)")
        #expect(fake.requests.allSatisfy { $0.header("Authorization") == "Bearer exec-tok-1" })
        try await fake.shutdown()
    }

    @Test func missingSecretNoAccessUnreachableAndBadUsage() async throws {
        let fake = try await Self.fake(state: "registry-state-switching.json")
        let config = try VerifyClusterListTests.kubeconfig(fake)
        fake.update { $0.extraObjects[ClusterFixtures.registryStatePath] = nil }
        let missing = try await CLITests.run(["status", "--kubeconfig", config])
        #expect(missing.status == 1)
        #expect(missing.stderrString.contains("secret d8-system/registry-state not found: the registry module writes it"), "\(missing.stderrString)")

        fake.update { $0.forbiddenPaths = [ClusterFixtures.registryStatePath] }
        let forbidden = try await CLITests.run(["status", "--kubeconfig", config, "--wait", "--poll-interval", "100ms"])
        #expect(forbidden.status == 1, "no waiting on a 403")
        #expect(forbidden.stderrString.contains("does not let kubeconfig user 'reader' read secret d8-system/registry-state (403 Forbidden"), "\(forbidden.stderrString)")
        try await fake.shutdown()

        let gone = try await CLITests.run(["status", "--kubeconfig", config])
        #expect(gone.status == 1)
        #expect(gone.stderrString.contains("cannot reach the API server \(fake.url): connection refused"), "\(gone.stderrString)")

        let noFile = try await CLITests.run(["status", "--kubeconfig", "/nonexistent/config"])
        #expect(noFile.status == 2, "\(noFile.stderrString)")
        let badTimeout = try await CLITests.run(["status", "--kubeconfig", config, "--wait", "--wait-timeout", "soon"])
        #expect(badTimeout.status == 2)
        #expect(badTimeout.stderrString.contains("--wait-timeout must be seconds or a duration such as 90s, 10m or 1h"))
        let stray = try await CLITests.run(["status", "--kubeconfig", config, "--wait-timeout", "10m"])
        #expect(stray.status == 2)
        #expect(stray.stderrString.contains("--wait-timeout goes with --wait"))
    }
}
