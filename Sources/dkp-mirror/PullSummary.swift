import DKP
import Foundation
import Mirror

/// What a pull put into the bundle, as d8's end-of-pull summary tells it (on stderr; in
/// `--json` the same as fields).
struct PullSummary: Encodable {
    var platformVersions: [String]
    var channels: [String: String]
    var modules: [String: [String]]
    var packages: [String: [String]]
    var plugins: [String: [String]]
    var securityDatabases: [String]
    var vexImages: Int
    var bundleBytes: Int64
    var files: Int
    var seconds: Double
    var notes: [String]

    init(found: DiscoveredEdition, result: PullResult, bundleBytes: Int64) {
        platformVersions = found.platformVersions
        channels = found.channels
        modules = found.modules
        packages = found.packages
        plugins = found.plugins
        securityDatabases = found.securityDatabases
        vexImages = found.vexImages
        self.bundleBytes = bundleBytes
        files = result.files.count
        seconds = result.seconds
        notes = found.notes
    }

    func text(verbose: Bool) -> String {
        var lines = ["summary:"]
        if !platformVersions.isEmpty {
            let channelList = ReleaseChannel.allCases.compactMap { c in channels[c.rawValue].map { "\(c.rawValue)=\($0)" } }
            lines.append("  platform: \(platformVersions.count) version(s) \(platformVersions.joined(separator: " "))"
                         + (channelList.isEmpty ? "" : "; channels \(channelList.joined(separator: " "))"))
        }
        for (title, entries) in [("modules", modules), ("packages", packages), ("plugins", plugins)] where !entries.isEmpty {
            if verbose {
                lines.append("  \(title): \(entries.count)")
                for (name, versions) in entries.sorted(by: { $0.key < $1.key }) {
                    lines.append("    \(name): \(versions.joined(separator: " "))")
                }
            } else {
                lines.append("  \(title): \(entries.count) (\(entries.keys.sorted().joined(separator: ", ")))")
            }
        }
        if !securityDatabases.isEmpty { lines.append("  security databases: \(securityDatabases.joined(separator: ", "))") }
        lines.append("  VEX attestations: \(vexImages)")
        lines.append("  bundle: \(files) file(s), \(formatBytes(bundleBytes)), \(String(format: "%.1f", seconds)) s")
        return lines.joined(separator: "\n") + "\n"
    }
}

/// `pull --json`: the transfer's figures at the top level (as before) plus a `summary` object.
struct PullOutput: Encodable {
    var result: PullResult
    var summary: PullSummary

    private enum Key: String, CodingKey { case summary }

    func encode(to encoder: Encoder) throws {
        try result.encode(to: encoder)
        var container = encoder.container(keyedBy: Key.self)
        try container.encode(summary, forKey: .summary)
    }
}
