import Foundation
import Version
import Yams

/// `deckhousereleases.yaml` beside the tars of a range pull (d8-current.md §5): one
/// `DeckhouseRelease` document per platform version, from its `release-channel:vX.Y.Z` image
/// (`version.json` for requirements and disruptions, `changelog.yaml`). Push ignores it; an
/// operator applies it in the closed cluster so releases appear for approval.
public enum DeckhouseReleases {
    static let changelogLinkBase = "https://github.com/deckhouse/deckhouse/releases/tag"

    /// The YAML text, documents in version order, each starting with `---`.
    public static func yaml(_ releases: [ReleaseData]) throws -> String {
        let sorted = releases.sorted { (Version(tag: $0.version) ?? Version(0, 0, 0)) < (Version(tag: $1.version) ?? Version(0, 0, 0)) }
        var text = ""
        for release in sorted {
            text += "---\n" + (try document(release))
        }
        return text
    }

    static func document(_ release: ReleaseData) throws -> String {
        guard let info = try? JSONSerialization.jsonObject(with: Data(release.versionJSON)) as? [String: Any] else {
            throw DKPError.invalidSource("version.json of release-channel:\(release.version) is not a JSON object")
        }
        var spec: [String: Any] = ["version": release.version, "changelogLink": "\(changelogLinkBase)/\(release.version)"]
        if let requirements = info["requirements"] as? [String: Any], !requirements.isEmpty {
            spec["requirements"] = requirements.mapValues { "\($0)" }
        }
        // Disruptions are listed per minor ("1.69": [...]); a release carries its own minor's.
        if let version = Version(tag: release.version),
           let disruptions = (info["disruptions"] as? [String: Any])?["\(version.major).\(version.minor)"] as? [String], !disruptions.isEmpty {
            spec["disruptions"] = disruptions
        }
        if let changelog = release.changelog, let text = String(bytes: changelog, encoding: .utf8),
           let parsed = try Yams.load(yaml: text), !(parsed is NSNull) {
            spec["changelog"] = parsed
        }
        let object: [String: Any] = [
            "apiVersion": "deckhouse.io/v1alpha1",
            "kind": "DeckhouseRelease",
            "metadata": ["name": release.version],
            "approved": false,
            "spec": spec,
        ]
        return try Yams.dump(object: object, sortKeys: true)
    }
}
