import Foundation
import Testing
import TestSupport

/// Every committed fuzz input replayed through its harness by the plain `dkp-fuzz` build
/// (`dkp-fuzz HARNESS FILE...`): the seeds of testdata/fuzz/<harness>, every crash input
/// scripts/fuzz.sh has left in testdata/fuzz/crashes (named `<harness>-...`), and, through the
/// tar harness, every tar of testdata/bundles and testdata/hostile. A harness that traps,
/// or finds one of its invariants violated, exits with a signal or non-zero.
@Suite struct FuzzReplayTests {
    static let harnesses = ["reference", "manifest", "layout-index", "www-authenticate", "link", "tar"]

    static var executable: String {
        URL(fileURLWithPath: CLITests.executable).deletingLastPathComponent().appendingPathComponent("dkp-fuzz").path
    }

    /// Regular files below `folder`, as absolute paths, sorted.
    static func files(_ folder: URL) -> [String] {
        RepoPaths.files(under: folder.path).map { folder.appendingPathComponent($0).path }
    }

    /// The inputs of `harness`.
    static func inputs(_ harness: String) -> [String] {
        let fuzz = RepoPaths.testdata.appendingPathComponent("fuzz")
        var inputs = files(fuzz.appendingPathComponent(harness))
        // Crash inputs are named by libFuzzer's -artifact_prefix: `<harness>-crash-<sha1>`.
        // (No harness name is another's followed by "-", so the prefix picks one.)
        inputs += files(fuzz.appendingPathComponent("crashes")).filter { ($0 as NSString).lastPathComponent.hasPrefix(harness + "-") }
        if harness == "tar" {
            inputs += (files(RepoPaths.testdata.appendingPathComponent("bundles")) + files(RepoPaths.testdata.appendingPathComponent("hostile")))
                .filter { $0.hasSuffix(".tar") }
        }
        return inputs
    }

    @Test(arguments: harnesses)
    func committedInputsReplayCleanly(_ harness: String) async throws {
        let inputs = Self.inputs(harness)
        #expect(!inputs.isEmpty, "testdata/fuzz/\(harness) holds the harness's seeds")
        let scratch = try TestRegistry.temporaryDirectory("dkp-fuzz-replay")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let result = try await TestProcess.run(Self.executable, [harness] + inputs, environment: ["TMPDIR": scratch.path])
        #expect(result.status == 0, "\(harness): \(result.stderrString.suffix(2_000))")
        let replayed = result.stdoutString.split(separator: "\n").filter { $0.hasSuffix("bytes)") }.count
        #expect(replayed == inputs.count, "every input ran: \(replayed) of \(inputs.count)")
    }
}
