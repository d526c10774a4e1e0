import Foundation
import Testing
import TestSupport

/// Progress counters end exactly at their totals (issue 11): every image of a pull is counted
/// once (two images may share a ref name), and a push into a registry that refuses mounts
/// counts the bytes it sends again into its total.
@Suite struct ProgressCounterTests {
    /// The last `progress` event of a `--progress json` run.
    static func lastProgress(_ output: TestProcess.Output) throws -> [String: Int64] {
        let events = output.stdoutString.split(separator: "\n").compactMap { line -> [String: Any]? in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
        }.filter { $0["event"] as? String == "progress" }
        let last = try #require(events.last)
        return last.compactMapValues { ($0 as? NSNumber)?.int64Value }
    }

    @Test func aPullEndsAtEveryTotal() async throws {
        let (source, _) = try await PullTests.seededEdition()
        let directory = try TestRegistry.temporaryDirectory("dkp-progress-pull")
        let output = try await CLITests.run(["pull", directory.path, "--source", "\(source.host)/deckhouse/ee", "--insecure",
                                             "--deckhouse-tag", "v1.69.3", "--progress", "json", "--json"])
        #expect(output.status == 0, "\(output.stderrString)")
        // Events and the result on one stdout: every line is one JSON object, the result last.
        let lines = output.stdoutString.split(separator: "\n")
        #expect(lines.allSatisfy { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) is [String: Any] }, "\(output.stdoutString.prefix(2000))")
        let result = try #require(lines.last.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] })
        #expect(result["event"] == nil && result["images"] != nil, "\(result)")
        let last = try Self.lastProgress(output)
        #expect(last["totalImages"] ?? 0 > 50)
        #expect(last["images"] == last["totalImages"], "\(last)")
        #expect(last["blobs"] == last["totalBlobs"] && last["bytes"] == last["totalBytes"], "\(last)")
        withExtendedLifetime(source) {}
    }

    @Test func aPushIntoARegistryThatRefusesMountsEndsAtItsTotal() async throws {
        let (bundle, target, proxy) = try await FaultMatrixTests.bundleAndTarget([
            .init(.dropQuery, methods: ["POST"], pathContains: "mount="),
        ])
        let output = try await CLITests.run(["push", bundle.path, "\(proxy.host)/system/deckhouse", "--insecure", "--progress", "json"])
        #expect(output.status == 0, "\(output.stderrString)")
        #expect(proxy.faultsInjected > 0, "mounts were asked for and refused")
        let last = try Self.lastProgress(output)
        #expect(last["bytes"] == last["totalBytes"], "\(last)")
        #expect(last["images"] == last["totalImages"] && last["blobs"] == last["totalBlobs"], "\(last)")
        withExtendedLifetime(target) {}
    }
}
