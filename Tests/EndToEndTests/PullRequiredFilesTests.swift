import Foundation
import Testing
import TestSupport

/// What a pull needs from the source is required: a missing, hidden, cut short or malformed
/// `images_digests.json` stops the pull (exit 1) with one line naming the image and the file,
/// and leaves no tar behind, instead of a smaller bundle that verifies (issue 11, item 0).
/// Sources are broken by the synthetic edition's own switches, against the real registry.
@Suite struct PullRequiredFilesTests {
    static let controllerList = "deckhouse/modules/images_digests.json"

    /// Pulls v1.69.3 pinned from an edition seeded with `adjust`; expects the failure to name
    /// every part of `mentions` on its error line, and the directory to hold no tar.
    static func expectRefused(_ adjust: (inout EditionSeeder.Options) -> Void, mentions: [String],
                              _ extra: [String] = [], sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let (registry, _) = try await PullTests.seededEdition(adjust)
        let directory = try TestRegistry.temporaryDirectory("dkp-required")
        let output = try await PullTests.pull(registry, into: directory, ["--deckhouse-tag", "v1.69.3"] + extra)
        #expect(output.status == 1, "\(output.stderrString)", sourceLocation: sourceLocation)
        let line = output.stderrString.split(separator: "\n").first { $0.hasPrefix("error: ") }.map(String.init) ?? ""
        for part in mentions {
            #expect(line.contains(part), "\(part) not in: \(line)", sourceLocation: sourceLocation)
        }
        let left = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.contains(".tar") }
        #expect(left.isEmpty, "nothing that looks like a bundle: \(left)", sourceLocation: sourceLocation)
        withExtendedLifetime(registry) {}
    }

    @Test(arguments: EditionSeeder.BrokenFile.allCases)
    func aBrokenControllerListStopsThePull(_ broken: EditionSeeder.BrokenFile) async throws {
        let what: String = switch broken {
        case .missing, .whitedOut: "has no \(Self.controllerList)"
        case .truncated: "is not valid JSON"
        case .emptyArray: "is not a JSON object"
        case .emptyObject: "lists no image digest"  // well-formed, but no DKP release lists no platform image
        }
        try await Self.expectRefused({ $0.brokenControllerDigests["v1.69.3"] = broken },
                                     mentions: [what, "deckhouse/ee:v1.69.3", Self.controllerList])
    }

    @Test(arguments: [EditionSeeder.BrokenFile.missing, .truncated, .emptyArray])
    func aBrokenModuleListStopsThePull(_ broken: EditionSeeder.BrokenFile) async throws {
        // console's stable version is v1.1.5; a pinned platform pulls every module's channel versions.
        try await Self.expectRefused({ $0.brokenModularDigests["console"] = ["v1.1.5": broken] },
                                     mentions: ["modules/console:v1.1.5", "images_digests.json"])
    }

    @Test func aBrokenPackageListStopsThePull() async throws {
        try await Self.expectRefused({ $0.brokenModularDigests["nginx-tools"] = ["v0.4.1": .truncated] },
                                     mentions: ["packages/nginx-tools:v0.4.1", "is not valid JSON"])
    }

    @Test func aModuleLeftOutOfThePullMayBeBroken() async throws {
        // Only what the pull takes is required: excluding the broken module lets it through.
        let (registry, _) = try await PullTests.seededEdition { $0.brokenModularDigests["console"] = ["v1.1.5": .truncated] }
        let directory = try TestRegistry.temporaryDirectory("dkp-required-excluded")
        let output = try await PullTests.pull(registry, into: directory, ["--deckhouse-tag", "v1.69.3", "--exclude-module", "console"])
        #expect(output.status == 0, "\(output.stderrString)")
        withExtendedLifetime(registry) {}
    }
}
