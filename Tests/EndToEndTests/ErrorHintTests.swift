import Foundation
import Registry
import Testing
import TestSupport

/// Every failure ends with two lines on stderr: `error: ` what failed, `hint: ` what to do,
/// by category (issue 10, item 7), against real servers: a closed port, a registry with a
/// password or TLS of its own, the fault proxy answering 503 or 429 or stalling, a missing tag.
@Suite struct ErrorHintTests {
    /// The `error:` line and the line after it (nil when there is none).
    static func report(_ output: TestProcess.Output) -> (error: String, hint: String?) {
        let lines = output.stderrString.split(separator: "\n").map(String.init)
        guard let index = lines.lastIndex(where: { $0.hasPrefix("error: ") }) else { return ("", nil) }
        return (lines[index], index + 1 < lines.count ? lines[index + 1] : nil)
    }

    static func expectHint(_ output: TestProcess.Output, error: String, hint: String, _ comment: String) {
        let (line, next) = report(output)
        #expect(output.status == 1, "\(comment): \(output.stderrString)")
        #expect(line.contains(error), "\(comment): \(output.stderrString)")
        #expect(next?.hasPrefix("hint: ") == true && next?.contains(hint) == true, "\(comment): \(output.stderrString)")
        #expect(line.count < 400 && (next?.count ?? 0) < 400, "\(comment): two short lines")
    }

    @Test func connectionRefusedAndATagThatIsNotThere() async throws {
        let refused = try await CLITests.run(["inspect", "127.0.0.1:1/deckhouse/ee:v1.69.3", "--insecure", "--retries", "1"])
        Self.expectHint(refused, error: "connection refused", hint: "check the address and that the registry is running", "refused")

        let registry = try await TestRegistry.start()
        let missing = try await CLITests.run(["inspect", "\(registry.host)/deckhouse/ee:v9.9.9", "--insecure"])
        Self.expectHint(missing, error: "not found", hint: "dkp-mirror tags", "missing tag")
    }

    @Test func wrongPasswordAndAnUntrustedCertificate() async throws {
        let registry = try await TestRegistry.start(tls: true, users: ["rw": "hint-pw-7"])
        let wrong = try await CLITests.run(["inspect", "\(registry.host)/deckhouse/ee:v1", "--ca-file", registry.caFile!,
                                            "-u", "rw", "--password-stdin"], stdin: "not-the-password-3")
        Self.expectHint(wrong, error: "rejected the credentials of user 'rw'", hint: "check --login and --password", "401")
        #expect(!wrong.stderrString.contains("not-the-password-3"))

        let untrusted = try await CLITests.run(["inspect", "\(registry.host)/deckhouse/ee:v1"])
        Self.expectHint(untrusted, error: "is not trusted", hint: "--ca-file", "untrusted TLS")
    }

    @Test func busyBrokenAndStalledRegistries() async throws {
        let registry = try await TestRegistry.start()
        var configuration = RegistryConfiguration()
        configuration.insecure = true
        _ = try await RegistryClient.with(host: registry.host, configuration: configuration) { client in
            try await ImageSeeder.pushImage(client, repository: "deckhouse/ee", tag: "v1", layerSizes: [1000])
        }
        let proxy = try await HTTPFaultProxy.start(upstream: registry, rules: [.init(.status(503))])
        let arguments = ["inspect", "\(proxy.host)/deckhouse/ee:v1", "--insecure", "--retries", "1"]
        Self.expectHint(try await CLITests.run(arguments), error: "503", hint: "check its logs", "503")

        proxy.setRules([.init(.status(429))])
        Self.expectHint(try await CLITests.run(arguments), error: "429", hint: "lower -j", "429")

        proxy.setRules([.init(.stallResponse(afterBodyBytes: 0...0))])
        Self.expectHint(try await CLITests.run(arguments + ["--timeout", "1"]), error: "stopped answering", hint: "raise --timeout", "stall")
        await proxy.shutdown()
    }
}
