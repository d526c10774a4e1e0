import Foundation
import Version
import Yams

/// `deckhousereleases.yaml` beside the tars of a range pull (d8-current.md §5): one
/// `DeckhouseRelease` document per platform version, from its `release-channel:vX.Y.Z` image
/// (`version.json` for requirements and disruptions, `changelog.yaml`). Push ignores it; an
/// operator applies it in the closed cluster so releases appear for approval.
public enum DeckhouseReleases {
    static let changelogLinkBase = "https://github.com/deckhouse/deckhouse/releases/tag"

    /// The YAML text, documents in version order, each starting with `---`, and what was left
    /// out: the tars are complete by then, so a release whose data cannot be read is a note, not a
    /// failed pull (d8 warns too): its document is left out, or a changelog that is not YAML.
    public static func yaml(_ releases: [ReleaseData]) throws -> (text: String, notes: [String]) {
        let sorted = releases.sorted { (Version(tag: $0.version) ?? Version(0, 0, 0)) < (Version(tag: $1.version) ?? Version(0, 0, 0)) }
        var text = ""
        var notes: [String] = []
        for release in sorted {
            guard let document = try document(release, notes: &notes) else { continue }
            text += "---\n" + document
        }
        return (text, notes)
    }

    static func document(_ release: ReleaseData, notes: inout [String]) throws -> String? {
        guard let info = try? JSONSerialization.jsonObject(with: Data(release.versionJSON)) as? [String: Any] else {
            notes.append("version.json of release-channel:\(release.version) is not a JSON object: deckhousereleases.yaml has no DeckhouseRelease for \(release.version)")
            return nil
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
        if let changelog = release.changelog {
            do {
                if let parsed = try Yams.load(yaml: String(decoding: changelog, as: UTF8.self)), !(parsed is NSNull) { spec["changelog"] = parsed }
            } catch {
                notes.append("changelog.yaml of release-channel:\(release.version) is not YAML: its DeckhouseRelease has no changelog")
            }
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
