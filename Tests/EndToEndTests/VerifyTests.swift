import Foundation
import OCI
import Registry
import Testing
import TestSupport

/// `dkp-mirror verify`, offline and against a registry.
@Suite struct VerifyTests {
    @Test func offlineVerifyPassesThenNamesACorruptBlob() async throws {
        let (_, bundle) = try await PushTests.pulledBundle(["-c", "0.0002", "--gost-digest", "--no-modules"])
        let ok = try await CLITests.run(["verify", bundle.path])
        #expect(ok.status == 0, "\(ok.stdoutString) \(ok.stderrString)")
        #expect(ok.stdoutString.contains("bundle OK"))
        // d8's format: lowercase hex, no newline, one per tar or chunk.
        let gost = try String(contentsOf: bundle.appendingPathComponent("platform.tar.0000.chunk.gostsum"), encoding: .utf8)
        #expect(gost.count == 64 && gost == gost.lowercased() && !gost.hasSuffix("\n"))
        #expect(FileManager.default.fileExists(atPath: bundle.appendingPathComponent("security.tar.0000.chunk.gostsum").path))

        // Flip a byte in the middle of a chunk of the platform tar.
        let chunk = bundle.appendingPathComponent("platform.tar.0001.chunk")
        var bytes = try Data(contentsOf: chunk)
        bytes[bytes.count / 3] ^= 0x01
        try bytes.write(to: chunk)
        let bad = try await CLITests.run(["verify", bundle.path])
        #expect(bad.status == 1)
        #expect(bad.stdoutString.contains("platform.tar.0001.chunk does not match SHA256SUMS"), "\(bad.stdoutString)")
        #expect(bad.stdoutString.contains("is corrupt: its bytes hash to"), "\(bad.stdoutString)")
        #expect(bad.stdoutString.contains("platform.tar.0001.chunk does not match platform.tar.0001.chunk.gostsum"), "\(bad.stdoutString)")

        // A missing chunk is a bundle that cannot be read: exit 2, naming the file.
        try FileManager.default.removeItem(at: chunk)
        let missing = try await CLITests.run(["verify", bundle.path])
        #expect(missing.status == 2)
        #expect(missing.stderrString.contains("platform.tar.0001.chunk"), "\(missing.stderrString)")
    }

    @Test func registryCheckReportsLikeTheClusterBeforeAndAfterPush() async throws {
        let (_, bundle) = try await PushTests.pulledBundle()
        let target = try await TestRegistry.start(tls: true, users: ["rw": "pw-verify"])
        let arguments = ["verify", bundle.path, "--registry", "\(target.host)/system/deckhouse", "--ca-file", target.caFile!,
                         "-u", "rw", "-p", "pw-verify"]
        let before = try await CLITests.run(arguments)
        #expect(before.status == 1)
        let lines = before.stdoutString.split(separator: "\n")
        #expect(lines.first?.contains(" of ") == true && lines.first?.contains("items with errors") == true, "\(before.stdoutString)")
        #expect(before.stdoutString.contains("- source: "))
        #expect(before.stdoutString.contains("unexpected status code 404 Not Found"))
        #expect(before.stdoutString.contains("...and more"))
        #expect(before.stdoutString.components(separatedBy: "- source: ").count - 1 == 5)

        let push = try await PushTests.push(bundle, to: target, password: "pw-verify")
        #expect(push.status == 0, "\(push.stderrString)")
        let after = try await CLITests.run(arguments)
        #expect(after.status == 0, "\(after.stdoutString) \(after.stderrString)")
        #expect(after.stdoutString.hasPrefix("all "))
        #expect(after.stdoutString.contains("items are checked"))
        let total = Int(after.stdoutString.split(separator: " ")[1]) ?? 0
        #expect(total >= 12, "controller, installers, platform digests and module images: \(after.stdoutString)")
    }
}

@Suite struct VerifyBadInputTests {
    /// Unreadable bundles are exit 2 with a message naming the file; damaged content is exit 1.
    @Test func truncatedEmptyAndDamagedBundles() async throws {
        let (_, bundle) = try await PushTests.pulledBundle(["--no-modules", "--no-installer"])
        let empty = try TestRegistry.temporaryDirectory("dkp-empty")
        let none = try await CLITests.run(["verify", empty.path])
        #expect(none.status == 2)
        #expect(none.stderrString.hasPrefix("error: "))

        // A tar cut short.
        let truncated = try TestRegistry.temporaryDirectory("dkp-truncated")
        let security = try Data(contentsOf: bundle.appendingPathComponent("security.tar"))
        try security.prefix(security.count / 2).write(to: truncated.appendingPathComponent("security.tar"))
        let cut = try await CLITests.run(["verify", truncated.path])
        #expect(cut.status == 2)
        #expect(cut.stderrString.contains("security.tar"), "\(cut.stderrString)")

        // A manifest the index lists, removed from the tar: the reference is named.
        let folder = try await PullTests.extract([bundle.appendingPathComponent("security.tar")])
        let index = try PullTests.index(folder, "security/trivy-db")
        let manifest = try #require(index.manifests.first)
        try FileManager.default.removeItem(at: folder.appendingPathComponent("security/trivy-db/blobs/sha256/\(manifest.digest.hex)"))
        let damaged = try TestRegistry.temporaryDirectory("dkp-damaged")
        let out = try await TestProcess.run("tar", ["--format=gnu", "-cf", damaged.appendingPathComponent("security.tar").path,
                                                    "-C", folder.path, "security"])
        #expect(out.succeeded)
        let missing = try await CLITests.run(["verify", damaged.path, "--json"])
        #expect(missing.status == 1)
        #expect(missing.stdoutString.contains("manifest \(manifest.digest) is missing"), "\(missing.stdoutString)")
    }
}
