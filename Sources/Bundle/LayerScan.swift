/// What one layer holds of a set of wanted paths.
public struct LayerScan: Sendable, Equatable {
    /// Wanted paths that are regular files in this layer, with their contents
    /// (for a path present several times, the last entry).
    public var files: [String: [UInt8]]
    /// Wanted paths this layer removes from the layers below it: by a whiteout of the
    /// path or of one of its parent directories (`dir/.wh.name`), or by an opaque
    /// directory above it (`dir/.wh..wh..opq`) when this layer does not hold the path itself,
    /// or by a regular file in this layer where one of its parent directories would be.
    public var deleted: Set<String>
    /// Wanted paths present in this layer as something other than a regular file
    /// (directory, symbolic link, device...): they hide the layers below but have no
    /// contents to return.
    public var shadowed: Set<String>
    /// The targets of the wanted paths that are symbolic links in this layer (also in `shadowed`).
    public var symlinks: [String: String]

    public init(
        files: [String: [UInt8]] = [:], deleted: Set<String> = [], shadowed: Set<String> = [],
        symlinks: [String: String] = [:]
    ) {
        self.files = files
        self.deleted = deleted
        self.shadowed = shadowed
        self.symlinks = symlinks
    }

    /// Whether this layer decides `path` for every layer below it (found, deleted or shadowed).
    public func resolves(_ path: String) -> Bool {
        files[path] != nil || deleted.contains(path) || shadowed.contains(path)
    }
}
