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
    var manifests: [(digest: Digest, bytes: ManifestSpool.Extent)]
    /// Configs and layers of every image in the tree, in manifest order (their descriptors
    /// are kept once for all trees, by the plan).
    var blobDigests: [Digest]

    init(repository: String, top: FetchedManifest, manifests: [(digest: Digest, bytes: ManifestSpool.Extent)], blobs: [Descriptor]) {
        self.repository = repository
        self.top = ManifestRef(mediaType: top.mediaType, digest: top.digest, size: Int64(top.bytes.count))
        self.manifests = manifests
        blobDigests = blobs.map(\.digest)
    }
}

/// What index.json says of a manifest (a whole `Descriptor` is four times its size).
struct ManifestRef: Sendable {
    var mediaType: MediaType
    var digest: Digest
    var size: Int64
}
