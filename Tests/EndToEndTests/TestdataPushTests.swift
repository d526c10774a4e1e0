import Foundation
import OCI
import Registry
import Testing
import TestSupport

/// The committed bundles of testdata/bundles through the real executable: every generation
/// verifies (`--deep` too) and pushes into a real TLS + htpasswd registry as the same
/// references (testdata/bundles/references.txt), each whole, with the module's discovery tag;
/// every hostile tar of testdata/hostile is refused by verify and push with the exit code of
/// its kind, and a refused push writes nothing.
@Suite struct TestdataPushTests {
    static let testdata = RepoPaths.testdata

    /// A private copy of a committed folder (push and verify must never write into testdata/).
    static func copy(_ folder: URL) async throws -> URL {
        let copy = try TestRegistry.temporaryDirectory("dkp-testdata")
        let result = try await TestProcess.run("cp", ["-a", folder.path + "/.", copy.path])
        #expect(result.succeeded, "\(result.stderrString)")
        return copy
    }

    static func push(_ bundle: URL, to target: TestRegistry, root: String) async throws -> TestProcess.Output {
        try await CLITests.run(["push", bundle.path, "\(target.host)/\(root)", "--ca-file", target.caFile!,
                                "-u", "rw", "--registry-password-stdin", "--progress", "none"], stdin: "testdata-pw-5")
    }

    /// references.txt: (layout path, tag, digest).
    static func expectedReferences() throws -> [(path: String, tag: String, digest: Digest)] {
        let text = try String(contentsOf: testdata.appendingPathComponent("bundles/references.txt"), encoding: .utf8)
        return try text.split(separator: "\n").map { line in
            let fields = line.split(separator: " ").map(String.init)
            return (fields[0] == "." ? "" : fields[0], fields[1], try Digest(parsing: fields[2]))
        }
    }

    @Test func everyGenerationVerifiesAndPushesTheSameReferences() async throws {
        let target = try await TestRegistry.start(tls: true, users: ["rw": "testdata-pw-5"])
        let client = try TargetCheck.client(target, password: "testdata-pw-5")
        let expected = try Self.expectedReferences()
        for generation in TestdataBundles.Generation.allCases {
            let bundle = try await Self.copy(Self.testdata.appendingPathComponent("bundles/\(generation.rawValue)"))
            defer { try? FileManager.default.removeItem(at: bundle) }
            let verify = try await CLITests.run(["verify", bundle.path, "--deep", "--progress", "none"])
            #expect(verify.status == 0, "\(generation): \(verify.stderrString)")
            let root = "gen/\(generation.rawValue)"
            let push = try await Self.push(bundle, to: target, root: root)
            #expect(push.status == 0, "\(generation): \(push.stderrString)")
            for (path, tag, digest) in expected {
                let repository = path.isEmpty ? root : "\(root)/\(path)"
                let found = try await client.manifestDescriptor(repository: repository, reference: tag)
                #expect(found?.digest == digest, "\(generation): \(repository):\(tag)")
                try await TargetCheck.expectWhole(client, repository: repository, digest: digest, label: "\(generation): \(repository):\(tag)")
            }
            #expect(try await client.manifestDescriptor(repository: "\(root)/modules", reference: "console") != nil,
                    "\(generation): the discovery tag modules:console")
        }
        // Nothing but what the bundles name (and the discovery repository) was created.
        let repositories = Set(expected.map(\.path)).map { $0.isEmpty ? "" : "/" + $0 } + ["/modules"]
        let wanted = Set(TestdataBundles.Generation.allCases.flatMap { g in repositories.map { "gen/\(g.rawValue)\($0)" } })
        #expect(Set(try await client.catalog() ?? []) == wanted)
        await client.shutdown()
        withExtendedLifetime(target) {}
    }

    /// The exit code verify and push give each hostile tar (as `platform.tar`): 2 where the
    /// tar is refused as bad input, 1 where it reads but what it holds is damaged. The one
    /// difference: a second `index.json` in a tar fails verify, while push uses the last copy
    /// (as extracting the tar, which d8 push does, would) and says so in a warning.
    static let exitCodes: [String: (verify: Int32, push: Int32)] = [
        "absolute-entry.tar": (2, 2), "bad-header-checksum.tar": (2, 2), "deeply-nested-index.tar": (2, 2),
        "dotdot-entry.tar": (2, 2), "dotdot-inside-entry.tar": (2, 2), "duplicate-index.tar": (1, 0), "garbage.tar": (2, 2),
        "hardlink-blob.tar": (1, 1), "huge-size-in-index.tar": (2, 2), "invalid-utf8-index.tar": (2, 2),
        "missing-blob.tar": (1, 1), "negative-base256-size.tar": (2, 2), "size-beyond-end.tar": (2, 2),
        "symlink-blob.tar": (1, 1), "symlink-escape-entry.tar": (2, 2), "truncated-in-data.tar": (2, 2),
        "truncated-in-header.tar": (2, 2), "wrong-blob-bytes.tar": (1, 1),
    ]

    @Test func hostileTarsAreRefusedByVerifyAndPush() async throws {
        let hostile = Self.testdata.appendingPathComponent("hostile")
        let names = try FileManager.default.contentsOfDirectory(atPath: hostile.path).filter { $0.hasSuffix(".tar") }.sorted()
        #expect(names == Self.exitCodes.keys.sorted())
        let target = try await TestRegistry.start(tls: true, users: ["rw": "testdata-pw-5"])
        let client = try TargetCheck.client(target, password: "testdata-pw-5")
        for name in names {
            let bundle = try TestRegistry.temporaryDirectory("dkp-hostile")
            defer { try? FileManager.default.removeItem(at: bundle) }
            try FileManager.default.copyItem(at: hostile.appendingPathComponent(name), to: bundle.appendingPathComponent("platform.tar"))
            let expected = try #require(Self.exitCodes[name])
            let verify = try await CLITests.run(["verify", bundle.path, "--progress", "none"])
            #expect(verify.status == expected.verify, "verify \(name): \(verify.stderrString)")
            #expect((verify.stdoutString + verify.stderrString).contains("platform.tar"), "verify \(name) names the tar: \(verify.stderrString)")
            let push = try await Self.push(bundle, to: target, root: "hostile/\(name.dropLast(4))")
            #expect(push.status == expected.push, "push \(name): \(push.stdoutString) \(push.stderrString)")
            #expect(push.stderrString.contains("platform.tar"), "push \(name) names the tar: \(push.stderrString)")
            #expect(!push.stderrString.contains("Fatal error"), "\(name)")
        }
        // Refused tars push nothing at all.
        let refused = Set(Self.exitCodes.filter { $0.value.push == 2 }.keys.map { "hostile/\($0.dropLast(4))" })
        let created = try await client.catalog() ?? []
        #expect(created.allSatisfy { repository in !refused.contains { repository == $0 || repository.hasPrefix($0 + "/") } }, "\(created)")
        await client.shutdown()
        withExtendedLifetime(target) {}
    }
}
