@testable import DKP
import Testing

/// deckhousereleases.yaml is written after the tars are complete: a release whose data cannot be
/// read is left out with a note instead of failing the pull (d8 warns and goes on too).
@Suite struct DeckhouseReleasesTests {
    private func release(_ version: String, _ versionJSON: String, changelog: String? = nil) -> ReleaseData {
        ReleaseData(version: version, versionJSON: Array(versionJSON.utf8), changelog: changelog.map { Array($0.utf8) })
    }

    @Test func aReleaseThatCannotBeReadIsANoteNotAFailure() throws {
        let written = try DeckhouseReleases.yaml([
            release("v1.70.1", #"{"version":"v1.70.1","disruptions":{"1.70":["ingressNginx"]}}"#, changelog: "candi:\n  fixes: [one]\n"),
            release("v1.69.3", "not json"),
            release("v1.68.4", #"{"version":"v1.68.4"}"#, changelog: "candi: [unclosed\n"),
        ])
        #expect(written.text.components(separatedBy: "---\n").filter { !$0.isEmpty }.count == 2)
        #expect(written.text.contains("name: v1.68.4") && written.text.contains("name: v1.70.1") && !written.text.contains("v1.69.3"))
        #expect(written.text.range(of: "name: v1.68.4")!.lowerBound < written.text.range(of: "name: v1.70.1")!.lowerBound, "version order")
        #expect(written.text.contains("ingressNginx") && written.text.contains("fixes"))
        #expect(written.notes == [
            "changelog.yaml of release-channel:v1.68.4 is not YAML: its DeckhouseRelease has no changelog",
            "version.json of release-channel:v1.69.3 is not a JSON object: deckhousereleases.yaml has no DeckhouseRelease for v1.69.3",
        ], "\(written.notes)")
    }
}
