import Foundation
import Testing
import TestSupport

/// Pull compares what it still has to write with the free space of the bundle's file system
/// before any blob moves (issue 10, item 6). The small file system is a real tmpfs, mounted
/// in a private mount namespace (`unshare -m`) so nothing outside the test sees it.
@Suite struct DiskPreflightTests {
    /// Runs `dkp-mirror ARGUMENTS` with a `sizeKiB` tmpfs mounted on `directory`; nil when this
    /// machine cannot make mount namespaces (the test then says so and checks nothing).
    static func runOnSmallFileSystem(_ directory: URL, sizeKiB: Int, _ arguments: [String]) async throws -> TestProcess.Output? {
        let quoted = ([CLITests.executable] + arguments).map { "'\($0.replacingOccurrences(of: "'", with: "'\\''"))'" }.joined(separator: " ")
        let script = "mount -t tmpfs -o size=\(sizeKiB)k dkp-preflight '\(directory.path)' || exit 97; exec \(quoted)"
        let home = try TestRegistry.temporaryDirectory("dkp-home")
        defer { try? FileManager.default.removeItem(at: home) }
        let output = try await TestProcess.run("/usr/bin/unshare", ["-m", "--propagation", "private", "/bin/sh", "-c", script],
                                               environment: ["HOME": home.path, "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"])
        return output.status == 97 || output.stderrString.contains("unshare failed") ? nil : output
    }

    @Test func aPullThatCannotFitStopsBeforeAnyBlob() async throws {
        let (registry, _) = try await PullTests.seededEdition()
        let directory = try TestRegistry.temporaryDirectory("dkp-small-disk")
        let pull = ["pull", directory.path, "--source", "\(registry.host)/deckhouse/ee", "--insecure", "--deckhouse-tag", "v1.69.3",
                    "--no-security-db", "--progress", "none"]
        // Discovery reads a few blobs (version.json, images_digests.json): a dry run reads the same.
        let start = Self.blobGets(registry.log)
        let dryRun = try await CLITests.run(pull + ["--dry-run"])
        #expect(dryRun.status == 0, "\(dryRun.stderrString)")
        let discoveryGets = Self.blobGets(registry.log) - start
        guard let output = try await Self.runOnSmallFileSystem(directory, sizeKiB: 512, pull) else {
            Issue.record("this machine cannot mount a tmpfs in a private mount namespace (unshare -m); the preflight is untested here")
            return
        }
        #expect(output.status == 1, "\(output.stderrString)")
        let stderr = output.stderrString
        #expect(stderr.contains("not enough free space in \(directory.path)"), "\(stderr)")
        #expect(stderr.contains("the pull still has to write") && stderr.contains("free"), "\(stderr)")
        #expect(stderr.contains("nothing was downloaded"))
        #expect(stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }.count == 1, "one error line: \(stderr)")
        // Discovery and the plan ran; not one blob of the bundle was fetched.
        let pullGets = Self.blobGets(registry.log) - start - discoveryGets
        #expect(pullGets == discoveryGets, "blob GETs of the refused pull: \(pullGets), of discovery: \(discoveryGets)")
    }

    /// GETs of blobs in a distribution registry's access log.
    static func blobGets(_ log: String) -> Int {
        log.split(separator: "\n").filter { $0.contains("\"GET /v2/") && $0.contains("/blobs/sha256:") }.count
    }
}
