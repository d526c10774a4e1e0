import Bundle
import DKP
import Foundation
import NIOCore
import OCI
import Registry
import Streams
import Synchronization

/// The content of one OCI layout: its index.json descriptors and every blob it holds.
struct LayoutContent {
    var path: String
    /// The images' positions in the plan's references: ref names and short tags are made only
    /// when index.json is written (a string each for 20,000 references, held all plan long).
    var references: [(image: Int, descriptor: ManifestRef)] = []
    var manifestBytes: [Digest: ManifestSpool.Extent] = [:]
    var blobs: [Digest: (repository: String, descriptor: Descriptor)] = [:]

    /// The references already in `references` (a linear search made planning quadratic).
    var refKeys: Set<BundleImage.LayoutKey> = []

    mutating func add(_ image: BundleImage, at position: Int, tree: ManifestTree, descriptors: [Digest: Descriptor]) {
        if refKeys.insert(image.layoutKey).inserted {
            references.append((position, tree.top))
        }
        tree.forEachManifest { digest, bytes in manifestBytes[digest] = bytes }
        for digest in tree.blobDigests where manifestBytes[digest] == nil {
            if let blob = descriptors[digest] { blobs[digest] = (tree.repository, blob) }
        }
    }

    /// Entries in a stable order: blobs by digest, then oci-layout and index.json.
    func entries(prefix: String, spool: ManifestSpool, images: [BundleImage]) throws -> [(String, EntrySourceSized)] {
        var all: [(String, EntrySourceSized)] = []
        for digest in Set(manifestBytes.keys).union(blobs.keys).sorted() {
            let name = LayoutWriter.blobEntry(prefix: prefix, digest: digest)
            if let bytes = manifestBytes[digest] {
                all.append((name, EntrySourceSized(.spooled(spool, bytes))))
            } else if let blob = blobs[digest] {
                all.append((name, EntrySourceSized(.blob(repository: blob.repository, descriptor: blob.descriptor))))
            }
        }
        all.append(("\(prefix)oci-layout", EntrySourceSized(.bytes(LayoutWriter.ociLayout))))
        all.append(("\(prefix)index.json", EntrySourceSized(.spooled(spool, try spool.appendInPieces { try writeIndexJSON(images: images, to: $0) }))))
        return all
    }

    /// index.json (`LayoutWriter`), ref names and short tags made from the plan's images now,
    /// one at a time.
    func writeIndexJSON(images: [BundleImage], to emit: ([UInt8]) throws -> Void) throws {
        let order = references.indices.sorted { images[references[$0].image].refNamePrecedes(images[references[$1].image]) }
        try LayoutWriter.writeIndexJSON(order: order, refName: { images[references[$0].image].refName }, reference: { index in
            let ref = references[index]
            return LayoutWriter.Reference(mediaType: ref.descriptor.mediaType, digest: ref.descriptor.digest,
                                          size: ref.descriptor.size, shortTag: images[ref.image].shortTag)
        }, to: emit)
    }
}

/// An entry source with its size (the tar layout needs every size before any byte moves).
struct EntrySourceSized: Sendable {
    var source: EntrySource
    init(_ source: EntrySource) { self.source = source }
    var size: Int64 {
        switch source {
        case let .bytes(bytes): return Int64(bytes.count)
        case let .spooled(_, extent): return Int64(extent.length)
        case let .blob(_, descriptor): return descriptor.size
        }
    }
}
