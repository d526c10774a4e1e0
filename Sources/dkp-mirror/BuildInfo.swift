/// What `dkp-mirror --version` prints. `version` is the release this tree is; `commit` stays
/// "unknown" in the repository, so a plain `swift build` of a fresh clone works offline.
/// `scripts/package.sh` builds from a copy of the tree in which it stamps the real commit
/// (the working tree is never changed).
enum BuildInfo {
    static let version = "0.9.0"
    static let commit = "unknown"

    /// `dkp-mirror 0.9.0 (commit 15c7d76)`.
    static var versionLine: String { "dkp-mirror \(version) (commit \(commit))" }
}
