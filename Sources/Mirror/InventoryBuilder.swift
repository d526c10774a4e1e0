import Foundation
import OCI

/// Collects an inventory's items. Repository names are interned: tens of thousands of items
/// name a few hundred repositories, so each name's storage exists once and every entry shares it.
/// When one digest is found in several repositories, the byte-wise first name is kept, so the
/// same registry gives the same file whatever order a concurrent walk found things in.
public struct InventoryBuilder: Sendable {
    private var manifests: [Digest: Inventory.Entry] = [:]
    private var blobs: [Digest: Inventory.Entry] = [:]
    private var names: [String: String] = [:]

    public init() {}

    public var manifestCount: Int { manifests.count }
    public var blobCount: Int { blobs.count }

    /// Whether `digest` was added as a manifest.
    public func hasManifest(_ digest: Digest) -> Bool { manifests[digest] != nil }

    /// Adds a manifest. With `replacing`, one already there keeps the byte-wise first repository;
    /// without, it is left alone and false returned.
    @discardableResult
    public mutating func addManifest(_ digest: Digest, size: Int64, repository: String, replacing: Bool = true) -> Bool {
        Self.add(digest, Inventory.Entry(size: size, repository: intern(repository)), to: &manifests, replacing: replacing)
    }

    /// Adds a blob (see ``addManifest(_:size:repository:replacing:)``).
    @discardableResult
    public mutating func addBlob(_ digest: Digest, size: Int64, repository: String, replacing: Bool = true) -> Bool {
        Self.add(digest, Inventory.Entry(size: size, repository: intern(repository)), to: &blobs, replacing: replacing)
    }

    /// Adds every item of `inventory` (several `--against` files make one set this way).
    public mutating func add(_ inventory: Inventory) {
        for (digest, entry) in inventory.manifests { addManifest(digest, size: entry.size, repository: entry.repository) }
        for (digest, entry) in inventory.blobs { addBlob(digest, size: entry.size, repository: entry.repository) }
    }

    public func inventory(source: Inventory.Source, created: Date = Date()) -> Inventory {
        Inventory(source: source, created: created, manifests: manifests, blobs: blobs)
    }

    private mutating func intern(_ name: String) -> String {
        if let known = names[name] { return known }
        names[name] = name
        return name
    }

    private static func add(_ digest: Digest, _ entry: Inventory.Entry, to items: inout [Digest: Inventory.Entry], replacing: Bool) -> Bool {
        guard let old = items[digest] else {
            items[digest] = entry
            return true
        }
        guard replacing else { return false }
        if Array(entry.repository.utf8).lexicographicallyPrecedes(Array(old.repository.utf8)) { items[digest] = entry }
        return true
    }
}
