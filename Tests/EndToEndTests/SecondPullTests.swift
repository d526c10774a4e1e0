import Foundation
import Testing
import TestSupport

/// A second pull with another plan into a directory that holds a bundle (issue 11, item 0):
/// refused with one line unless --force, which removes the old bundle's files only once the
/// new bundle is complete; a re-run of the same plan still resumes without a word.
@Suite struct SecondPullTests {
    static func bundleFiles(_ directory: URL) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.contains(".tar") }.sorted()
    }

    @Test func anotherPlanIsRefusedUnlessForcedAndThenReplacesTheOldBundleWhole() async throws {
        let (registry, _) = try await PullTests.seededEdition()
        let directory = try TestRegistry.temporaryDirectory("dkp-second-pull")
        let first = try await PullTests.pull(registry, into: directory, ["--deckhouse-tag", "v1.69.3"])
        #expect(first.status == 0, "\(first.stderrString)")
        let old = try Self.bundleFiles(directory)
        #expect(old.contains("module-commander.tar") && old.contains("security.tar"), "\(old)")
        let oldSums = try Data(contentsOf: directory.appendingPathComponent("SHA256SUMS"))

        // The same plan again: a resume with nothing to do.
        let same = try await PullTests.pull(registry, into: directory, ["--deckhouse-tag", "v1.69.3"])
        #expect(same.status == 0, "\(same.stderrString)")

        let other = ["--deckhouse-tag", "v1.70.1", "-i", "console", "--no-security-db"]
        let refused = try await PullTests.pull(registry, into: directory, other)
        #expect(refused.status == 2, "\(refused.stderrString)")
        let line = refused.stderrString.split(separator: "\n").first { $0.hasPrefix("error: ") } ?? ""
        #expect(line.contains("holds a bundle of another pull") && line.contains("--force"), "\(line)")
        #expect(line.contains("module-commander.tar"), "\(line)")
        #expect(try Self.bundleFiles(directory) == old, "nothing touched")
        #expect(try Data(contentsOf: directory.appendingPathComponent("SHA256SUMS")) == oldSums)

        let forced = try await PullTests.pull(registry, into: directory, other + ["--force"])
        #expect(forced.status == 0, "\(forced.stderrString)")
        let new = try Self.bundleFiles(directory)
        #expect(!new.contains("module-commander.tar") && !new.contains("module-stronghold.tar") && !new.contains("security.tar"), "\(new)")
        #expect(new.contains("module-console.tar") && new.contains("platform.tar"), "\(new)")
        let sums = try String(contentsOf: directory.appendingPathComponent("SHA256SUMS"), encoding: .utf8)
        #expect(sums.split(separator: "\n").count == new.count, "SHA256SUMS lists every file there: \(sums)")
        let verified = try await CLITests.run(["verify", directory.path])
        #expect(verified.status == 0, "\(verified.stdoutString)")
        #expect(verified.stdoutString.contains("bundle OK: \(new.count) file(s)"), "\(verified.stdoutString)")
        withExtendedLifetime(registry) {}
    }
}

extension SecondPullTests {
    /// `--gost-digest` hashes each file for SHA256SUMS and its `.gostsum` in one read; a
    /// forced replacement keeps the new bundle's `.gostsum` files and drops the old one's.
    @Test func aForcedReplacementWithGostDigestsKeepsExactlyTheNewDigests() async throws {
        let (registry, _) = try await PullTests.seededEdition()
        let directory = try TestRegistry.temporaryDirectory("dkp-second-pull-gost")
        let first = try await PullTests.pull(registry, into: directory, ["--deckhouse-tag", "v1.69.3", "--gost-digest"])
        #expect(first.status == 0, "\(first.stderrString)")
        #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent("module-commander.tar.gostsum").path))

        let forced = try await PullTests.pull(registry, into: directory, ["--deckhouse-tag", "v1.70.1", "-i", "console",
                                                                          "--no-security-db", "--gost-digest", "--force"])
        #expect(forced.status == 0, "\(forced.stderrString)")
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        let files = names.filter { $0.hasSuffix(".tar") || $0.hasSuffix(".chunk") }
        #expect(files.contains("module-console.tar") && !files.contains("module-commander.tar"), "\(files)")
        #expect(Set(names.filter { $0.hasSuffix(".gostsum") }) == Set(files.map { $0 + ".gostsum" }), "\(names.sorted())")
        let verified = try await CLITests.run(["verify", directory.path])
        #expect(verified.status == 0, "\(verified.stdoutString)")
        #expect(!verified.stdoutString.contains("does not match"), "\(verified.stdoutString)")
        withExtendedLifetime(registry) {}
    }
}

/// Messages that name the thing and what to do, before any work (issue 11, item 0).
@Suite struct PullInputMessageTests {
    @Test func aDirectoryThisUserCannotWriteIsRefusedBeforeDiscovery() async throws {
        let directory = try TestRegistry.temporaryDirectory("dkp-readonly")
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: directory.path)
        // The tests run as root, for whom every directory is writable: run the CLI as nobody,
        // from a copy nobody can reach (a clean clone may sit in a directory only root enters).
        // The source does not answer (port 1): the refusal must come before discovery.
        let bin = try TestRegistry.temporaryDirectory("dkp-bin")
        defer { try? FileManager.default.removeItem(at: bin) }
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: bin.path)
        let executable = bin.appendingPathComponent("dkp-mirror").path
        try FileManager.default.copyItem(atPath: CLITests.executable, toPath: executable)
        let output = try await TestProcess.run("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", executable,
                                                           "pull", directory.path, "--source", "127.0.0.1:1/deckhouse/ee", "--insecure",
                                                           "--deckhouse-tag", "v1.69.3", "--progress", "none"])
        #expect(output.status == 2, "\(output.stderrString)")
        #expect(output.stderrString.contains("cannot write into \(directory.path): Permission denied"), "\(output.stderrString)")
        #expect(!output.stderrString.contains("NSCocoaErrorDomain") && !output.stderrString.contains("discovering"))
    }

    /// `--include-platform >=1.64 ./bundle` unquoted: the shell redirects into a file `=1.64` and
    /// the bundle path becomes the constraint; the error says so (as d8's diagnosis does).
    @Test func aConstraintTheShellAteIsNamed() async throws {
        let directory = try TestRegistry.temporaryDirectory("dkp-eaten")
        let platform = try await CLITests.run(["pull", "--source", "127.0.0.1:1/deckhouse/ee", "--include-platform", directory.path])
        #expect(platform.status == 2, "\(platform.stderrString)")
        #expect(platform.stderrString.contains("hint: --include-platform got '\(directory.path)', a path: an unquoted >= or <= was taken by the shell"),
                "\(platform.stderrString)")
        let module = try await CLITests.run(["pull", directory.path, "--source", "127.0.0.1:1/deckhouse/ee", "-i", "console@\(directory.path)"])
        #expect(module.status == 2 && module.stderrString.contains("quote the constraint, e.g. -i 'NAME@>=1.64 <1.68'"), "\(module.stderrString)")
        // `--include-platform >=1.68 b5`: the shell leaves `--include-platform b5`, and the bundle
        // argument is missing; the hint comes right under the error, before the usage text.
        let named = try await CLITests.run(["pull", "--source", "127.0.0.1:1/deckhouse/ee", "--include-platform", "b5"])
        let namedLines = named.stderrString.split(separator: "\n")
        #expect(named.status == 2 && namedLines.count > 2 && namedLines[0].hasPrefix("error: ")
                && namedLines[1].hasPrefix("hint: --include-platform got 'b5', a name, not a version: an unquoted >= or <="), "\(named.stderrString)")
        let typo = try await CLITests.run(["pull", directory.path, "--source", "127.0.0.1:1/deckhouse/ee", "--include-platform", "1.6x.0"])
        #expect(typo.status == 2 && !typo.stderrString.contains("hint: --include-platform"), "\(typo.stderrString)")
        let fine = try await CLITests.run(["pull", directory.path, "--source", "127.0.0.1:1/deckhouse/ee", "-i", "console@>>1"])
        #expect(fine.status == 2 && !fine.stderrString.contains("hint:"), "\(fine.stderrString)")
    }

    @Test func theSourceAsD8TakesIt() async throws {
        let (registry, _) = try await PullTests.seededEdition()
        let directory = try TestRegistry.temporaryDirectory("dkp-source-scheme")
        let plain = try await CLITests.run(["pull", directory.path, "--source", "http://\(registry.host)/deckhouse/ee/", "--insecure",
                                            "--deckhouse-tag", "v1.69.3", "--no-modules", "--progress", "none"])
        #expect(plain.status == 0, "\(plain.stderrString)")
        let mismatch = try await CLITests.run(["pull", directory.path, "--source", "http://\(registry.host)/deckhouse/ee",
                                               "--deckhouse-tag", "v1.69.3", "--progress", "none"])
        #expect(mismatch.status == 2)
        #expect(mismatch.stderrString.contains("is plain HTTP: pass --insecure"), "\(mismatch.stderrString)")
        #expect(!mismatch.stderrString.contains("empty port"))
        withExtendedLifetime(registry) {}
    }
}
