import Bundle
import DKP
import Foundation
import NIOCore
import OCI
import Registry
import Streams
import Synchronization

struct ManifestKey: Hashable, Comparable, Sendable {
    var repository: String
    var reference: String
    static func < (a: ManifestKey, b: ManifestKey) -> Bool { (a.repository, a.reference) < (b.repository, b.reference) }
}

/// A fetched manifest and, for an index, all its children, reduced to what the plan keeps:
/// each manifest's digest and bytes, and the blobs its images use. The parsed documents are
/// dropped as soon as a tree is fetched: with 10,000 digest images they were most of the
/// plan's memory.
struct ManifestTree: Sendable {
    var repository: String
    var top: ManifestRef
    /// Where the top manifest's bytes are spooled.
    var topBytes: ManifestSpool.Extent
    /// An index's child manifests (recursively); empty, so no allocation, for an image.
    var children: [(digest: Digest, bytes: ManifestSpool.Extent)]
    /// Configs and layers of every image in the tree, in manifest order (their descriptors
    /// are kept once for all trees, by the plan; equal lists share one buffer, see
    /// `BundlePuller.concurrentFetch`).
    var blobDigests: [Digest]

    init(repository: String, top: FetchedManifest, topBytes: ManifestSpool.Extent,
         children: [(digest: Digest, bytes: ManifestSpool.Extent)], blobs: [Descriptor]) {
        self.repository = repository
        self.top = ManifestRef(mediaType: top.mediaType, digest: top.digest, size: Int64(top.bytes.count))
        self.topBytes = topBytes
        self.children = children
        blobDigests = blobs.map(\.digest)
    }

    /// Every manifest of the tree with its spooled bytes, the top one first.
    func forEachManifest(_ body: (Digest, ManifestSpool.Extent) -> Void) {
        body(top.digest, topBytes)
        for child in children { body(child.digest, child.bytes) }
    }
}

/// What index.json says of a manifest (a whole `Descriptor` is four times its size).
struct ManifestRef: Sendable {
    var mediaType: MediaType
    var digest: Digest
    var size: Int64
}
