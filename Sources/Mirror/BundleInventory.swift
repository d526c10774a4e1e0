import Bundle
import Foundation
import OCI

extension Inventory {
    /// The inventory of a bundle on disk: every blob entry of every layout, repository = the
    /// layout path. An entry is a manifest when the layout's index.json names it or an index
    /// of the layout lists it; every other entry (configs, layers, anything else there) is a
    /// blob. Sizes are the entries' sizes in the tars. Only what the bundle holds is listed: a
    /// blob a manifest names but the layout lacks is not.
    public init(bundle: BundleIndex, directory: String, created: Date = Date()) throws {
        var builder = InventoryBuilder()
        for layout in bundle.layouts {
            let manifests = try Self.manifestDigests(of: layout, in: bundle)
            for digest in bundle.blobs(in: layout) {
                guard let location = bundle.blob(digest, in: layout) else { continue }
                if manifests.contains(digest) {
                    builder.addManifest(digest, size: location.size, repository: layout.path)
                } else {
                    builder.addBlob(digest, size: location.size, repository: layout.path)
                }
            }
        }
        self = builder.inventory(source: .bundle(directory), created: created)
    }

    /// The digests index.json names, and the children of every index among them, transitively.
    /// A manifest that is absent or does not parse has no children (verify reports it).
    static func manifestDigests(of layout: BundleIndex.Layout, in bundle: BundleIndex) throws -> Set<Digest> {
        var found = Set<Digest>()
        var pending = layout.descriptors
        while let descriptor = pending.popLast() {
            // Only an index (or a manifest of a type not said) can have children to find.
            let type = descriptor.mediaType
            guard found.insert(descriptor.digest).inserted, type.isIndex || !type.isManifest,
                  let location = bundle.blob(descriptor.digest, in: layout),
                  location.size <= Int64(ManifestDocument.maxSize) else { continue }
            let bytes = try bundle.readSmall(location, limit: ManifestDocument.maxSize)
            if case let .index(index)? = try? ManifestDocument.parse(bytes, contentType: type) {
                pending += index.manifests
            }
        }
        return found
    }
}
