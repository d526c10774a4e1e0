import Foundation
import OCI
import Registry
import Testing
import TestSupport

/// Bundles changed by hand as an operator (or a broken writer) might leave them: names outside
/// the distribution grammar, descriptors that lose a tag, a tar holding index.json twice,
/// chunks numbered with five digits, files of another pull. `verify` and `push` must name each
/// the same way (issue 11, items 0, 4, 5, 6).
@Suite struct CraftedBundleTests {
    /// Extracts `tar` of `bundle`, lets `change` edit the tree, and writes the tar again in its place.
    static func rewrite(_ bundle: URL, _ tar: String, _ change: (URL) throws -> Void) async throws {
        let folder = try await PullTests.extract([bundle.appendingPathComponent(tar)])
        try change(folder)
        try FileManager.default.removeItem(at: bundle.appendingPathComponent(tar))
        try await PushOlderGenerationTests.gnuTar(bundle.appendingPathComponent(tar), from: folder,
                                                  try FileManager.default.contentsOfDirectory(atPath: folder.path))
    }

    /// Edits the descriptors of the index.json at `layout` of an extracted tree.
    static func editIndex(_ folder: URL, _ layout: String, _ change: (inout [[String: Any]]) -> Void) throws {
        let url = folder.appendingPathComponent(layout.isEmpty ? "index.json" : "\(layout)/index.json")
        var index = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any] ?? [:]
        var manifests = index["manifests"] as? [[String: Any]] ?? []
        change(&manifests)
        index["manifests"] = manifests
        try JSONSerialization.data(withJSONObject: index, options: [.sortedKeys]).write(to: url)
    }

    static func shortTag(_ descriptor: [String: Any]) -> String? {
        (descriptor["annotations"] as? [String: String])?["io.deckhouse.image.short_tag"]
    }

    /// Indices of the root layout's digest images (d8 tags them with their digest's hex).
    static func digestImages(_ manifests: [[String: Any]]) -> [Int] {
        manifests.indices.filter { i in
            let digest = (manifests[i]["digest"] as? String) ?? ""
            return shortTag(manifests[i]).map { "sha256:" + $0 == digest } ?? false
        }
    }

    static func lines(_ text: String, _ prefix: String) -> [String] {
        text.split(separator: "\n").filter { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
    }

    static func found(_ target: TestRegistry, _ references: [(String, String)]) async throws -> [Bool] {
        var configuration = RegistryConfiguration()
        configuration.insecure = true
        return try await RegistryClient.with(host: target.host, configuration: configuration) { client -> [Bool] in
            var found: [Bool] = []
            for (repository, reference) in references {
                found.append(try await client.manifestDescriptor(repository: repository, reference: reference) != nil)
            }
            return found
        }
    }

    static func push(_ bundle: URL, to target: TestRegistry) async throws -> TestProcess.Output {
        try await CLITests.run(["push", bundle.path, "\(target.host)/system/deckhouse", "--insecure", "--progress", "none"])
    }

    @Test func namesOutsideTheGrammarAreReportedByVerifyAndHeldBackByPush() async throws {
        let (source, bundle) = try await PushTests.pulledBundle()
        let long = String(repeating: "a", count: 200)
        var renamed: [String] = []
        try await Self.rewrite(bundle, "platform.tar") { folder in
            try Self.editIndex(folder, "") { manifests in
                for (i, tag) in zip(Self.digestImages(manifests).prefix(2), ["bad tag/../x", long]) {
                    var annotations = manifests[i]["annotations"] as? [String: String] ?? [:]
                    renamed.append(annotations["io.deckhouse.image.short_tag"] ?? "")
                    annotations["io.deckhouse.image.short_tag"] = tag
                    manifests[i]["annotations"] = annotations
                }
            }
        }
        try await Self.rewrite(bundle, "module-commander.tar") { folder in
            try FileManager.default.moveItem(at: folder.appendingPathComponent("modules/commander"),
                                             to: folder.appendingPathComponent("modules/Commander"))
        }
        try FileManager.default.removeItem(at: bundle.appendingPathComponent("SHA256SUMS"))  // the tars changed on purpose
        #expect(renamed.count == 2)

        let verified = try await CLITests.run(["verify", bundle.path])
        #expect(verified.status == 1, "\(verified.stdoutString)")
        let problems = Self.lines(verified.stdoutString, "problem: ")
        #expect(problems.contains { $0.contains("its short tag is not a valid tag: tag 'bad tag/../x' contains '/'") }, "\(problems)")
        #expect(problems.contains { $0.contains("is longer than 128 characters") }, "\(problems)")
        #expect(problems.contains { $0.contains("layout 'modules/Commander' cannot be pushed") && $0.contains("uppercase") }, "\(problems)")
        #expect(problems.filter { $0.contains("layout 'modules/Commander/release' cannot be pushed") }.count == 1)
        #expect(problems.count == 4, "nothing else is wrong: \(problems)")

        let target = try await TestRegistry.start()
        let pushed = try await Self.push(bundle, to: target)
        #expect(pushed.status == 1, "\(pushed.stderrString)")
        let stderr = pushed.stderrString
        let heldBack = Self.lines(stderr, "warning: held back: ")
        #expect(heldBack.count == 4, "two tags, the module's two layouts: \(stderr)")
        if let early = stderr.range(of: "warning: held back: "), let start = stderr.range(of: "pushing ") {
            #expect(early.lowerBound < start.lowerBound, "named before the first upload")
        }
        #expect(Self.lines(stderr, "error: ").count == 4, "\(stderr)")
        // The rest is there; the renamed images and the capitalised module are not.
        let found = try await Self.found(target, [
            ("system/deckhouse", "v1.69.3"), ("system/deckhouse/modules/console/release", "stable"),
            ("system/deckhouse", renamed[0]), ("system/deckhouse/modules/commander/release", "stable"),
            ("system/deckhouse/modules", "commander"),
        ])
        #expect(found == [true, true, false, false, false], "\(found)")
        withExtendedLifetime(source) {}
    }

    @Test func descriptorsThatLoseATagAreNamedAlikeByVerifyAndPush() async throws {
        let (source, bundle) = try await PushTests.pulledBundle(["--no-modules"])
        var latest = "", bare = "", dup: [String] = []
        try await Self.rewrite(bundle, "platform.tar") { folder in
            try Self.editIndex(folder, "") { manifests in
                let images = Self.digestImages(manifests)
                // No annotations at all: pushed by digest alone, with a warning.
                bare = manifests[images[0]]["digest"] as? String ?? ""
                manifests[images[0]]["annotations"] = nil
                // A bare ref name `latest` and no short tag: pushed as `latest`, with a warning.
                latest = manifests[images[1]]["digest"] as? String ?? ""
                manifests[images[1]]["annotations"] = ["org.opencontainers.image.ref.name": "latest"]
                // One short tag for two digests: a warning naming both, the last wins.
                for i in images[2...3] {
                    dup.append(manifests[i]["digest"] as? String ?? "")
                    manifests[i]["annotations"] = ["io.deckhouse.image.short_tag": "dup"]
                }
            }
        }
        // security.tar holding trivy-db's index.json twice, the later copy listing nothing.
        let extra = try TestRegistry.temporaryDirectory("dkp-dup-index")
        try FileManager.default.createDirectory(at: extra.appendingPathComponent("security/trivy-db"), withIntermediateDirectories: true)
        try Data(#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#.utf8)
            .write(to: extra.appendingPathComponent("security/trivy-db/index.json"))
        let appended = try await TestProcess.run("tar", ["--format=gnu", "-rf", bundle.appendingPathComponent("security.tar").path,
                                                         "-C", extra.path, "security/trivy-db/index.json"])
        #expect(appended.succeeded, "\(appended.stderrString)")
        try FileManager.default.removeItem(at: bundle.appendingPathComponent("SHA256SUMS"))

        let verified = try await CLITests.run(["verify", bundle.path])
        #expect(verified.status == 1, "the duplicate index.json is a problem: \(verified.stdoutString)")
        let verifyWarnings = Set(Self.lines(verified.stdoutString, "warning: "))
        let problems = Self.lines(verified.stdoutString, "problem: ")
        #expect(problems.contains { $0.contains("security.tar holds 'security/trivy-db/index.json' 2 times") }, "\(problems)")

        let target = try await TestRegistry.start()
        let pushed = try await Self.push(bundle, to: target)
        #expect(pushed.status == 0, "\(pushed.stderrString)")
        let pushWarnings = Set(Self.lines(pushed.stderrString, "warning: "))
        // The short tag rule's lines are word for word the same in both.
        let rule = verifyWarnings.filter { $0.contains("descriptor") || $0.contains("is given to two different images") }
        #expect(rule.count == 3, "\(verifyWarnings)")
        #expect(rule.isSubset(of: pushWarnings), "\(rule.subtracting(pushWarnings))")
        #expect(rule.contains { $0.contains(bare) && $0.contains("pushed by digest alone") })
        #expect(rule.contains { $0.contains(latest) && $0.contains("pushed as tag 'latest'") })
        #expect(rule.contains { $0.contains("tag 'dup'") && $0.contains(dup[0]) && $0.contains(dup[1]) })
        #expect(pushWarnings.contains { $0.contains("security.tar holds 'security/trivy-db/index.json' 2 times") }, "\(pushWarnings)")

        var configuration = RegistryConfiguration()
        configuration.insecure = true
        let digests = try await RegistryClient.with(host: target.host, configuration: configuration) { client -> [String?] in
            var digests: [String?] = []
            for reference in [bare, "latest", "dup"] {
                digests.append(try await client.manifestDescriptor(repository: "system/deckhouse", reference: reference)?.digest.string)
            }
            return digests
        }
        #expect(digests == [bare, latest, dup[1]], "\(digests)")
        withExtendedLifetime(source) {}
    }

    @Test func fiveDigitChunksAndFilesOfAnotherPull() async throws {
        let (source, bundle) = try await PushTests.pulledBundle(["-c", "0.0003", "--no-modules"])
        let names = try FileManager.default.contentsOfDirectory(atPath: bundle.path)
        let chunks = names.filter { $0.hasPrefix("platform.tar.") && $0.hasSuffix(".chunk") }
        #expect(chunks.count > 1)
        // Five digits, as some writers number them; SHA256SUMS names the new files.
        var sums = try String(contentsOf: bundle.appendingPathComponent("SHA256SUMS"), encoding: .utf8)
        for name in chunks {
            let renamed = name.replacingOccurrences(of: "platform.tar.", with: "platform.tar.0")
            try FileManager.default.moveItem(at: bundle.appendingPathComponent(name), to: bundle.appendingPathComponent(renamed))
            sums = sums.replacingOccurrences(of: " " + name, with: " " + renamed)
        }
        try sums.write(to: bundle.appendingPathComponent("SHA256SUMS"), atomically: true, encoding: .utf8)
        let verified = try await CLITests.run(["verify", bundle.path])
        #expect(verified.status == 0, "\(verified.stdoutString)")
        let target = try await TestRegistry.start()
        let pushed = try await Self.push(bundle, to: target)
        #expect(pushed.status == 0, "\(pushed.stderrString)")
        #expect(try await Self.found(target, [("system/deckhouse", "v1.69.3")]) == [true])

        // A tar SHA256SUMS does not list (left by another pull): verify names it.
        let security = try FileManager.default.contentsOfDirectory(atPath: bundle.path).filter { $0.hasPrefix("security.tar") }.sorted()
        let tree = try await PullTests.extract(security.map { bundle.appendingPathComponent($0) })
        try await PushOlderGenerationTests.gnuTar(bundle.appendingPathComponent("module-old.tar"), from: tree,
                                                  try FileManager.default.contentsOfDirectory(atPath: tree.path))
        let stray = try await CLITests.run(["verify", bundle.path])
        #expect(stray.status == 1)
        #expect(Self.lines(stray.stdoutString, "problem: ").contains { $0.hasPrefix("module-old.tar is not listed in SHA256SUMS") },
                "\(stray.stdoutString)")
        withExtendedLifetime(source) {}
    }
}
