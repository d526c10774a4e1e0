@testable import DKP
import Synchronization
import Testing
import Version

/// `--proxy-registry` finds versions by asking for tags one by one: these walks run against a set
/// of tags that exist, counting the questions.
@Suite struct ProxyProbeTests {
    private func probe(_ constraint: String, in tags: [String]) async throws -> (found: [String], asked: Int) {
        let existing = Set(tags.compactMap(Version.init(releaseTag:)))
        let asked = Mutex(0)
        let found = try await EditionDiscovery.probeVersions(try VersionConstraint(parsing: constraint)) { version in
            asked.withLock { $0 += 1 }
            return existing.contains(version)
        }
        return (found.map(\.releaseTag), asked.withLock { $0 })
    }

    @Test func aRangeIsWalkedMinorByMinorFromItsLowerBound() async throws {
        let tags = ["v1.67.5", "v1.68.0", "v1.68.4", "v1.69.3", "v1.70.1", "v1.70.12"]
        let walked = try await probe(">=1.68.0", in: tags)
        #expect(walked.found == ["v1.68.0", "v1.68.4", "v1.69.3", "v1.70.1", "v1.70.12"])
        // A missing .0 patch does not end a minor (d8's probe would stop at v1.69.0).
        #expect(try await probe("~1.69", in: tags).found == ["v1.69.3"])
        #expect(walked.asked < 200, "\(walked.asked) probes")
    }

    /// Two alternatives with minors between them that do not exist: each is walked from its own
    /// lower bound, so neither is lost to the gap (one walk from 1.2 would end at 1.4).
    @Test func eachAlternativeIsWalkedFromItsOwnLowerBound() async throws {
        let tags = ["v1.2.0", "v1.2.3", "v1.60.1", "v1.60.4", "v1.61.0"]
        let both = try await probe("~1.2 || ~1.60", in: tags)
        #expect(both.found == ["v1.2.0", "v1.2.3", "v1.60.1", "v1.60.4"])
        #expect(try await probe(">=1.2.0 <1.3.0 || >=1.60.2", in: tags).found == ["v1.2.0", "v1.2.3", "v1.60.4", "v1.61.0"])
        // Overlapping alternatives probe each tag once.
        let overlapping = try await probe("~1.60 || >=1.60.1", in: tags)
        #expect(overlapping.found == ["v1.60.1", "v1.60.4", "v1.61.0"])
        let once = try await probe(">=1.60.0", in: tags)
        #expect(overlapping.asked == once.asked, "\(overlapping.asked) against \(once.asked)")
    }

    @Test func aRangeWithoutALowerBoundIsRefused() async throws {
        await #expect(throws: DKPError.self) { _ = try await probe("<1.3.0", in: ["v1.2.0"]) }
    }
}
