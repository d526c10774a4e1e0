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
