/// Where each layout of a bundle goes in a target registry (dkp-source-and-bundle.md §3), the
/// one definition push, `verify --registry` and the completeness check share: the layout at
/// path P goes to ROOT/P, a leading `modules` replaced by the modules path suffix and a leading
/// `packages` by the packages path suffix ("/" puts them right under ROOT; the command line
/// reads an empty value as the default, as d8 does).
public struct LayoutRepositories: Sendable, Equatable {
    /// The target's repository (`system/deckhouse`).
    public var root: String
    public var modulesPathSuffix: String
    public var packagesPathSuffix: String

    public init(root: String, modulesPathSuffix: String, packagesPathSuffix: String = "/packages") {
        self.root = root
        self.modulesPathSuffix = modulesPathSuffix
        self.packagesPathSuffix = packagesPathSuffix
    }

    public func repository(for layoutPath: String) -> String {
        let parts = layoutPath.split(separator: "/").map(String.init)
        let suffix: String? = parts.first == "modules" ? modulesPathSuffix : parts.first == "packages" ? packagesPathSuffix : nil
        if let suffix {
            let inner = Self.path(ofSuffix: suffix)
            return ([root] + (inner.isEmpty ? [] : [inner]) + parts.dropFirst()).joined(separator: "/")
        }
        return ([root] + parts).joined(separator: "/")
    }

    /// The inverse, for a path below ROOT (`ROOT/` left off): the bundle layout path, so
    /// `mods/console` with the modules path suffix `/mods` is `modules/console`.
    public func layoutPath(forRegistryPath path: String) -> String {
        for (suffix, layout) in [(Self.path(ofSuffix: modulesPathSuffix), "modules"), (Self.path(ofSuffix: packagesPathSuffix), "packages")]
        where !suffix.isEmpty && suffix != layout {
            if path == suffix { return layout }
            if path.hasPrefix(suffix + "/") { return layout + path.dropFirst(suffix.count) }
        }
        return path
    }

    /// `/modules` -> `modules`; "" for a suffix of slashes only.
    public static func path(ofSuffix suffix: String) -> String {
        suffix.split(separator: "/").joined(separator: "/")
    }
}
