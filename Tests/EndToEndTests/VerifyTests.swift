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

        // Without SHA256SUMS and .gostsum files (as d8 writes bundles) the blobs alone are read: still found.
        let bare = try TestRegistry.temporaryDirectory("dkp-bare")
        for name in try FileManager.default.contentsOfDirectory(atPath: bundle.path) where name.hasSuffix(".chunk") {
            try FileManager.default.copyItem(at: bundle.appendingPathComponent(name), to: bare.appendingPathComponent(name))
        }
        let blobsOnly = try await CLITests.run(["verify", bare.path])
        #expect(blobsOnly.status == 1)
        #expect(blobsOnly.stdoutString.contains("is corrupt: its bytes hash to"), "\(blobsOnly.stdoutString)")
        // No problem of the lists, only the warning that whole files go unchecked.
        #expect(!blobsOnly.stdoutString.contains("problem: SHA256SUMS") && !blobsOnly.stdoutString.contains("does not match"), "\(blobsOnly.stdoutString)")
        #expect(blobsOnly.stdoutString.contains("warning: the bundle has no SHA256SUMS (nor .gostsum files)"), "\(blobsOnly.stdoutString)")

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
        #expect(lines.first == "Mode: Default", "\(before.stdoutString)")
        #expect(lines.dropFirst().first?.contains(" of ") == true && lines.dropFirst().first?.contains("items with errors") == true, "\(before.stdoutString)")
        #expect(before.stdoutString.contains("- source: "))
        #expect(before.stdoutString.contains("unexpected status code 404 Not Found"))
        // The cluster's list: the controller's four images_digests.json digests and the controller
        // itself (at most five errors are listed; VerifyClusterListTests has more).
        #expect(lines.dropFirst().first == "0 of 5 items processed, 5 items with errors:", "\(before.stdoutString)")
        let sections = before.stdoutString.components(separatedBy: "The rest of the bundle (every tag, children by digest, discovery tags):\n")
        #expect(sections.count == 2, "\(before.stdoutString)")
        #expect(!sections[0].contains("...and more"))
        #expect(sections[0].components(separatedBy: "- source: ").count - 1 == 5)
        // The rest, in the same shape: its first 20 errors, then how many more.
        #expect(sections.last?.components(separatedBy: "- source: ").count == 21, "\(sections.last ?? "")")
        #expect(sections.last?.hasSuffix(" more (every one is in the --json report)\n") == true, "\(sections.last ?? "")")

        let push = try await PushTests.push(bundle, to: target, password: "pw-verify")
        #expect(push.status == 0, "\(push.stderrString)")
        let after = try await CLITests.run(arguments)
        #expect(after.status == 0, "\(after.stdoutString) \(after.stderrString)")
        #expect(after.stdoutString.hasPrefix("Mode: Default\nall "))
        #expect(after.stdoutString.contains("items are checked"))
        let total = Int(after.stdoutString.split(separator: "\n")[1].split(separator: " ")[1]) ?? 0
        #expect(total >= 5, "the controller's images_digests.json digests and the controller: \(after.stdoutString)")
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

    /// A fresh bundle directory holding copies of `names` from `bundle`, and a SHA256SUMS
    /// with their lines only.
    static func copy(_ names: [String], from bundle: URL) throws -> URL {
        let directory = try TestRegistry.temporaryDirectory("dkp-bad")
        for name in names {
            try FileManager.default.copyItem(at: bundle.appendingPathComponent(name), to: directory.appendingPathComponent(name))
        }
        let sums = try String(contentsOf: bundle.appendingPathComponent("SHA256SUMS"), encoding: .utf8)
        let lines = sums.split(separator: "\n").filter { line in names.contains { line.hasSuffix("  " + $0) } }
        try (lines.joined(separator: "\n") + "\n").write(to: directory.appendingPathComponent("SHA256SUMS"), atomically: true, encoding: .utf8)
        return directory
    }

    /// Bytes flipped in a layout's index.json inside the tar: broken JSON makes the tar
    /// unreadable (exit 2, naming tar and file); a changed digest in valid JSON names the
    /// manifest that is not there and the file that no longer matches SHA256SUMS (exit 1).
    @Test func flippedBytesInIndexJSON() async throws {
        let (_, bundle) = try await PushTests.pulledBundle(["--no-modules", "--no-installer"])
        let folder = try await PullTests.extract([bundle.appendingPathComponent("security.tar")])
        let index = try Data(contentsOf: folder.appendingPathComponent("security/trivy-db/index.json"))
        let tar = try Data(contentsOf: bundle.appendingPathComponent("security.tar"))
        let range = try #require(tar.range(of: index), "index.json is stored as is")

        let broken = try Self.copy(["security.tar"], from: bundle)
        var bytes = tar
        bytes[range.lowerBound] ^= 0x01  // "{" -> "z"
        try bytes.write(to: broken.appendingPathComponent("security.tar"))
        let unreadable = try await CLITests.run(["verify", broken.path])
        #expect(unreadable.status == 2)
        #expect(unreadable.stderrString.contains("security.tar"), "\(unreadable.stderrString)")
        #expect(unreadable.stderrString.contains("security/trivy-db/index.json is not a valid OCI index"), "\(unreadable.stderrString)")

        let changed = try Self.copy(["security.tar"], from: bundle)
        bytes = tar
        let digestAt = try #require(bytes[range].range(of: Data("sha256:".utf8))).upperBound
        let old = bytes[digestAt]
        bytes[digestAt] = old == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
        try bytes.write(to: changed.appendingPathComponent("security.tar"))
        let hex = String(decoding: bytes[digestAt..<(digestAt + 64)], as: UTF8.self)
        let missing = try await CLITests.run(["verify", changed.path])
        #expect(missing.status == 1, "\(missing.stderrString)")
        #expect(missing.stdoutString.contains("security/trivy-db"), "\(missing.stdoutString)")
        #expect(missing.stdoutString.contains("manifest sha256:\(hex) is missing"), "\(missing.stdoutString)")
        #expect(missing.stdoutString.contains("security.tar does not match SHA256SUMS"), "\(missing.stdoutString)")
    }

    /// Entry names that climb out of the tree (`../x`, an absolute path) make the tar refused
    /// (exit 2, naming tar and entry); nothing is written anywhere.
    @Test func pathTraversalEntriesAreRefused() async throws {
        let (_, bundle) = try await PushTests.pulledBundle(["--no-modules", "--no-installer"])
        let outside = try TestRegistry.temporaryDirectory("dkp-outside")
        try FileManager.default.createDirectory(at: outside.appendingPathComponent("inner"), withIntermediateDirectories: true)
        let victim = outside.appendingPathComponent("x")
        try Data("planted\n".utf8).write(to: victim)

        let dotdot = try Self.copy(["security.tar"], from: bundle)
        var out = try await TestProcess.run("tar", ["-rPf", dotdot.appendingPathComponent("security.tar").path,
                                                    "-C", outside.appendingPathComponent("inner").path, "../x"])
        #expect(out.succeeded, "\(out.stderrString)")
        let refused = try await CLITests.run(["verify", dotdot.path])
        #expect(refused.status == 2)
        #expect(refused.stderrString.contains("security.tar holds an entry named '../x'"), "\(refused.stderrString)")
        #expect(refused.stderrString.contains("reach outside"), "\(refused.stderrString)")

        let absolute = try Self.copy(["security.tar"], from: bundle)
        out = try await TestProcess.run("tar", ["-rPf", absolute.appendingPathComponent("security.tar").path, victim.path])
        #expect(out.succeeded, "\(out.stderrString)")
        let refusedToo = try await CLITests.run(["verify", absolute.path, "--json"])
        #expect(refusedToo.status == 2)
        #expect(refusedToo.stderrString.contains("holds an entry named '\(victim.path)': it is an absolute path"), "\(refusedToo.stderrString)")
        #expect(refusedToo.stdout.isEmpty)
        // Never followed: the file outside is as it was, nothing appeared beside the bundles.
        #expect(try String(contentsOf: victim, encoding: .utf8) == "planted\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dotdot.path).sorted() == ["SHA256SUMS", "security.tar"])
        #expect(!FileManager.default.fileExists(atPath: dotdot.deletingLastPathComponent().appendingPathComponent("x").path))
    }

    /// A name held twice: reported (exit 1) with the tar and name; when the second copy of a
    /// blob differs, the copy extraction would keep is the one checked and found corrupt.
    @Test func duplicateEntriesAreReported() async throws {
        let (_, bundle) = try await PushTests.pulledBundle(["--no-modules", "--no-installer"])
        let folder = try await PullTests.extract([bundle.appendingPathComponent("security.tar")])

        let same = try Self.copy(["security.tar"], from: bundle)
        var out = try await TestProcess.run("tar", ["--format=gnu", "-rf", same.appendingPathComponent("security.tar").path,
                                                    "-C", folder.path, "security/trivy-db/oci-layout"])
        #expect(out.succeeded, "\(out.stderrString)")
        let twice = try await CLITests.run(["verify", same.path])
        #expect(twice.status == 1, "\(twice.stderrString)")
        #expect(twice.stdoutString.contains("security.tar holds 'security/trivy-db/oci-layout' 2 times"), "\(twice.stdoutString)")

        // A different second copy of a layer blob.
        let index = try PullTests.index(folder, "security/trivy-db")
        let manifestDigest = try #require(index.manifests.first).digest
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent(
            "security/trivy-db/blobs/sha256/\(manifestDigest.hex)"))) as? [String: Any]
        let layer = try #require(((manifest?["layers"] as? [[String: Any]])?.first?["digest"] as? String)?.dropFirst("sha256:".count))
        let other = try TestRegistry.temporaryDirectory("dkp-other")
        let path = "security/trivy-db/blobs/sha256/\(layer)"
        try FileManager.default.createDirectory(at: other.appendingPathComponent(path).deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(TestCrypto.randomBytes(1000)).write(to: other.appendingPathComponent(path))
        let substituted = try Self.copy(["security.tar"], from: bundle)
        out = try await TestProcess.run("tar", ["--format=gnu", "-rf", substituted.appendingPathComponent("security.tar").path, "-C", other.path, path])
        #expect(out.succeeded, "\(out.stderrString)")
        let bad = try await CLITests.run(["verify", substituted.path, "--json"])
        #expect(bad.status == 1)
        #expect(bad.stdoutString.contains("security.tar holds '\(path)' 2 times"), "\(bad.stdoutString)")
        #expect(bad.stdoutString.contains("\(path) is corrupt: its bytes hash to"), "\(bad.stdoutString)")
        #expect(bad.stdoutString.contains("has 1000 bytes, its manifest says"), "\(bad.stdoutString)")
    }

    /// A layer blob the manifest lists, absent from the layout; an empty tar file; the last
    /// chunk of a chunked tar missing; SHA256SUMS listing a file that is not there.
    @Test func absentLayerEmptyFileAndMissingLastChunk() async throws {
        let (_, bundle) = try await PushTests.pulledBundle(["--no-modules", "--no-installer", "-c", "0.0002"])
        let names = try FileManager.default.contentsOfDirectory(atPath: bundle.path)
        let chunks = names.filter { $0.hasPrefix("security.tar.") && $0.hasSuffix(".chunk") }.sorted()
        let platform = names.filter { $0.hasPrefix("platform.tar.") && $0.hasSuffix(".chunk") }.sorted()
        #expect(!chunks.isEmpty && platform.count >= 2)
        let folder = try await PullTests.extract(chunks.map { bundle.appendingPathComponent($0) })
        let index = try PullTests.index(folder, "security/trivy-bdu")
        let manifestDigest = try #require(index.manifests.first).digest
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent(
            "security/trivy-bdu/blobs/sha256/\(manifestDigest.hex)"))) as? [String: Any]
        let layer = try #require((manifest?["layers"] as? [[String: Any]])?.first?["digest"] as? String)
        try FileManager.default.removeItem(at: folder.appendingPathComponent("security/trivy-bdu/blobs/sha256/\(layer.dropFirst(7))"))
        let damaged = try TestRegistry.temporaryDirectory("dkp-absent")
        let out = try await TestProcess.run("tar", ["--format=gnu", "-cf", damaged.appendingPathComponent("security.tar").path, "-C", folder.path, "security"])
        #expect(out.succeeded)
        let absent = try await CLITests.run(["verify", damaged.path])
        #expect(absent.status == 1)
        #expect(absent.stdoutString.contains("blob \(layer) that manifest \(manifestDigest) lists is missing"), "\(absent.stdoutString)")

        let empty = try TestRegistry.temporaryDirectory("dkp-emptytar")
        FileManager.default.createFile(atPath: empty.appendingPathComponent("platform.tar").path, contents: Data())
        let zero = try await CLITests.run(["verify", empty.path])
        #expect(zero.status == 2)
        #expect(zero.stderrString.contains("platform.tar is damaged or not what it should be: the file is empty"), "\(zero.stderrString)")

        // The last chunk gone: the tar ends without its end blocks; the message names the chunk that may be missing.
        let cut = try Self.copy(Array(platform.dropLast()), from: bundle)
        let lastName = try #require(platform.last)
        let short = try await CLITests.run(["verify", cut.path])
        #expect(short.status == 2)
        #expect(short.stderrString.contains("\(lastName) is missing"), "\(short.stderrString)")

        // SHA256SUMS names a file that is not there (and the rest is fine).
        let listed = try Self.copy(chunks, from: bundle)
        try (String(contentsOf: listed.appendingPathComponent("SHA256SUMS"), encoding: .utf8) + String(repeating: "a", count: 64) + "  gone.tar\n")
            .write(to: listed.appendingPathComponent("SHA256SUMS"), atomically: true, encoding: .utf8)
        let gone = try await CLITests.run(["verify", listed.path])
        #expect(gone.status == 1)
        #expect(gone.stdoutString.contains("gone.tar is listed in SHA256SUMS but missing"), "\(gone.stdoutString)")
        #expect(gone.stdoutString.contains("bundle has 1 problem(s)"), "\(gone.stdoutString)")
    }
}
